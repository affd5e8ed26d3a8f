"""The end of the clinic's day: visits nobody resolved, and the clinic's optional auto no-show.

Run by the scheduled ``close_visit_days`` actor (every few minutes, ``worker/schedule.py``), per clinic:
- auto no-show (off by default; ``policies.auto_no_show_after_minutes``): a booked or confirmed visit whose start
  passed by the grace period, within the last day, is marked a no-show through the same transition staff use
  (``transitions.apply_transition``: the follow-up text, the deposit and the fee as for a no-show marked by hand);
- from the clinic's end-of-day time (``policies.end_of_day_review_at``, clinic-local, default 19:00): the day's
  visits still booked, confirmed or checked in are listed for staff — they are on ``medspa staff attention``
  (:func:`unresolved_visits`, the one query) and the on-call number gets one text a day (outbox dedupe key per
  clinic and local date) naming how many and which;
- fees recorded as due whose charge message was lost are handed back to the charge actor.
Everything is read from Postgres at the moment of the scan, so a missed run is covered by the next one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import Database, sql_list
from domain.appointments import UNRESOLVED_STATUSES
from domain.visits import Transition, VisitPolicy, auto_no_show_due, end_of_day_due, unresolved_summary
from worker.outbox.rows import OutboxRow
from worker.outbox.writes import insert_rows
from worker.visits.fees import stale_due_fees
from worker.visits.transitions import VisitRefused, VisitResult, apply_transition

log = logging.getLogger(__name__)

AUTO_BY = "end-of-day job (auto no-show)"
LOOKBACK = timedelta(days=1)  # auto no-show never reaches further back than this
ATTENTION_DAYS = 3  # unresolved visits stay on the attention list this long after their day

_CLINIC = """
SELECT c.name, c.timezone, c.policies, c.oncall_phone,
       (SELECT e164 FROM clinic_phone_numbers n WHERE n.clinic_id = c.id ORDER BY id LIMIT 1) AS sms
FROM clinics c WHERE c.id = :id
"""
_AUTO_CANDIDATES = """
SELECT id, status, starts_at FROM appointments
WHERE kind = 'appointment' AND imported_at IS NULL AND status IN ('booked', 'confirmed')
  AND starts_at <= :latest AND starts_at > :earliest
ORDER BY starts_at LIMIT 200
"""
# Visits whose end passed without an outcome (the attention list, and the end-of-day text for one local day).
_UNRESOLVED = f"""
SELECT a.id AS appointment_id, a.conversation_id, a.status, a.starts_at, a.ends_at,
       cl.name AS client, cl.phone_e164 AS phone, s.name AS service, p.name AS provider
FROM appointments a
LEFT JOIN clients cl ON cl.id = a.client_id
LEFT JOIN services s ON s.id = a.service_id
JOIN providers p ON p.id = a.provider_id
WHERE a.kind = 'appointment' AND a.imported_at IS NULL AND a.status IN {sql_list(UNRESOLVED_STATUSES)}
  AND a.ends_at <= :now AND a.starts_at >= :since AND a.starts_at < :until
ORDER BY a.starts_at, a.id
"""


def unresolved_visits(
    session: Session, now: datetime, *, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Visits whose time is over with no outcome recorded (booked, confirmed or checked in), oldest first;
    by default those of the last ``ATTENTION_DAYS`` days.  Runs inside a clinic's tenant scope."""
    params = {"now": now, "since": since or now - timedelta(days=ATTENTION_DAYS), "until": until or now}
    return [dict(r) for r in session.execute(text(_UNRESOLVED), params).mappings()]


@dataclass
class DayClose:
    auto_no_shows: list[VisitResult] = field(default_factory=list)
    unresolved: list[int] = field(default_factory=list)  # listed for staff today (empty before the day's end)
    outbox_ids: list[int] = field(default_factory=list)  # the staff text, to send after the commit
    stale_fees: list[int] = field(default_factory=list)  # due fees to hand back to the charge actor


def close_clinic_day(database: Database, clinic_id: int, now: datetime) -> DayClose:
    """One clinic's end-of-day work at ``now`` (the container's clock)."""
    out = DayClose()
    with database.tenant_scope(clinic_id) as session:
        clinic = session.execute(text(_CLINIC), {"id": clinic_id}).mappings().one()
    policy = VisitPolicy.from_policies(clinic["policies"])
    if policy.auto_no_show_after_minutes:
        out.auto_no_shows = _auto_no_show(database, clinic_id, now, policy)
    tz = ZoneInfo(clinic["timezone"])
    local_now = now.astimezone(tz)
    if end_of_day_due(local_now, policy):
        midnight = datetime.combine(local_now.date(), datetime.min.time(), tzinfo=tz)
        with database.tenant_scope(clinic_id) as session:
            rows = unresolved_visits(session, now, since=midnight.astimezone(tz), until=now)
            out.unresolved = [int(r["appointment_id"]) for r in rows]
            if rows and clinic["oncall_phone"]:
                body = unresolved_summary(clinic["name"], len(rows), local_now.strftime("%a %b %-d"), out.unresolved)
                out.outbox_ids = insert_rows(
                    session,
                    clinic_id,
                    [
                        OutboxRow(
                            channel="sms",
                            kind="notification",
                            to_address=str(clinic["oncall_phone"]),
                            from_address=str(clinic["sms"] or ""),
                            body=body,
                            client_id=None,
                            conversation_id=None,
                            priority=0,
                            dedupe_key=f"visits:end-of-day:{local_now.date().isoformat()}",
                        )
                    ],
                )
        if rows:
            log.info("unresolved visits at the end of the day", extra={"clinic_id": clinic_id, "count": len(rows)})
    out.stale_fees = stale_due_fees(database, clinic_id)
    return out


def _auto_no_show(database: Database, clinic_id: int, now: datetime, policy: VisitPolicy) -> list[VisitResult]:
    grace = timedelta(minutes=policy.auto_no_show_after_minutes)
    with database.tenant_scope(clinic_id) as session:
        candidates = session.execute(
            text(_AUTO_CANDIDATES), {"latest": now - grace, "earliest": now - LOOKBACK - grace}
        ).all()
    results: list[VisitResult] = []
    for candidate in candidates:
        if not auto_no_show_due(candidate.status, candidate.starts_at, now, policy):
            continue
        try:
            with database.tenant_scope(clinic_id) as session:  # one transaction per visit, like a desk's
                result = apply_transition(session, clinic_id, int(candidate.id), Transition.NO_SHOW, now, by=AUTO_BY)
        except VisitRefused:
            continue  # resolved meanwhile (checked in at the last minute): nothing to do
        if result.changed:
            results.append(result)
    return results
