"""The inbox and a conversation's messages.  A provider sees only their own patients' conversations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from console.api.framework import ApiCall, Page, PageQuery, api, decode_cursor, encode_cursor
from console.problems import forbidden, not_found
from console.queries import conversations as queries
from domain.staff_access import Permission


class InboxQuery(PageQuery):
    handoffs_only: bool = Field(default=False, description="only conversations handed to staff")


class InboxItem(BaseModel):
    id: int
    channel: str
    client_id: int
    client_name: str | None
    client_phone: str | None
    agent_state: str
    handoff: bool
    handoff_urgency: str | None
    handoff_reason: str
    unanswered: bool
    last_message_at: datetime | None
    preview: str | None


class MessagesQuery(PageQuery):
    pass


class ConversationMessage(BaseModel):
    id: int
    direction: str
    role: str
    body: str
    channel: str
    created_at: datetime
    staff_name: str | None


class ConversationDetail(BaseModel):
    id: int
    channel: str
    client_id: int
    client_name: str | None
    client_phone: str | None
    consent_state: str
    agent_state: str
    handoff: bool
    handoff_reason: str
    handoff_urgency: str | None
    last_message_at: datetime | None


class ConversationMessages(BaseModel):
    conversation: ConversationDetail
    items: list[ConversationMessage]
    next_cursor: str | None = None


def _inbox_item(row: dict[str, Any]) -> InboxItem:
    return InboxItem(**{k: row[k] for k in InboxItem.model_fields if k != "handoff"}, handoff=row["rank"] < 9)


def load_inbox(call: ApiCall, query: InboxQuery) -> Page[InboxItem]:
    after = decode_cursor(query.cursor, (int, datetime, int)) if query.cursor else None
    rows = queries.inbox(
        call.session,
        provider_id=call.clinic.own_provider_id,
        handoffs_only=query.handoffs_only,
        after=after,
        limit=query.limit + 1,
    )
    page = rows[: query.limit]
    cursor = None
    if len(rows) > query.limit:
        last = page[-1]
        cursor = encode_cursor(last["rank"], last["activity_at"], last["id"])
    return Page[InboxItem](items=[_inbox_item(r) for r in page], next_cursor=cursor)


@api(
    "GET",
    "/clinics/{clinic_id:int}/conversations",
    summary="The inbox: handoffs first (emergency, urgent, normal, low), then the most recently active",
    tag="conversations",
    permission=Permission.CONVERSATIONS_READ,
    query=InboxQuery,
    response=Page[InboxItem],
)
def list_conversations(call: ApiCall) -> Page[InboxItem]:
    return load_inbox(call, call.query)


def load_conversation(call: ApiCall, conversation_id: int, query: MessagesQuery) -> ConversationMessages:
    row = queries.conversation(call.session, conversation_id, call.clinic.own_provider_id)
    if row is None:
        raise not_found("conversation")
    if not row["within_reach"]:
        raise forbidden("This patient has no appointment with you.")
    before = decode_cursor(query.cursor, (int,))[0] if query.cursor else None
    rows = queries.messages(call.session, conversation_id, before_id=before, limit=query.limit + 1)
    page = rows[: query.limit]
    call.audit(
        "conversation.viewed", target_type="conversation", target_id=conversation_id, client_id=int(row["client_id"])
    )
    detail = ConversationDetail(
        **{k: row[k] for k in ConversationDetail.model_fields if k != "handoff"},
        handoff=str(row["agent_state"]).lower() == "handoff",
    )
    return ConversationMessages(
        conversation=detail,
        items=[ConversationMessage.model_validate(r) for r in page],
        next_cursor=encode_cursor(page[-1]["id"]) if len(rows) > query.limit else None,
    )


@api(
    "GET",
    "/clinics/{clinic_id:int}/conversations/{conversation_id:int}/messages",
    summary="A conversation and its messages, newest first (patient, agent replies and staff messages)",
    tag="conversations",
    permission=Permission.CONVERSATIONS_READ,
    query=MessagesQuery,
    response=ConversationMessages,
)
def list_messages(call: ApiCall) -> ConversationMessages:
    return load_conversation(call, int(call.path_params["conversation_id"]), call.query)
