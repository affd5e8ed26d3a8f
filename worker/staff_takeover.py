"""Staff stepping into a conversation: take over (the agent goes silent), reply as staff (through the same
transactional outbox as the agent's replies, so consent, rate limits, retries and exactly-once sending apply
unchanged), hand back to the agent.

The one home of these rules: ``medspa staff`` (``scripts/staff.py``) and the console's API and pages
(``console/api/conversations_write.py``) call these functions inside their own tenant-scoped transaction and
enqueue ``follow_ups`` by actor name after the commit.

Taking over or handing back bumps the conversation's ``version`` (the fencing token turns commit under) and
drops its lease: a turn running at that moment commits nothing — the agent can neither answer over the staff
member nor write its old state back over theirs.  Its messages are re-run by the next lease holder, which sees
the new state (silent while staff handle the conversation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dramatiq
from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.agent_state import AgentState
from medspa.broker import TURNS_QUEUE, message_for, outbox_sends
from worker.outbox.decisions import conversation_text_decision
from worker.outbox.rows import OutboxRow
from worker.outbox.writes import insert_rows, write_history_message

HANDOFF = AgentState.HANDOFF.value
IDLE = AgentState.IDLE.value
PAUSED_REASON = "paused by staff"
STAFF_REPLY_REASON = "staff took over"
MAX_REPLY_CHARS = 1600  # ten SMS segments: longer is a letter, not a text

_CONVERSATION = """
SELECT c.id, c.channel, c.agent_state, c.handoff_reason, c.handoff_urgency, c.client_id, c.last_inbound_seq,
       c.answered_seq, cl.name AS client, cl.phone_e164 AS phone, cl.consent_state, cl.sms_status
FROM conversations c JOIN clients cl ON cl.id = c.client_id
WHERE c.id = :id
"""
# Into handoff, fencing out running turns.  With keep_reason an existing handoff keeps its reason and urgency.
_TAKE_OVER = text(
    """UPDATE conversations SET
           handoff_reason = CASE WHEN CAST(:keep_reason AS boolean) AND lower(agent_state) = :handoff
                                      AND handoff_reason <> '' THEN handoff_reason ELSE :reason END,
           handoff_urgency = CASE WHEN lower(agent_state) = :handoff THEN COALESCE(handoff_urgency, :urgency)
                                  ELSE :urgency END,
           agent_state = :handoff, version = version + 1, lease_owner = NULL, lease_expires_at = NULL
       WHERE id = :id RETURNING last_inbound_seq > answered_seq"""
)
_HAND_BACK = text(
    """UPDATE conversations SET agent_state = :idle, handoff_reason = '', handoff_urgency = NULL,
              failed_turns = 0, version = version + 1, lease_owner = NULL, lease_expires_at = NULL
       WHERE id = :id RETURNING last_inbound_seq > answered_seq"""
)
# The number the patient texted (a clinic may have several), else the clinic's first SMS number.
_CLINIC_NUMBER = text(
    """SELECT COALESCE(
           (SELECT payload->>'to' FROM inbox_events WHERE conversation_id = :id AND source = 'sms'
            ORDER BY id DESC LIMIT 1),
           (SELECT e164 FROM clinic_phone_numbers WHERE clinic_id = :clinic_id ORDER BY id LIMIT 1), '')"""
)


class TakeoverRefused(Exception):
    """The action cannot be done; ``reason`` is a stable code, the message one clear sentence."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class StaffAction:
    """What a staff action changed (committed with the caller's transaction)."""

    conversation_id: int
    client_id: int
    channel: str
    agent_state: str
    changed: bool
    pending: bool  # unanswered patient messages: one (silent or answering) turn must run for them
    outbox_ids: list[int] = field(default_factory=list)
    message_id: int | None = None


def conversation(session: Session, conversation_id: int, *, lock: bool = False) -> dict[str, Any]:
    """The conversation and its patient's contact facts (``FOR UPDATE`` with ``lock``); refused when absent —
    row-level security makes another clinic's conversation absent, not merely refused."""
    sql = _CONVERSATION + (" FOR UPDATE OF c" if lock else "")
    row = session.execute(text(sql), {"id": conversation_id}).mappings().one_or_none()
    if row is None:
        raise TakeoverRefused("not_found", f"no conversation {conversation_id} in this clinic")
    return dict(row)


def take_over(
    session: Session, conversation_id: int, *, reason: str = STAFF_REPLY_REASON, keep_reason: bool = True
) -> StaffAction:
    """Put the conversation with staff: the agent stays silent until ``hand_back``."""
    conv = conversation(session, conversation_id, lock=True)
    was_handoff = str(conv["agent_state"]).lower() == HANDOFF
    pending = session.execute(
        _TAKE_OVER,
        {"id": conversation_id, "reason": reason, "urgency": "normal", "handoff": HANDOFF, "keep_reason": keep_reason},
    ).scalar_one()
    return StaffAction(
        conversation_id,
        int(conv["client_id"]),
        str(conv["channel"]),
        HANDOFF,
        changed=not was_handoff or not keep_reason,
        pending=bool(pending),
    )


def reply(
    session: Session, clinic_id: int, conversation_id: int, body: str, staff_name: str, now: datetime, trace_id: str
) -> StaffAction:
    """Queue a staff message to the patient on the conversation's channel (and take the conversation over)."""
    body = body.strip()
    if not body:
        raise TakeoverRefused("empty", "the message is empty")
    if len(body) > MAX_REPLY_CHARS:
        raise TakeoverRefused("too_long", f"the message is longer than {MAX_REPLY_CHARS} characters")
    staff_name = staff_name.strip()[:80] or "staff"
    conv = conversation(session, conversation_id, lock=True)
    sms = conv["channel"] == "sms"
    if sms:
        # The one decision every sender makes (the send actor makes it again at the moment of sending).
        decision = conversation_text_decision(conv["phone"], conv["consent_state"], conv["sms_status"], now)
        refusals = {
            "no_phone": f"conversation {conversation_id} has no phone number to text",
            "opted_out": f"the patient on conversation {conversation_id} opted out of texts; nothing sent",
            "invalid_number": f"the patient's number on conversation {conversation_id} cannot receive texts "
            f"({conv['sms_status']}); nothing sent",
        }
        if not decision.send:
            reason = decision.reason or "refused"
            raise TakeoverRefused(reason, refusals.get(reason, f"not sent: {reason}"))
    clinic_number = session.execute(_CLINIC_NUMBER, {"id": conversation_id, "clinic_id": clinic_id}).scalar_one()
    taken = take_over(session, conversation_id)
    # Written first: the outbox row carries the message's id (and is deduped by it).
    message_id = write_history_message(
        session,
        clinic_id,
        conversation_id,
        body,
        role="staff",
        channel=str(conv["channel"]),
        meta={"staff": staff_name},
    )
    session.execute(
        text("UPDATE conversations SET last_message_at = :now WHERE id = :id"), {"now": now, "id": conversation_id}
    )
    outbox_ids = insert_rows(
        session,
        clinic_id,
        [
            OutboxRow(
                channel=str(conv["channel"]),
                kind="staff",
                to_address=str(conv["phone"]) if sms else f"chat:{conversation_id}",
                from_address=str(clinic_number or "") if sms else "",
                body=body,
                client_id=int(conv["client_id"]),
                conversation_id=conversation_id,
                priority=0,
                meta={"message_id": message_id, "staff": staff_name},
                dedupe_key=f"staff:{conversation_id}:{message_id}",
                trace_id=trace_id,
            )
        ],
    )
    return StaffAction(
        conversation_id,
        taken.client_id,
        taken.channel,
        HANDOFF,
        changed=True,
        pending=taken.pending,
        outbox_ids=outbox_ids,
        message_id=message_id,
    )


def hand_back(session: Session, conversation_id: int) -> StaffAction:
    """Clear the handoff: the agent answers the patient's next message (and any unanswered one now)."""
    conv = conversation(session, conversation_id, lock=True)
    if str(conv["agent_state"]).lower() != HANDOFF:
        return StaffAction(
            conversation_id,
            int(conv["client_id"]),
            str(conv["channel"]),
            str(conv["agent_state"]).lower(),
            changed=False,
            pending=False,
        )
    pending = session.execute(_HAND_BACK, {"id": conversation_id, "idle": IDLE}).scalar_one()
    return StaffAction(
        conversation_id, int(conv["client_id"]), str(conv["channel"]), IDLE, changed=True, pending=bool(pending)
    )


def follow_ups(clinic_id: int, action: StaffAction) -> list[dramatiq.Message]:
    """What to enqueue (by actor name) once the action's transaction committed: its texts, and a turn for
    unanswered patient messages.  A failed enqueue loses nothing: the rows are committed and the sweeper
    re-enqueues queued outbox rows and unanswered conversations."""
    messages = outbox_sends(clinic_id, action.outbox_ids)
    if action.pending:
        messages.append(message_for("run_conversation", TURNS_QUEUE, clinic_id, action.conversation_id))
    return messages
