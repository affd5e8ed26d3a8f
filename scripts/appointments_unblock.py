"""``medspa appointments unblock``: give a provider's blocked time back.

The block is deleted (so the same time can be blocked again later); the database trigger of the waitlist
(migration 0013) records the freed time in the same transaction, and the waitlist job is woken at once, so a
patient waiting for that time is texted without waiting for the next scheduled run.
"""

from __future__ import annotations

import argparse
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from scripts.common import CommandError, add_clinic_argument

_DELETE_BLOCK = """
DELETE FROM appointments WHERE id = :id AND clinic_id = :c AND kind = 'block'
RETURNING starts_at, blocked_until, (SELECT slug FROM providers p WHERE p.id = appointments.provider_id) AS provider,
          (SELECT timezone FROM clinics k WHERE k.id = appointments.clinic_id) AS timezone
"""


def register_unblock(sub: Any) -> None:
    unblock = sub.add_parser(
        "unblock",
        help="give blocked time back (waitlisted patients are offered it)",
        description="Remove a block made with `appointments block`: the time can be booked again, and patients on "
        "the waitlist who fit it are offered it.",
    )
    unblock.add_argument("block_id", metavar="ID", type=int, help="block id (see: appointments list)")
    add_clinic_argument(unblock)
    unblock.set_defaults(handler=appointments_unblock)


def appointments_unblock(args: argparse.Namespace) -> int:
    from medspa.broker import SCHEDULED_QUEUE, message_for
    from scripts.common import app_database, clinic_id_for, enqueue_by_name

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        row = session.execute(text(_DELETE_BLOCK), {"id": args.block_id, "c": clinic_id}).one_or_none()
    if row is None:
        raise CommandError(f"no block {args.block_id} in clinic {args.clinic!r} (see: appointments list)")
    enqueue_by_name([message_for("tick_waitlist", SCHEDULED_QUEUE)])
    tz = ZoneInfo(row.timezone)
    start, end = row.starts_at.astimezone(tz), row.blocked_until.astimezone(tz)
    print(f"unblocked {row.provider} {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} ({row.timezone}); waitlist woken")
    return 0
