"""The inbox and a conversation's messages.  A provider sees only their own patients' conversations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from console.api.framework import ApiCall, BinaryFile, Page, PageQuery, api, decode_cursor, encode_cursor
from console.problems import forbidden, not_found
from console.queries import conversations as queries
from domain.staff_access import Permission
from worker.integrations.media_storage import build_media_store


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


class MessageMedia(BaseModel):
    id: int
    content_type: str
    status: str = Field(description="pending (being fetched), stored, or failed")
    size_bytes: int | None
    url: str | None = Field(description="the photo itself (GET, same authentication); null until stored")


class ConversationMessage(BaseModel):
    id: int
    direction: str
    role: str
    body: str
    channel: str
    created_at: datetime
    staff_name: str | None
    media: list[MessageMedia] = Field(default_factory=list, description="photos the patient sent with it")


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
    return InboxItem(
        **{k: row[k] for k in InboxItem.model_fields if k != "handoff"}, handoff=row["rank"] < queries.WITH_THE_AGENT
    )


def load_inbox(call: ApiCall, query: InboxQuery) -> Page[InboxItem]:
    after = decode_cursor(query.cursor, (queries.INBOX_RANKS, datetime, int)) if query.cursor else None
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
    photos = queries.media_of_messages(call.session, [int(r["id"]) for r in page])
    clinic_id = call.clinic.clinic_id
    return ConversationMessages(
        conversation=detail,
        items=[
            ConversationMessage.model_validate(
                r
                | {
                    "media": [
                        MessageMedia(
                            **{k: p[k] for k in ("id", "content_type", "status", "size_bytes")},
                            url=f"/api/v1/clinics/{clinic_id}/media/{p['id']}" if p["status"] == "stored" else None,
                        )
                        for p in photos.get(int(r["id"]), [])
                    ]
                }
            )
            for r in page
        ],
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


@api(
    "GET",
    "/clinics/{clinic_id:int}/media/{media_id:int}",
    summary="A photo a patient texted (the stored image file)",
    tag="conversations",
    permission=Permission.CONVERSATIONS_READ,
    response=BinaryFile,
)
def get_media(call: ApiCall) -> BinaryFile:
    """The image bytes, for staff of the photo's clinic whose role reaches its patient; every view is audited."""
    media_id = int(call.path_params["media_id"])
    row = queries.media_item(call.session, media_id, call.clinic.own_provider_id)
    if row is None or row["status"] != "stored" or not row["storage_key"]:
        raise not_found("stored photo")
    if not row["within_reach"]:
        raise forbidden("This patient has no appointment with you.")
    try:
        data = build_media_store(call.runtime.settings).get(str(row["storage_key"]))
    except (KeyError, ValueError):
        raise not_found("stored photo") from None
    call.audit("media.viewed", target_type="message_media", target_id=media_id, client_id=int(row["client_id"]))
    return BinaryFile(content=data, media_type=str(row["content_type"]) or "application/octet-stream")
