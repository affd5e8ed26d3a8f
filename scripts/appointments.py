"""``medspa appointments …``: the day's schedule, blocked time, and (``scripts/appointment_changes.py``)
bookings, cancellations and moves made on a patient's behalf.

Why these rules:
- Double booking is impossible by construction: the exclusion constraint on (provider, time range) decides; an
  overlap is reported as one line and the transaction rolls back, so nothing is half-written.
- Booking, cancelling and moving go through the one appointment service (``worker/appointments``) the agent's
  tools use: the same availability, screening and deposit rules.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.clinics import load_clinic
from domain.appointments import BLOCK
from domain.clinic import Clinic
from scripts.common import CommandError, add_clinic_argument

_COLUMNS = ["id", "date", "start", "end", "provider", "kind", "service", "client", "phone", "status"]


def clinic_facts(slug: str) -> Clinic:
    """The clinic called ``slug`` (``db.clinics.load_clinic``), or a one-line error."""
    from scripts.common import app_database, clinic_id_for

    clinic_id = clinic_id_for(slug)  # a one-line error for an unknown slug
    with app_database().tenant_scope(clinic_id) as session:
        clinic = load_clinic(session, clinic_id)
    if clinic is None:
        raise CommandError(f"no clinic with slug {slug!r} (see: medspa clinic list)")
    return clinic


def register(subparsers: Any) -> None:
    appts = subparsers.add_parser(
        "appointments",
        help="list, book, cancel, move and export appointments; block provider time",
        description="The schedule: list a day, book, cancel or move an appointment on a patient's behalf (they "
        "are texted once), block time for a provider, export a day as CSV. Times are clinic-local.",
    )
    sub = appts.add_subparsers(dest="appointments_command", metavar="SUBCOMMAND", required=True)
    # Changes on a patient's behalf (book, cancel, move): their own module, over the appointment service.
    from scripts.appointment_changes import appointments_cancel, appointments_move, register_book

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

    register_book(sub)

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


def label(moment: datetime, tz: ZoneInfo) -> str:
    from domain.prompt import local_label

    return local_label(moment, str(tz))


def overlap_line(clinic: Clinic, provider_id: int, start: datetime, end: datetime, ignore: int | None) -> str:
    """What a refused time overlaps, for the one-line error ("appointment 12 on 2027-04-07 14:00-15:15")."""
    from scripts.common import app_database
    from worker.appointments import store

    with app_database().tenant_scope(clinic.id) as session:
        row = store.overlap(session, provider_id, start, end, ignore)
    if row is None:
        return "another appointment or block"
    return (
        f"{'block' if row.kind == BLOCK else 'appointment'} {row.id} "
        f"on {row.starts_at.astimezone(clinic.tz):%Y-%m-%d %H:%M}-{row.blocked_until.astimezone(clinic.tz):%H:%M}"
    )


# ---------------------------------------------------------------------------------------------- list / export
def _day_rows(clinic: Clinic, day: date, provider: str | None) -> list[dict[str, Any]]:
    from scripts.common import app_database

    start = datetime.combine(day, datetime.min.time(), clinic.tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), clinic.tz)
    with app_database().tenant_scope(clinic.id) as session:
        provider_id = provider_id_for(session, clinic, provider) if provider else None
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


def provider_id_for(session: Session, clinic: Clinic, slug: str) -> int:
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
    from worker.appointments.service import AppointmentService, SlotTaken

    database = app_database()
    with database.tenant_scope(clinic.id) as session:
        provider_id = provider_id_for(session, clinic, args.provider)
    key = f"block:{args.provider}:{start.astimezone(UTC):%Y%m%dT%H%M}:{end.astimezone(UTC):%Y%m%dT%H%M}"
    try:
        block_id = AppointmentService(database, clinic, now=datetime.now(UTC)).block(
            provider_id, start, end, source_key=key, reason=reason
        )
    except SlotTaken:
        clash = overlap_line(clinic, provider_id, start, end, None)
        raise CommandError(f"{args.provider} is already busy then ({clash}); nothing was blocked") from None
    if block_id is None:
        print(f"{args.provider} is already blocked {args.start} to {args.end} (nothing changed)")
        return 0
    print(
        f"blocked {args.provider} {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} ({clinic.timezone}): block {block_id}"
    )
    return 0
