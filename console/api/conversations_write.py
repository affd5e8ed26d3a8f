"""Staff stepping into a conversation: take over, reply (the patient gets the text through the outbox), hand
back — the rules are ``worker/staff_takeover.py``'s, shared with ``medspa staff``.  A provider acts on their own
patients only; every action is audited (ids, never the message); the texts' sends, any turn for unanswered
patient messages and the live inbox event are handed on after the commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from console.api.framework import ApiCall, ApiModel, api
from console.problems import Problem, forbidden, not_found
from console.queries import conversations as queries
from domain.staff_access import Permission
from worker import staff_takeover
from worker.live_inbox import inbox_event

_CANNOT_TEXT = {"no_phone", "opted_out", "invalid_number", "refused"}


class ReplyIn(ApiModel):
    text: str = Field(
        min_length=1,
        max_length=staff_takeover.MAX_REPLY_CHARS,
        description="the message the patient receives (SMS or web chat, the conversation's channel)",
    )


class StaffActionOut(BaseModel):
    conversation_id: int
    agent_state: str
    handoff: bool
    changed: bool = Field(description="false when the conversation was already in that state")
    message_id: int | None = None
    outbox_ids: list[int] = Field(default_factory=list, description="the queued texts (sent by the workers)")


def reachable(call: ApiCall, conversation_id: int) -> dict[str, Any]:
    """The conversation if this caller may act on it: 404 outside the clinic, 403 for a provider's non-patient."""
    row = queries.conversation(call.session, conversation_id, call.clinic.own_provider_id)
    if row is None:
        raise not_found("conversation")
    if not row["within_reach"]:
        raise forbidden("This patient has no appointment with you.")
    return row


def _problem(exc: staff_takeover.TakeoverRefused) -> Problem:
    if exc.reason == "not_found":
        return not_found("conversation")
    if exc.reason in _CANNOT_TEXT:
        return Problem(
            409, "Cannot text this patient", exc.message[:1].upper() + exc.message[1:] + ".", kind="conflict"
        )
    return Problem(
        400,
        "Invalid input",
        f"text: {exc.message}",
        kind="validation",
        errors=[{"field": "text", "message": exc.message}],
    )


def _act(
    call: ApiCall,
    conversation_id: int,
    kind: str,
    change: Callable[[], staff_takeover.StaffAction],
    detail: Callable[[staff_takeover.StaffAction], dict[str, Any]],
) -> StaffActionOut:
    """The shape of every staff action: the access check, ``change`` (a ``worker/staff_takeover`` function in the
    request's transaction; a refusal becomes its problem), the audit row ``conversation.{kind}`` (ids, never the
    message), then — after the commit — its follow-ups enqueued and the live inbox's ``kind`` event."""
    row = reachable(call, conversation_id)
    try:
        action = change()
    except staff_takeover.TakeoverRefused as exc:
        raise _problem(exc) from None
    call.audit(
        f"conversation.{kind}",
        target_type="conversation",
        target_id=conversation_id,
        client_id=int(row["client_id"]),
        detail=detail(action),
    )
    clinic_id = call.clinic.clinic_id
    messages = staff_takeover.follow_ups(clinic_id, action)
    outside = call.runtime.outside
    call.after_commit.append(lambda: outside.enqueue(messages))
    call.after_commit.append(lambda: outside.publish(clinic_id, inbox_event(kind, action.conversation_id)))
    return StaffActionOut(
        conversation_id=action.conversation_id,
        agent_state=action.agent_state,
        handoff=action.agent_state == staff_takeover.HANDOFF,
        changed=action.changed,
        message_id=action.message_id,
        outbox_ids=action.outbox_ids,
    )


def _changed(action: staff_takeover.StaffAction) -> dict[str, Any]:
    return {"changed": action.changed}


def take_over(call: ApiCall, conversation_id: int) -> StaffActionOut:
    return _act(
        call, conversation_id, "taken_over", lambda: staff_takeover.take_over(call.session, conversation_id), _changed
    )


def reply(call: ApiCall, conversation_id: int, body: str) -> StaffActionOut:
    user = call.principal.user
    return _act(
        call,
        conversation_id,
        "replied",
        lambda: staff_takeover.reply(
            call.session,
            call.clinic.clinic_id,
            conversation_id,
            body,
            user.display_name or user.email,
            call.now,
            uuid.uuid4().hex,
        ),
        lambda action: {"message_id": action.message_id, "outbox_ids": action.outbox_ids},
    )


def hand_back(call: ApiCall, conversation_id: int) -> StaffActionOut:
    return _act(
        call, conversation_id, "handed_back", lambda: staff_takeover.hand_back(call.session, conversation_id), _changed
    )


@api(
    "POST",
    "/clinics/{clinic_id:int}/conversations/{conversation_id:int}/takeover",
    summary="Take the conversation over: the agent stays silent until it is handed back",
    tag="conversations",
    permission=Permission.CONVERSATIONS_WRITE,
    response=StaffActionOut,
)
def take_over_conversation(call: ApiCall) -> StaffActionOut:
    return take_over(call, int(call.path_params["conversation_id"]))


@api(
    "POST",
    "/clinics/{clinic_id:int}/conversations/{conversation_id:int}/replies",
    summary="Reply to the patient as staff (queued in the outbox; the conversation stays with staff)",
    tag="conversations",
    permission=Permission.CONVERSATIONS_WRITE,
    body=ReplyIn,
    response=StaffActionOut,
    status_code=202,
)
def reply_to_conversation(call: ApiCall) -> StaffActionOut:
    """202: the text is committed to the outbox and sent by the workers (consent and the number's status are
    checked now and again at the moment of sending).  409 when the patient cannot be texted (opted out, no or
    invalid number)."""
    body: ReplyIn = call.body
    return reply(call, int(call.path_params["conversation_id"]), body.text)


@api(
    "POST",
    "/clinics/{clinic_id:int}/conversations/{conversation_id:int}/handback",
    summary="Hand the conversation back to the agent (it answers the patient's next message)",
    tag="conversations",
    permission=Permission.CONVERSATIONS_WRITE,
    response=StaffActionOut,
)
def hand_back_conversation(call: ApiCall) -> StaffActionOut:
    return hand_back(call, int(call.path_params["conversation_id"]))
