"""The waitlist job: lapse holds that ran out, close openings too close to book — or that nobody can book at all
(a closed date, outside the clinic's or the provider's hours: ``domain.waitlist.never_bookable``) — and offer each
open opening to the next fitting waitlister (``domain.waitlist.candidates``) — one text through the outbox, with
consent and the clinic's quiet hours (``domain.audience.decide``, transactional).

Safe with two scheduler replicas or an overlapping run: each opening is handled in its own transaction with its
row locked and a per-clinic advisory lock (one offer decision at a time, so nobody is offered two slots at
once), an offer is unique per (opening, entry), and its text's dedupe key is the offer's id.  Outside the recipient's window nobody is offered yet (a 15-minute hold at night helps nobody):
the opening waits for the next run inside the window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.clinics import load_clinic
from db.engine import Database
from domain.audience import SendPolicy, decide
from domain.availability import ServiceSpec
from domain.clinic import Clinic
from domain.templates import when_label
from domain.waitlist import Facts, Opening, candidates, hold_expiry, hold_minutes, never_bookable, offer_text
from worker.appointments import store
from worker.appointments.slots import provider_hours
from worker.outbox.planning import RECIPIENT_COLUMNS, planned_recipient
from worker.outbox.rows import OutboxRow
from worker.outbox.writes import insert_rows
from worker.waitlist.store import entries_for

log = logging.getLogger(__name__)

OFFER_PRIORITY = 1  # a held offer is time-critical: after replies (0), before automations (5)
OPENINGS_PER_RUN = 100

_LAPSE_HOLDS = """
UPDATE waitlist_offers SET status = 'lapsed'
WHERE clinic_id = :c AND status = 'held' AND expires_at <= :now
RETURNING id
"""
_CLOSE_TOO_LATE = """
UPDATE waitlist_openings SET status = 'closed', updated_at = now()
WHERE clinic_id = :c AND status IN ('new', 'offering') AND starts_at < :bookable_from
"""
# Open openings nobody holds right now.
_OPEN = """
SELECT o.id FROM waitlist_openings o
WHERE o.clinic_id = :c AND o.status IN ('new', 'offering')
  AND NOT EXISTS (SELECT 1 FROM waitlist_offers h WHERE h.opening_id = o.id AND h.status = 'held')
ORDER BY o.starts_at, o.id LIMIT :limit
"""
_LOCK_OPENING = """
SELECT id, provider_id, starts_at, ends_at, status FROM waitlist_openings
WHERE id = :id AND status IN ('new', 'offering') FOR UPDATE SKIP LOCKED
"""
_OFFERED = "SELECT entry_id FROM waitlist_offers WHERE opening_id = :o"
_HOLDING = "SELECT DISTINCT client_id FROM waitlist_offers WHERE clinic_id = :c AND status = 'held'"
_RECIPIENT = (
    f"SELECT c.id AS client_id, c.name, {RECIPIENT_COLUMNS}, 0 AS week, 0 AS ever FROM clients c WHERE c.id = :id"
)
_INSERT_OFFER = """
INSERT INTO waitlist_offers (clinic_id, opening_id, entry_id, client_id, service_id, provider_id, starts_at, status,
                             expires_at)
VALUES (:c, :o, :e, :client, :service, :p, :start, :status, :expires)
ON CONFLICT (opening_id, entry_id) DO NOTHING
RETURNING id
"""
_MARK_OFFERING = "UPDATE waitlist_openings SET status = 'offering', updated_at = now() WHERE id = :id"


@dataclass
class TickResult:
    outbox_ids: list[int] = field(default_factory=list)  # offers to send now (committed)
    lapsed: int = 0
    offered: int = 0
    skipped: int = 0
    waiting: int = 0  # openings with a fitting waitlister outside their texting window


def tick_clinic(database: Database, clinic_id: int, now: datetime) -> TickResult:
    """One run for one clinic: lapse, close, offer.  Returns the committed offer texts to send."""
    result = TickResult()
    with database.tenant_scope(clinic_id) as session:
        clinic = load_clinic(session, clinic_id)
        if clinic is None:
            return result
        lead = clinic.lead_time
        result.lapsed = len(session.execute(text(_LAPSE_HOLDS), {"c": clinic_id, "now": now}).all())
        session.execute(text(_CLOSE_TOO_LATE), {"c": clinic_id, "bookable_from": now + lead})
        opening_ids = [
            int(r) for r in session.execute(text(_OPEN), {"c": clinic_id, "limit": OPENINGS_PER_RUN}).scalars()
        ]
    for opening_id in opening_ids:
        with database.tenant_scope(clinic_id) as session:
            _offer_opening(session, clinic_id, opening_id, clinic, lead, now, result)
    if result.lapsed or result.offered or result.skipped:
        log.info(
            "waitlist run",
            extra={
                "clinic_id": clinic_id,
                "lapsed": result.lapsed,
                "offered": result.offered,
                "skipped": result.skipped,
                "waiting": result.waiting,
            },
        )
    return result


def _offer_opening(
    session: Session,
    clinic_id: int,
    opening_id: int,
    clinic: Clinic,
    lead: timedelta,
    now: datetime,
    result: TickResult,
) -> None:
    # One offer decision at a time per clinic (an overlapping run waits here): "holding another offer" holds.
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('waitlist_offers'), CAST(:c AS integer))"), {"c": clinic_id}
    )
    row = session.execute(text(_LOCK_OPENING), {"id": opening_id}).mappings().one_or_none()
    if row is None:
        return  # handled by a concurrent run, or no longer open
    opening = Opening(int(row["id"]), int(row["provider_id"]), row["starts_at"], row["ends_at"])
    # The providers and services as slot-finding reads them (active ones; hours, lengths).
    provider = next((p for p in store.providers(session, clinic_id) if p.id == opening.provider_id), None)
    if provider is None:
        session.execute(text("UPDATE waitlist_openings SET status = 'closed' WHERE id = :id"), {"id": opening.id})
        return
    services = {s.id: s for s in store.services(session, clinic_id)}
    provider_services = frozenset(s for s in provider.service_ids if s in services)
    # The provider's time inside the opening that is taken again (the freed time may have been booked meanwhile):
    # the one query of what occupies a provider (``worker.appointments.store.BUSY``, checked-in visits included).
    busy = [
        (b.starts_at, b.blocked_until)
        for b in store.busy_rows(session, clinic_id, opening.starts_at, opening.ends_at)
        if b.provider_id == opening.provider_id
    ]
    # The freed time still free from its start: up to the first live booking inside it.
    free_until = min([opening.ends_at, *(start for start, _ in busy if start >= opening.starts_at)])
    if any(start < opening.starts_at < end for start, end in busy) or free_until <= opening.starts_at:
        session.execute(text("UPDATE waitlist_openings SET status = 'closed' WHERE id = :id"), {"id": opening.id})
        return
    usable = Opening(opening.id, opening.provider_id, opening.starts_at, free_until)
    facts = Facts(
        schedule=clinic.schedule,
        now=now,
        lead=lead,
        services={sid: ServiceSpec(sid, s.duration_min, s.buffer_min) for sid, s in services.items()},
        provider_services=provider_services,
        provider_hours=provider_hours(provider, clinic),
        holding_clients=frozenset(int(c) for c in session.execute(text(_HOLDING), {"c": clinic_id}).scalars()),
        already_offered=frozenset(int(e) for e in session.execute(text(_OFFERED), {"o": opening.id}).scalars()),
    )
    if never_bookable(usable, facts):
        # A closed date, or outside the clinic's or the provider's hours: slot-finding would never offer this start,
        # so a waitlister's YES could only be told it was taken.  Nobody is texted; the opening closes.
        session.execute(text("UPDATE waitlist_openings SET status = 'closed' WHERE id = :id"), {"id": opening.id})
        return
    entries = entries_for(session, clinic_id, opening.provider_id, sorted(provider_services))
    policies = dict(clinic.policies or {})
    policy = SendPolicy.transactional_for(clinic.timezone, policies)
    for entry in candidates(usable, entries, facts):
        recipient_row = session.execute(text(_RECIPIENT), {"id": entry.client_id}).mappings().one()
        recipient = planned_recipient(recipient_row)
        decision = decide(recipient, policy, now)
        if decision.send and decision.deferred:
            result.waiting += 1
            return  # nobody is offered outside the texting window; the next run inside it offers
        status = "held" if decision.send else "skipped"
        offer_id = session.execute(
            text(_INSERT_OFFER),
            {
                "c": clinic_id,
                "o": opening.id,
                "e": entry.id,
                "client": entry.client_id,
                "service": entry.service_id,
                "p": opening.provider_id,
                "start": opening.starts_at,
                "status": status,
                "expires": hold_expiry(now, policies),
            },
        ).scalar_one_or_none()
        if offer_id is None:
            continue
        if not decision.send:
            result.skipped += 1
            log.info(
                "waitlist offer skipped",
                extra={"clinic_id": clinic_id, "entry_id": entry.id, "reason": decision.reason},
            )
            continue
        body = offer_text(
            clinic.name,
            services[entry.service_id].name,
            provider.name,
            when_label(opening.starts_at, clinic.timezone),
            hold_minutes(policies),
        )
        outbox = OutboxRow(
            channel="sms",
            kind="automation",
            to_address=recipient.phone or "",
            from_address=clinic.routing.sms_number,
            body=body,
            client_id=entry.client_id,
            conversation_id=None,
            priority=OFFER_PRIORITY,
            meta={"automation": "waitlist_offer", "waitlist_offer_id": int(offer_id), "marketing": False},
            dedupe_key=f"waitlist:offer:{int(offer_id)}",
        )
        result.outbox_ids += insert_rows(session, clinic_id, [outbox])
        session.execute(text(_MARK_OFFERING), {"id": opening.id})
        result.offered += 1
        return
