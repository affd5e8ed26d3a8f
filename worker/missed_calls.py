"""Missed-call text-back: a recorded unanswered call → at most one text to the caller, through the outbox.

The webhook (``webhooks/voice.py``) records the call as an inbox event (source ``voice``, keyed by ``CallSid``)
before it answers Twilio; the ``handle_missed_call`` actor runs ``text_back`` — and the sweeper re-runs it for an
event still unprocessed after the inbox deadline.  One transaction: the event's row lock, the caller's client and
SMS conversation (created on first contact, so the patient's reply is a normal conversation that already holds
the text), the client's row lock (concurrent calls from one number count the daily cap one after the other), the
decisions — the clinic's settings and the cap (``domain.missed_calls``), consent and the number's status
(``domain.audience.decide``, the one send decision: a STOPped number gets nothing) — then the outbox row, its
history message, the ``missed_calls`` record and the event marked processed.  Quiet hours are the sender's: a
text queued at night is deferred to the morning, never dropped (``worker/outbox``).

Idempotent: ``missed_calls`` is unique on the call and the outbox row's dedupe key is the call, so the same call
recorded, retried or swept twice is texted once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from db.engine import psycopg_connection
from domain.audience import RecipientFacts, decide
from domain.missed_calls import (
    MissedCallPolicy,
    local_day_start,
    text_back_body,
    text_back_skip_reason,
    textable_caller,
)
from worker.container import Container
from worker.conversations import sms_conversation
from worker.outbox.decisions import send_policy
from worker.outbox.rows import OutboxRow
from worker.outbox.writes import insert_rows, write_history_message

log = logging.getLogger(__name__)

KIND = "missed_call"  # the outbox kind (domain.audience: a transactional text)

_EVENT = """
SELECT source, provider_event_id, payload, status, trace_id FROM inbox_events WHERE id = :id FOR UPDATE
"""
_RECIPIENT = "SELECT consent_state, sms_status, timezone FROM clients WHERE id = :id FOR UPDATE"
_TEXTED_SINCE = """
SELECT count(*) FROM missed_calls WHERE from_e164 = :phone AND status = 'texted' AND created_at >= :since
"""
_RECORD = """
INSERT INTO missed_calls (clinic_id, call_sid, inbox_id, from_e164, to_e164, reason, status, skip_reason, client_id,
                          conversation_id, outbox_id, created_at)
VALUES (:clinic, :sid, :inbox, :caller, :to, :reason, :status, :skip, :client, :conversation, :outbox, :now)
ON CONFLICT (clinic_id, call_sid) DO NOTHING
"""
_PROCESSED = """
UPDATE inbox_events SET status = 'processed', processed_at = now(), conversation_id = :conversation WHERE id = :id
"""
# Staff reads (``medspa staff missed-calls``): the most recent first.
RECENT = """
SELECT m.created_at, m.from_e164, m.reason, m.status, m.skip_reason, m.conversation_id, cl.name AS client
FROM missed_calls m LEFT JOIN clients cl ON cl.id = m.client_id
ORDER BY m.created_at DESC, m.id DESC LIMIT :limit
"""


@dataclass(frozen=True)
class TextBack:
    status: str  # texted | skipped | done (handled before) | missing
    skip_reason: str = ""
    outbox_id: int | None = None
    conversation_id: int | None = None


def text_back(container: Container, clinic_id: int, inbox_id: int) -> TextBack:
    """Decide and queue the text-back for one recorded missed call (see the module docstring).  Returns what was
    done; the caller sends ``outbox_id`` after this committed."""
    clinic, routing = container.clinic(clinic_id)
    policy = MissedCallPolicy.from_policies(clinic.policies)
    now = container.clock.now()
    with container.database.tenant_scope(clinic_id) as session:
        event = session.execute(text(_EVENT), {"id": inbox_id}).mappings().one_or_none()
        if event is None:
            return TextBack("missing")
        if event["status"] != "received" or event["source"] != "voice":
            return TextBack("done")
        payload: dict[str, Any] = dict(event["payload"] or {})
        caller = str(payload.get("from") or "")
        call_sid = str(event["provider_event_id"])
        client_id: int | None = None
        conversation_id: int | None = None
        outbox_id: int | None = None
        skip = text_back_skip_reason(policy, caller_ok=textable_caller(caller), texted_today=0)
        if skip is None:
            client_id, conversation_id, _ = sms_conversation(psycopg_connection(session), clinic_id, caller)
            recipient = session.execute(text(_RECIPIENT), {"id": client_id}).mappings().one()
            texted = session.execute(
                text(_TEXTED_SINCE), {"phone": caller, "since": local_day_start(now, clinic.timezone)}
            ).scalar_one()
            skip = text_back_skip_reason(policy, caller_ok=True, texted_today=int(texted))
            if skip is None:
                facts = RecipientFacts(
                    client_id,
                    caller,
                    str(recipient["consent_state"]),
                    sms_status=str(recipient["sms_status"]),
                    timezone=recipient["timezone"],
                )
                decision = decide(facts, send_policy(KIND, clinic), now)
                if not decision.send:
                    skip = decision.reason or "not_sendable"
        if skip is None:
            assert client_id is not None and conversation_id is not None
            body = text_back_body(policy, clinic.name)
            row = OutboxRow(
                channel="sms",
                kind=KIND,
                to_address=caller,
                from_address=str(payload.get("to") or routing.get("sms_number") or ""),
                body=body,
                client_id=client_id,
                conversation_id=conversation_id,
                priority=0,
                meta={"missed_call": call_sid},
                dedupe_key=f"missed_call:{call_sid}",
                trace_id=str(event["trace_id"] or ""),
            )
            ids = insert_rows(session, clinic_id, [row])
            if ids:
                outbox_id = ids[0]
                write_history_message(
                    session,
                    clinic_id,
                    conversation_id,
                    body,
                    role="assistant",
                    channel="sms",
                    meta={"source": "missed_call"},
                    outbox_id=outbox_id,
                )
        session.execute(
            text(_RECORD),
            {
                "clinic": clinic_id,
                "sid": call_sid,
                "inbox": inbox_id,
                "caller": caller[:64],
                "to": str(payload.get("to") or "")[:64],
                "reason": str(payload.get("reason") or "")[:32],
                "status": "skipped" if skip else "texted",
                "skip": skip or "",
                "client": client_id,
                "conversation": conversation_id,
                "outbox": outbox_id,
                "now": now,
            },
        )
        session.execute(text(_PROCESSED), {"id": inbox_id, "conversation": conversation_id})
    log.info(
        "missed call handled",
        extra={"clinic_id": clinic_id, "inbox_id": inbox_id, "texted": skip is None, "skip_reason": skip or ""},
    )
    if skip:
        return TextBack("skipped", skip, conversation_id=conversation_id)
    return TextBack("texted", outbox_id=outbox_id, conversation_id=conversation_id)
