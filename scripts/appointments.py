"""``medspa appointments …``: the day's schedule, changes made on a patient's
behalf, and blocked time.

Why these rules:
- A change made for a patient (cancel, move) texts them exactly once: the
  outbox row carries a dedupe key per intent, and the send is enqueued only
  after the transaction committed (the outbox sweeper covers a lost enqueue).
- Double booking is impossible by construction: the exclusion constraint on
  (provider, time range) decides; an overlap is reported as one line and the
  transaction rolls back, so nothing is half-written.
- Deposits follow the clinic's policy: inside the cancellation window the
  deposit is kept, outside it is refunded (by the payments worker when one is
  installed, otherwise the decision is recorded on the appointment for staff).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from scripts.common import CommandError, add_clinic_argument
from worker.automations import withdraw_appointment_messages

LIVE = ("pending_deposit", "booked", "confirmed")
_COLUMNS = ["id", "date", "start", "end", "provider", "kind", "service", "client", "phone", "status"]


@dataclass(frozen=True)
class ClinicFacts:
    id: int
    slug: str
    name: str
    timezone: str
    phone: str
    policies: dict[str, Any]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def clinic_facts(slug: str) -> ClinicFacts:
    from scripts.common import app_database

    with app_database().directory_scope() as session:
        row = (
            session.execute(
                text("SELECT id, slug, name, timezone, phone, policies FROM clinics WHERE slug = :s"), {"s": slug}
            )
            .mappings()
            .one_or_none()
        )
    if row is None:
        raise CommandError(f"no clinic with slug {slug!r} (see: medspa clinic list)")
    return ClinicFacts(int(row["id"]), row["slug"], row["name"], row["timezone"], row["phone"], row["policies"] or {})


def register(subparsers: Any) -> None:
    appts = subparsers.add_parser(
        "appointments",
        help="list, cancel, move and export appointments; block provider time",
        description="The schedule: list a day, cancel or move an appointment on a patient's behalf (they are "
        "texted once), block time for a provider, export a day as CSV. Times are clinic-local.",
    )
    sub = appts.add_subparsers(dest="appointments_command", metavar="SUBCOMMAND", required=True)

    listing = sub.add_parser(
        "list",
        help="one day's appointments and blocks",
        description="List one day's appointments and blocked time (clinic-local times).",
    )
    add_clinic_argument(listing)
    listing.add_argument("--date", metavar="YYYY-MM-DD", help="the day (default: today in the clinic's time zone)")
    listing.add_argument("--provider", metavar="SLUG", help="only this provider")
    fmt = listing.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    listing.set_defaults(handler=appointments_list)

    cancel = sub.add_parser(
        "cancel",
        help="cancel on the patient's behalf (texts them once, applies the deposit rule)",
        description="Cancel an appointment on the patient's behalf: frees the slot, texts the "
        "patient once, applies the clinic's deposit rule and queues the calendar "
        "update.",
    )
    cancel.add_argument("appointment_id", metavar="ID", type=int, help="appointment id (see: appointments list)")
    add_clinic_argument(cancel)
    cancel.add_argument("--reason", required=True, metavar="TEXT", help="why (kept on the appointment)")
    cancel.set_defaults(handler=appointments_cancel)

    move = sub.add_parser(
        "move",
        help="move to another time on the patient's behalf (texts them once)",
        description="Move an appointment to a new clinic-local start time (same length); "
        "refuses an overlap with another appointment or block.",
    )
    move.add_argument("appointment_id", metavar="ID", type=int, help="appointment id")
    add_clinic_argument(move)
    move.add_argument("--to", required=True, metavar='"YYYY-MM-DD HH:MM"', help="new clinic-local start time")
    move.add_argument("--provider", metavar="SLUG", help="also change the provider (default: keep)")
    move.set_defaults(handler=appointments_move)

    block = sub.add_parser(
        "block",
        help="block a provider's time (no bookings then)",
        description="Block a provider's time, e.g. training or leave. Refuses a block that "
        "overlaps an existing appointment or block.",
    )
    add_clinic_argument(block)
    block.add_argument("--provider", required=True, metavar="SLUG", help="provider slug")
    block.add_argument("--from", dest="start", required=True, metavar='"YYYY-MM-DD HH:MM"', help="start (clinic-local)")
    block.add_argument("--to", dest="end", required=True, metavar='"YYYY-MM-DD HH:MM"', help="end (clinic-local)")
    block.add_argument("--reason", required=True, metavar="TEXT", help="why (shown to staff)")
    block.set_defaults(handler=appointments_block)

    export = sub.add_parser(
        "export", help="write one day's schedule as CSV", description="Write one day's schedule (all providers) as CSV."
    )
    add_clinic_argument(export)
    export.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the day")
    export.add_argument("--csv", required=True, metavar="FILE", help="CSV file to write ('-' for standard output)")
    export.set_defaults(handler=appointments_export)

    from scripts.visit_import import register_import_visits  # past visits from a booking system: their own module

    register_import_visits(sub)
    from scripts.appointments_unblock import register_unblock  # gives blocked time back (issue 16: the waitlist)

    register_unblock(sub)

    from scripts.visits import register_visit_commands  # the day of a visit (check-in … late-cancel): its own module

    register_visit_commands(sub)


# ---------------------------------------------------------------------------------------------- parsing
def parse_day(value: str | None, tz: ZoneInfo) -> date:
    if value is None:
        return datetime.now(tz).date()
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise CommandError(f"invalid date {value!r} (use YYYY-MM-DD)") from None


def parse_local(value: str, tz: ZoneInfo, option: str) -> datetime:
    """'YYYY-MM-DD HH:MM' in the clinic's time zone -> an aware datetime."""
    cleaned = value.strip().replace("T", " ")
    try:
        naive = datetime.strptime(cleaned, "%Y-%m-%d %H:%M")
    except ValueError:
        raise CommandError(f'invalid {option} {value!r} (use "YYYY-MM-DD HH:MM", clinic-local time)') from None
    return naive.replace(tzinfo=tz)


def _label(moment: datetime, tz: ZoneInfo) -> str:
    from domain.prompt import local_label

    return local_label(moment, str(tz))


def _money(cents: int) -> str:
    return f"${cents // 100}" if cents % 100 == 0 else f"${cents / 100:.2f}"


def _national(phone: str) -> str:
    import phonenumbers

    try:
        return phonenumbers.format_number(phonenumbers.parse(phone), phonenumbers.PhoneNumberFormat.NATIONAL)
    except phonenumbers.NumberParseException:
        return phone


def _is_overlap(exc: DBAPIError) -> bool:
    import psycopg.errors

    return isinstance(getattr(exc, "orig", None), psycopg.errors.ExclusionViolation)


# ---------------------------------------------------------------------------------------------- list / export
def _day_rows(clinic: ClinicFacts, day: date, provider: str | None) -> list[dict[str, Any]]:
    from scripts.common import app_database

    start = datetime.combine(day, datetime.min.time(), clinic.tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), clinic.tz)
    with app_database().tenant_scope(clinic.id) as session:
        provider_id = _provider_id(session, clinic, provider) if provider else None
        rows = (
            session.execute(
                text("""SELECT a.id, a.starts_at, a.ends_at, p.slug AS provider, a.kind, s.name AS service,
                           c.name AS client, c.phone_e164 AS phone, a.status, a.notes
                    FROM appointments a JOIN providers p ON p.id = a.provider_id
                    LEFT JOIN services s ON s.id = a.service_id LEFT JOIN clients c ON c.id = a.client_id
                    WHERE a.starts_at >= :start AND a.starts_at < :end
                      AND (CAST(:provider AS bigint) IS NULL OR a.provider_id = :provider)
                    ORDER BY a.starts_at, p.slug, a.id"""),
                {"start": start, "end": end, "provider": provider_id},
            )
            .mappings()
            .all()
        )
    out: list[dict[str, Any]] = []
    for r in rows:
        local_start, local_end = r["starts_at"].astimezone(clinic.tz), r["ends_at"].astimezone(clinic.tz)
        out.append(
            {
                "id": r["id"],
                "date": local_start.date().isoformat(),
                "start": local_start.strftime("%H:%M"),
                "end": local_end.strftime("%H:%M"),
                "provider": r["provider"],
                "kind": r["kind"],
                "service": r["service"] or (f"(blocked) {r['notes']}" if r["kind"] == "block" else ""),
                "client": r["client"] or "",
                "phone": r["phone"] or "",
                "status": r["status"],
            }
        )
    return out


def _provider_id(session: Session, clinic: ClinicFacts, slug: str) -> int:
    row = session.execute(text("SELECT id FROM providers WHERE slug = :s AND active"), {"s": slug}).scalar_one_or_none()
    if row is None:
        known = session.execute(
            text("SELECT string_agg(slug, ', ' ORDER BY slug) FROM providers WHERE active")
        ).scalar()
        raise CommandError(f"no provider {slug!r} at clinic {clinic.slug!r} (providers: {known or 'none'})")
    return int(row)


def _write_csv(rows: list[dict[str, Any]], stream: Any) -> None:
    writer = csv.DictWriter(stream, fieldnames=_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def appointments_list(args: argparse.Namespace) -> int:
    from scripts.common import print_json, print_table

    clinic = clinic_facts(args.clinic)
    rows = _day_rows(clinic, parse_day(args.date, clinic.tz), args.provider)
    if args.json:
        print_json(rows)
    elif args.csv:
        _write_csv(rows, sys.stdout)
    else:
        print_table(rows, _COLUMNS)
    return 0


def appointments_export(args: argparse.Namespace) -> int:
    clinic = clinic_facts(args.clinic)
    rows = _day_rows(clinic, parse_day(args.date, clinic.tz), None)
    if args.csv == "-":
        _write_csv(rows, sys.stdout)
        return 0
    buffer = io.StringIO()
    _write_csv(rows, buffer)
    try:
        with open(args.csv, "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
    except OSError as exc:
        raise CommandError(f"cannot write {args.csv}: {exc.strerror or exc}") from None
    print(f"wrote {len(rows)} row(s) to {args.csv}")
    return 0


# ---------------------------------------------------------------------------------------------- changes for a patient
_APPOINTMENT_SQL = """
    SELECT a.id, a.kind, a.status, a.starts_at, a.ends_at, a.blocked_until, a.deposit_cents, a.provider_id,
           a.service_id, a.client_id, p.slug AS provider_slug, p.name AS provider_name,
           s.name AS service_name, c.name AS client_name, c.phone_e164, c.consent_state, c.sms_status,
           (SELECT id FROM conversations v WHERE v.client_id = a.client_id AND v.channel = 'sms') AS conversation_id
    FROM appointments a JOIN providers p ON p.id = a.provider_id
    LEFT JOIN services s ON s.id = a.service_id LEFT JOIN clients c ON c.id = a.client_id
    WHERE a.id = :id FOR UPDATE OF a
"""


@dataclass
class AfterCommit:
    """Work to enqueue once the transaction committed (never before: a worker must see committed rows)."""

    clinic_id: int
    outbox_ids: list[int]
    refund: bool = False
    calendar: bool = False
    appointment_id: int = 0


def _enqueue(after: AfterCommit) -> list[str]:
    """Enqueue by actor name: the texts' sends, then the refund and the calendar sync the payments worker runs."""
    from medspa.broker import OUTBOX_QUEUE, SCHEDULED_QUEUE, message_for
    from scripts.common import enqueue_by_name

    notes: list[str] = []
    messages = [message_for("send_outbox", OUTBOX_QUEUE, after.clinic_id, outbox_id) for outbox_id in after.outbox_ids]
    if after.refund:
        messages.append(message_for("refund_deposit", SCHEDULED_QUEUE, after.clinic_id, after.appointment_id))
    if after.calendar:
        messages.append(message_for("sync_calendar_event", SCHEDULED_QUEUE, after.clinic_id, after.appointment_id))
    try:
        enqueue_by_name(messages)
    except Exception as exc:  # noqa: BLE001 - the committed rows are swept later; say so, don't fail the command
        notes.append(f"could not reach the queue ({type(exc).__name__}); the sweeper will pick the work up")
    return notes


def _text_patient(
    session: Session, clinic: ClinicFacts, appt: dict[str, Any], body: str, dedupe_key: str
) -> tuple[str, list[int]]:
    """Queue one SMS to the patient (once per dedupe key) and record it in their conversation.
    Returns what happened (for the staff member) and the outbox ids to enqueue after commit."""
    from worker.outbox.decisions import conversation_text_decision
    from worker.outbox.rows import OutboxRow
    from worker.outbox.writes import insert_rows

    decision = conversation_text_decision(
        appt["phone_e164"], appt["consent_state"] or "unknown", appt["sms_status"] or "ok", datetime.now(UTC)
    )
    if not decision.send:
        return {
            "no_phone": "patient not texted: no phone number on file",
            "opted_out": "patient not texted: they opted out of texts (call them)",
            "invalid_number": "patient not texted: their number cannot receive texts (call them)",
        }.get(decision.reason or "", f"patient not texted: {decision.reason}"), []
    ids = insert_rows(
        session,
        clinic.id,
        [
            OutboxRow(
                channel="sms",
                kind="staff",
                to_address=appt["phone_e164"],
                from_address="",
                body=body,
                client_id=appt["client_id"],
                conversation_id=appt["conversation_id"],
                priority=0,
                dedupe_key=dedupe_key,
                meta={"appointment_id": appt["id"], "by": "staff-cli"},
            )
        ],
    )
    if not ids:
        return "patient already texted about this change", []
    if appt["conversation_id"]:
        # The agent sees what staff told the patient if they reply.
        session.execute(
            text("""INSERT INTO messages (clinic_id, conversation_id, direction, role, body, channel, meta)
                    VALUES (:c, :conv, 'outbound', 'staff', :body, 'sms', CAST(:meta AS jsonb))"""),
            {"c": clinic.id, "conv": appt["conversation_id"], "body": body, "meta": f'{{"outbox_id": {ids[0]}}}'},
        )
    return "patient texted (queued)", ids


def _load(session: Session, clinic: ClinicFacts, appointment_id: int) -> dict[str, Any]:
    row = session.execute(text(_APPOINTMENT_SQL), {"id": appointment_id}).mappings().one_or_none()
    if row is None:
        raise CommandError(f"no appointment {appointment_id} at clinic {clinic.slug!r}")
    return dict(row)


def deposit_decision(
    policies: dict[str, Any], starts_at: datetime, now: datetime, paid_cents: int, refund_due: bool = False
) -> tuple[str, str]:
    """(action, sentence for the patient): 'none' | 'keep' | 'refund', by the same rule the payments worker
    applies (``worker.payments_flow.deposit_decision``) so the text and the money agree."""
    if not paid_cents:
        return "none", ""
    try:
        from worker.payments_flow import deposit_decision as rule
    except ImportError:  # payments flow not installed: the documented default policy
        window = timedelta(hours=float(policies.get("cancellation_window_hours", 24) or 0))
        late = starts_at - now < window
        action = (
            ("refund" if policies.get("deposit_refund_inside_window", False) else "keep")
            if late
            else ("refund" if policies.get("deposit_refund_outside_window", True) else "keep")
        )
    else:
        action = rule(policies, starts_at, now)
    if refund_due:
        action = "refund"
    if action == "keep":
        window_h = float(policies.get("cancellation_window_hours", 24) or 0)
        return "keep", f"As this is within {window_h:g} hours of the visit, the {_money(paid_cents)} deposit is kept."
    return "refund", f"Your {_money(paid_cents)} deposit will be refunded."


def appointments_cancel(args: argparse.Namespace) -> int:
    from scripts.common import app_database

    reason = args.reason.strip()
    if not reason:
        raise CommandError("--reason must say why the appointment is cancelled")
    clinic = clinic_facts(args.clinic)
    now = datetime.now(UTC)
    report: list[str] = []
    texts: list[int] = []
    with app_database().tenant_scope(clinic.id) as session:
        appt = _load(session, clinic, args.appointment_id)
        if appt["status"] not in LIVE:
            raise CommandError(f"appointment {appt['id']} is {appt['status']}, not cancelled again")
        when = _label(appt["starts_at"], clinic.tz)
        paid = session.execute(
            text("""SELECT id, amount_cents, status FROM payments
                    WHERE appointment_id = :id AND status IN ('paid', 'refund_due') ORDER BY id LIMIT 1"""),
            {"id": appt["id"]},
        ).one_or_none()
        action, sentence = deposit_decision(
            clinic.policies,
            appt["starts_at"],
            now,
            int(paid.amount_cents) if paid else 0,
            refund_due=paid is not None and paid.status == "refund_due",
        )
        # The payments worker's refund_deposit applies the same rule and moves the money (refund or mark kept).
        decision = {
            "none": "no deposit paid",
            "keep": "deposit kept (clinic policy)",
            "refund": "deposit refund queued",
        }
        fee = int(clinic.policies.get("late_cancel_fee_cents", 0) or 0)
        window_h = float(clinic.policies.get("cancellation_window_hours", 24) or 0)
        late = (appt["starts_at"] - now) < timedelta(hours=window_h)
        fee_note = (
            f"late cancellation: the {_money(fee)} fee applies per policy (not charged automatically)"
            if late and fee and appt["kind"] == "appointment" and action == "none"
            else ""
        )
        note = "; ".join(n for n in (f"cancelled by staff {now:%Y-%m-%d %H:%M} UTC", decision[action], fee_note) if n)
        session.execute(
            text("""UPDATE appointments SET status = 'cancelled', cancelled_at = now(), cancel_reason = :reason,
                           calendar_sync = 'pending', hold_expires_at = NULL, updated_at = now(),
                           notes = CASE WHEN notes = '' THEN :note ELSE notes || E'\\n' || :note END
                    WHERE id = :id"""),
            {"reason": reason, "note": note, "id": appt["id"]},
        )
        withdraw_appointment_messages(session, clinic.id, appt["id"])
        if appt["kind"] == "appointment":
            first = (appt["client_name"] or "").split(" ")[0] or "there"
            body = (
                f"Hi {first}, as requested your {appt['service_name'] or 'appointment'} at {clinic.name} on "
                f"{when} is cancelled. {sentence + ' ' if sentence else ''}"
                f"Reply here or call {_national(clinic.phone)} to rebook."
            )
            line, texts = _text_patient(session, clinic, appt, body, f"staff:cancel:{appt['id']}")
            report.append(line)
    after = AfterCommit(
        clinic.id, texts, refund=action != "none", calendar=appt["kind"] == "appointment", appointment_id=appt["id"]
    )
    report += _enqueue(after)
    what = appt["service_name"] or "blocked time"
    print(f"cancelled appointment {appt['id']}: {what} with {appt['provider_name']}, {when} (slot freed)")
    for line in report + [f"deposit: {decision[action]}"] + ([fee_note] if fee_note else []):
        print(f"  {line}")
    if appt["kind"] == "appointment":
        print("  calendar: update queued")
    return 0


def _overlap_line(clinic: ClinicFacts, provider_id: int, start: datetime, end: datetime, ignore: int | None) -> str:
    from scripts.common import app_database

    with app_database().tenant_scope(clinic.id) as session:
        row = session.execute(
            text("""SELECT id, kind, starts_at, blocked_until FROM appointments
                    WHERE provider_id = :p AND status = ANY(:live) AND id <> COALESCE(CAST(:ignore AS bigint), 0)
                      AND tstzrange(starts_at, blocked_until, '[)') && tstzrange(:s, :e, '[)')
                    ORDER BY starts_at LIMIT 1"""),
            {"p": provider_id, "live": list(LIVE), "ignore": ignore, "s": start, "e": end},
        ).one_or_none()
    if row is None:
        return "another appointment or block"
    return (
        f"{'block' if row.kind == 'block' else 'appointment'} {row.id} "
        f"on {row.starts_at.astimezone(clinic.tz):%Y-%m-%d %H:%M}-{row.blocked_until.astimezone(clinic.tz):%H:%M}"
    )


def appointments_move(args: argparse.Namespace) -> int:
    from scripts.common import app_database

    clinic = clinic_facts(args.clinic)
    new_start = parse_local(args.to, clinic.tz, "--to")
    if new_start <= datetime.now(UTC):
        raise CommandError(f"{args.to} is in the past; pick a future time")
    texts: list[int] = []
    report: list[str] = []
    provider_id, provider_name, new_blocked = 0, "", new_start
    try:
        with app_database().tenant_scope(clinic.id) as session:
            appt = _load(session, clinic, args.appointment_id)
            if appt["status"] not in LIVE:
                raise CommandError(f"appointment {appt['id']} is {appt['status']}; only live appointments move")
            provider_id, provider_name = appt["provider_id"], appt["provider_name"]
            if args.provider and args.provider != appt["provider_slug"]:
                provider_id = _provider_id(session, clinic, args.provider)
                provider_name = session.execute(
                    text("SELECT name FROM providers WHERE id = :id"), {"id": provider_id}
                ).scalar_one()
                if (
                    appt["service_id"] is not None
                    and not session.execute(
                        text("SELECT 1 FROM provider_services WHERE provider_id = :p AND service_id = :s"),
                        {"p": provider_id, "s": appt["service_id"]},
                    ).first()
                ):
                    raise CommandError(f"provider {args.provider!r} does not offer {appt['service_name']}")
            length = appt["ends_at"] - appt["starts_at"]
            busy = appt["blocked_until"] - appt["starts_at"]
            new_end, new_blocked = new_start + length, new_start + busy
            session.execute(
                text("""UPDATE appointments SET starts_at = :s, ends_at = :e, blocked_until = :b, provider_id = :p,
                               calendar_sync = 'pending', updated_at = now() WHERE id = :id"""),
                {"s": new_start, "e": new_end, "b": new_blocked, "p": provider_id, "id": appt["id"]},
            )
            withdraw_appointment_messages(session, clinic.id, appt["id"])  # reminders for the old time
            when = _label(new_start, clinic.tz)
            if appt["kind"] == "appointment":
                first = (appt["client_name"] or "").split(" ")[0] or "there"
                body = (
                    f"Hi {first}, as requested your {appt['service_name'] or 'appointment'} at {clinic.name} "
                    f"has moved to {when} with {provider_name}. Reply here or call {_national(clinic.phone)} "
                    "with any questions."
                )
                key = f"staff:move:{appt['id']}:{new_start.astimezone(UTC):%Y%m%dT%H%M}:{provider_id}"
                line, texts = _text_patient(session, clinic, appt, body, key)
                report.append(line)
    except DBAPIError as exc:
        if not _is_overlap(exc):
            raise
        clash = _overlap_line(clinic, provider_id, new_start, new_blocked, args.appointment_id)
        raise CommandError(f"{args.to} overlaps {clash} for {provider_name}; nothing changed") from None
    calendar = appt["kind"] == "appointment"
    report += _enqueue(AfterCommit(clinic.id, texts, calendar=calendar, appointment_id=appt["id"]))
    print(f"moved appointment {appt['id']}: {appt['service_name'] or 'blocked time'} now {when} with {provider_name}")
    for line in report:
        print(f"  {line}")
    if appt["deposit_cents"]:
        print("  deposit: stays with the appointment")
    if appt["kind"] == "appointment":
        print("  calendar: update queued")
    return 0


def appointments_block(args: argparse.Namespace) -> int:
    from scripts.common import app_database

    clinic = clinic_facts(args.clinic)
    start = parse_local(args.start, clinic.tz, "--from")
    end = parse_local(args.end, clinic.tz, "--to")
    reason = args.reason.strip()
    if end <= start:
        raise CommandError("--to must be after --from")
    if not reason:
        raise CommandError("--reason must say why the time is blocked")
    provider_id = 0
    try:
        with app_database().tenant_scope(clinic.id) as session:
            provider_id = _provider_id(session, clinic, args.provider)
            key = f"block:{args.provider}:{start.astimezone(UTC):%Y%m%dT%H%M}:{end.astimezone(UTC):%Y%m%dT%H%M}"
            block_id = session.execute(
                text("""INSERT INTO appointments (clinic_id, kind, provider_id, starts_at, ends_at, blocked_until,
                                                  status, source_key, calendar_sync, notes)
                        VALUES (:c, 'block', :p, :s, :e, :e, 'booked', :key, 'none', :reason)
                        ON CONFLICT (clinic_id, source_key) DO NOTHING RETURNING id"""),
                {"c": clinic.id, "p": provider_id, "s": start, "e": end, "key": key, "reason": reason},
            ).scalar_one_or_none()
    except DBAPIError as exc:
        if not _is_overlap(exc):
            raise
        clash = _overlap_line(clinic, provider_id, start, end, None)
        raise CommandError(f"{args.provider} is already busy then ({clash}); nothing was blocked") from None
    if block_id is None:
        print(f"{args.provider} is already blocked {args.start} to {args.end} (nothing changed)")
        return 0
    print(
        f"blocked {args.provider} {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} ({clinic.timezone}): block {block_id}"
    )
    return 0
