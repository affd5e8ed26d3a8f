"""``medspa appointments check-in|complete|no-show|late-cancel|unresolved``: the day of a visit at the front desk.

Each step is one transaction (``worker.visits.transitions``; the rules are ``domain/visits.py``) that also records
what follows: aftercare and a review request after a completed visit, a follow-up text after a no-show (the
clinic's automations, sent at their moment in the patient's allowed hours), the deposit kept or refunded and a
fee charged to a card the patient saved at booking, per the clinic's policy.  The fee's charge, a refund and the
calendar update are handed to the workers by actor name after the commit.  Repeating a step changes nothing.

Registered under the ``appointments`` group (``scripts/appointments.py`` calls :func:`register_visit_commands`).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from scripts.common import CommandError, add_clinic_argument

_UNRESOLVED_COLUMNS = ["id", "date", "start", "status", "service", "provider", "client", "phone"]


def register_visit_commands(sub: Any) -> None:
    check_in = sub.add_parser(
        "check-in",
        help="the patient arrived",
        description="Check a patient in for today's visit (queued reminders for it are withdrawn).",
    )
    _common(check_in)
    check_in.set_defaults(handler=visits_check_in)

    complete = sub.add_parser(
        "complete",
        help="the visit happened: record what was done and the amount charged",
        description="Mark a visit completed. The aftercare check-in and the review request then go out at their "
        "moment (the clinic's automations, in the patient's allowed hours); the amount charged feeds spend "
        "segments (without it, the service's list price counts).",
    )
    _common(complete)
    complete.add_argument("--amount", metavar="AMOUNT", help='what the patient was charged, e.g. "450" or "$1,200.50"')
    complete.add_argument("--notes", default="", metavar="TEXT", help="what was done (kept on the appointment)")
    complete.add_argument("--service", metavar="SLUG", help="the service actually given, when not the one booked")
    complete.set_defaults(handler=visits_complete)

    no_show = sub.add_parser(
        "no-show",
        help="the patient did not come (follow-up text; deposit and fee per policy)",
        description="Mark a visit a no-show (after its start time). The no-show follow-up text goes out at its "
        "moment; per the clinic's policy the deposit is kept or refunded, and a no-show fee is charged to the card "
        "the patient saved at booking (only when they agreed to it then).",
    )
    _common(no_show)
    no_show.set_defaults(handler=visits_no_show)

    late = sub.add_parser(
        "late-cancel",
        help="cancelled inside the cancellation window (deposit and fee per policy)",
        description="Record a cancellation inside the clinic's cancellation window (outside it, use "
        "`appointments cancel`): the slot is freed, reminders withdrawn, the calendar updated, the deposit kept or "
        "refunded and a late-cancellation fee charged to a saved card, per the clinic's policy.",
    )
    _common(late)
    late.add_argument("--reason", default="", metavar="TEXT", help="why (kept on the appointment)")
    late.set_defaults(handler=visits_late_cancel)

    unresolved = sub.add_parser(
        "unresolved",
        help="visits whose time is over with no outcome recorded",
        description="Visits of the last days still booked, confirmed or checked in after their end: record "
        "check-in/complete/no-show for each (the end-of-day job also lists them for staff).",
    )
    add_clinic_argument(unresolved)
    unresolved.add_argument("--json", action="store_true", help="print JSON")
    unresolved.set_defaults(handler=visits_unresolved)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("appointment_id", metavar="ID", type=int, help="appointment id (see: appointments list)")
    add_clinic_argument(parser)
    parser.add_argument("--as", dest="by", default="staff", metavar="NAME", help="who records it (default 'staff')")


def _run(args: argparse.Namespace, transition: Any, **kwargs: Any) -> int:
    from medspa.broker import message_for
    from scripts.appointments import clinic_facts
    from scripts.common import app_database, enqueue_by_name
    from worker.visits.transitions import FOLLOW_UP_ACTORS, VisitRefused, record_visit

    clinic = clinic_facts(args.clinic)
    messages: list[Any] = []

    def follow_up(kind: str, clinic_id: int, appointment_id: int) -> None:
        name, queue = FOLLOW_UP_ACTORS[kind]
        messages.append(message_for(name, queue, clinic_id, appointment_id))

    try:
        result = record_visit(
            app_database(),
            clinic.id,
            args.appointment_id,
            transition,
            datetime.now(UTC),
            follow_up,
            by=f"staff:{args.by}"[:64],
            **kwargs,
        )
    except VisitRefused as exc:
        raise CommandError(f"appointment {args.appointment_id}: {exc}") from None
    lines = list(result.notes)
    if messages:
        try:
            enqueue_by_name(messages)
        except Exception as exc:  # noqa: BLE001 - committed; the sweeps pick the work up
            lines.append(f"could not reach the queue ({type(exc).__name__}); the scheduled sweeps will pick it up")
    head = "unchanged" if not result.changed else result.status.replace("_", " ")
    print(f"appointment {result.appointment_id}: {head}")
    tz = ZoneInfo(clinic.timezone)
    for kind, when in sorted(result.due.items(), key=lambda kv: kv[1]):
        local = when.astimezone(tz).strftime("%a %b %-d %H:%M")
        lines.append(
            f"{kind.replace('_', ' ')} text due from {local} (clinic time; within the patient's allowed hours)"
        )
    if result.fee:
        lines.append("fee charge queued")
    if result.refund:
        lines.append("deposit refund queued")
    if result.calendar:
        lines.append("calendar update queued")
    for line in lines:
        print(f"  {line}")
    return 0


def visits_check_in(args: argparse.Namespace) -> int:
    from domain.visits import Transition

    return _run(args, Transition.CHECK_IN)


def visits_complete(args: argparse.Namespace) -> int:
    from domain.visit_import import parse_amount
    from domain.visits import Transition
    from worker.visits.transitions import CompletionDetails

    amount = None
    if args.amount is not None:
        try:
            amount = parse_amount(args.amount)
        except ValueError as exc:
            raise CommandError(f"--amount: {exc}") from None
    details = CompletionDetails(amount_charged_cents=amount, summary=args.notes, service_slug=args.service)
    return _run(args, Transition.COMPLETE, details=details)


def visits_no_show(args: argparse.Namespace) -> int:
    from domain.visits import Transition

    return _run(args, Transition.NO_SHOW)


def visits_late_cancel(args: argparse.Namespace) -> int:
    from domain.visits import Transition

    return _run(args, Transition.LATE_CANCEL, reason=args.reason)


def visits_unresolved(args: argparse.Namespace) -> int:
    from scripts.appointments import clinic_facts
    from scripts.common import app_database, print_json, print_table
    from worker.visits.end_of_day import unresolved_visits

    clinic = clinic_facts(args.clinic)
    with app_database().tenant_scope(clinic.id) as session:
        rows = unresolved_visits(session, datetime.now(UTC))
    if args.json:
        print_json(rows)
        return 0
    tz = ZoneInfo(clinic.timezone)
    print_table(
        [
            {
                **r,
                "id": r["appointment_id"],
                "date": r["starts_at"].astimezone(tz).strftime("%Y-%m-%d"),
                "start": r["starts_at"].astimezone(tz).strftime("%H:%M"),
                "client": r["client"] or "",
                "phone": r["phone"] or "",
                "service": r["service"] or "",
            }
            for r in rows
        ],
        _UNRESOLVED_COLUMNS,
    )
    return 0
