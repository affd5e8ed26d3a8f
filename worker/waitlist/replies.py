"""A patient's YES to a waitlist offer: book the slot through the agent's own booking tool, or say it was taken.

Routing: ``worker/turns.py`` hands a one-message SMS "YES" here before the reminder-reply check and the model;
it is about an offer only when the patient has one unanswered and this is their first message since it was
texted (``domain.waitlist.answers_offer``) — otherwise None, and the message goes on as before.

Booking: the conversation's ``book_appointment`` tool (``worker/tools``) — the same availability check,
screening, deposit rule and exclusion constraint as any booking, no second copy.  Two offered patients answering
at once both reach it; the constraint lets one booking through and the other gets "sorry, it was taken" and
stays on the list.  The booking runs outside any transaction of ours, as in a turn.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from domain.agent_state import AgentState, is_negative
from domain.conversation import Reply, ToolAudit, TurnOutput
from domain.templates import reminder_reply_intent, when_label
from domain.waitlist import answers_offer, booked_text, declined_text, taken_text
from worker.container import Container
from worker.conversations import PendingMessage, Snapshot

log = logging.getLogger(__name__)

# The patient's latest offer that a reply could still answer, locked while we decide.
_LATEST_OFFER = """
SELECT o.id, o.status, o.answered_at, o.created_at, o.starts_at, o.entry_id, o.opening_id,
       w.status AS opening_status, s.slug AS service_slug, s.name AS service_name,
       p.slug AS provider_slug, p.name AS provider_name, k.timezone
FROM waitlist_offers o
JOIN waitlist_openings w ON w.id = o.opening_id
JOIN services s ON s.id = o.service_id
JOIN providers p ON p.id = o.provider_id
JOIN clinics k ON k.id = o.clinic_id
WHERE o.clinic_id = :c AND o.client_id = :client AND o.status IN ('held', 'lapsed', 'taken')
  AND o.answered_at IS NULL AND o.starts_at > :now
ORDER BY o.created_at DESC, o.id DESC LIMIT 1
FOR UPDATE OF o
"""
_PREVIOUS_INBOUND = """
SELECT max(m.created_at) FROM messages m JOIN conversations v ON v.id = m.conversation_id
WHERE v.clinic_id = :c AND v.client_id = :client AND m.direction = 'inbound' AND m.id < :current
"""
_TAKEN = "UPDATE waitlist_offers SET status = 'taken', answered_at = :now WHERE id = :id"
_DECLINED = "UPDATE waitlist_offers SET status = 'declined', answered_at = :now WHERE id = :id"
_ACCEPTED = """
WITH offer AS (
    UPDATE waitlist_offers SET status = 'accepted', answered_at = :now, appointment_id = :appt
    WHERE id = :id RETURNING entry_id, opening_id
), entry AS (
    UPDATE waitlist_entries SET status = 'booked', appointment_id = :appt, updated_at = now()
    WHERE id = (SELECT entry_id FROM offer) AND status = 'active' RETURNING id
), opening AS (
    UPDATE waitlist_openings SET status = 'filled', appointment_id = :appt, updated_at = now()
    WHERE id = (SELECT opening_id FROM offer) RETURNING id
)
UPDATE waitlist_offers SET status = 'taken'
WHERE opening_id = (SELECT opening_id FROM offer) AND id <> :id AND status IN ('held', 'lapsed')
"""


def reply_intent(body: str) -> str | None:
    """'yes' / 'no' for a plain answer to an offer ("YES", "yes please", "no thanks"), else None (no query)."""
    if reminder_reply_intent(body) == "confirm":
        return "yes"
    # "cancel" is a no to a proposal, but to an offer it means something else (the agent reads it).
    return "no" if is_negative(body) and "cancel" not in body.lower() else None


def answer_offer(container: Container, snapshot: Snapshot, message: PendingMessage, now: datetime) -> TurnOutput | None:
    """The turn for a YES or NO about a waitlist offer, or None when the message is about something else."""
    intent = reply_intent(message.body)
    if intent is None:
        return None
    clinic_id, client_id = snapshot.clinic_id, snapshot.client_id
    with container.database.tenant_scope(clinic_id) as session:
        found = (
            session.execute(text(_LATEST_OFFER), {"c": clinic_id, "client": client_id, "now": now})
            .mappings()
            .one_or_none()
        )
        if found is None:
            return None
        offer: dict[str, Any] = dict(found)
        previous = session.execute(
            text(_PREVIOUS_INBOUND), {"c": clinic_id, "client": client_id, "current": message.id}
        ).scalar_one_or_none()
        if not answers_offer(
            offer["status"], offer["answered_at"], offer["created_at"], offer["starts_at"], previous, now
        ):
            return None
        if intent == "no":
            if offer["status"] not in ("held", "lapsed"):
                return None  # nothing left to decline: the agent answers
            session.execute(text(_DECLINED), {"id": offer["id"], "now": now})
            log.info("waitlist offer declined", extra={"clinic_id": clinic_id, "offer_id": offer["id"]})
            return _output(snapshot, declined_text(offer["service_name"]), [])
        if offer["status"] == "taken" or offer["opening_status"] == "filled":
            session.execute(text(_TAKEN), {"id": offer["id"], "now": now})
            log.info("waitlist yes after the slot was filled", extra={"clinic_id": clinic_id, "offer_id": offer["id"]})
            return _output(snapshot, taken_text(offer["service_name"]), [])
    tools = container.tool_executor(
        clinic_id=clinic_id,
        client_id=client_id,
        conversation_id=snapshot.lease.conversation_id,
        fence_version=snapshot.lease.version,
    )
    start_local = offer["starts_at"].astimezone(ZoneInfo(offer["timezone"])).strftime("%Y-%m-%dT%H:%M")
    arguments = {"service": offer["service_slug"], "start": start_local, "provider": offer["provider_slug"]}
    audit: list[ToolAudit] = []
    booked = _call(tools, "book_appointment", arguments, audit)
    if "error" in booked:
        with container.database.tenant_scope(clinic_id) as session:
            session.execute(text(_TAKEN), {"id": offer["id"], "now": now})
        log.info("waitlist yes lost the slot", extra={"clinic_id": clinic_id, "offer_id": offer["id"]})
        return _output(snapshot, taken_text(offer["service_name"]), audit)
    appointment_id = int(booked["appointment_id"])
    with container.database.tenant_scope(clinic_id) as session:
        session.execute(text(_ACCEPTED), {"id": offer["id"], "now": now, "appt": appointment_id})
    log.info(
        "waitlist offer booked",
        extra={"clinic_id": clinic_id, "offer_id": offer["id"], "appointment_id": appointment_id},
    )
    url = None
    if booked.get("deposit_required"):
        link = _call(tools, "create_deposit_link", {"appointment_id": appointment_id}, audit)
        url = link.get("url")
    body = booked_text(
        offer["service_name"],
        offer["provider_name"],
        when_label(offer["starts_at"], offer["timezone"]),
        booked.get("deposit_required"),
        url,
    )
    state = AgentState.AWAITING_DEPOSIT if booked.get("deposit_required") else AgentState.BOOKED
    return _output(snapshot, body, audit, state=state)


def _call(tools: Any, name: str, arguments: dict[str, Any], audit: list[ToolAudit]) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = tools.execute(name, arguments)
    audit.append(
        ToolAudit(
            call_id="waitlist_" + uuid.uuid4().hex[:12],
            name=name,
            arguments=arguments,
            result=result,
            ok="error" not in result,
            latency_ms=int((time.monotonic() - started) * 1000),
        )
    )
    return result


def _output(snapshot: Snapshot, body: str, audit: list[ToolAudit], *, state: str | None = None) -> TurnOutput:
    return TurnOutput(
        replies=[Reply(body)],
        transcript=[],
        agent_state=state or snapshot.agent_state,
        slots=snapshot.slots,
        tool_audit=audit,
        outcome="replied",
    )
