"""``medspa waitlist …``: who is waiting for which treatment, and taking someone off the list.

Patients join through the agent (the ``join_waitlist`` tool) when no offered time suits them; when a fitting slot
opens (a cancellation, a move, a block removed) the waitlist job texts them in order, and the first YES books it
(``worker/waitlist``).  Staff see the list here and remove an entry the patient no longer wants.
"""

from __future__ import annotations

import argparse
from typing import Any

from scripts.common import CommandError, add_clinic_argument

_COLUMNS = ["id", "joined", "client", "phone", "service", "provider", "windows", "dates", "offers", "status"]


def register(subparsers: Any) -> None:
    waitlist = subparsers.add_parser(
        "waitlist",
        help="list the waitlist and remove entries",
        description="The clinic's waitlist: who waits for which treatment (in offer order), and removing an entry.",
    )
    sub = waitlist.add_subparsers(dest="waitlist_command", metavar="SUBCOMMAND", required=True)

    listing = sub.add_parser(
        "list",
        help="active entries, earliest first",
        description="List waitlist entries in the order they are offered.",
    )
    add_clinic_argument(listing)
    listing.add_argument("--service", metavar="SLUG", help="only this treatment")
    listing.add_argument("--all", action="store_true", help="also booked and removed entries")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=waitlist_list)

    remove = sub.add_parser(
        "remove", help="take an entry off the list", description="Remove an active waitlist entry (no text is sent)."
    )
    remove.add_argument("entry_id", metavar="ID", type=int, help="entry id (see: waitlist list)")
    add_clinic_argument(remove)
    remove.add_argument("--reason", default="removed by staff", metavar="TEXT", help="kept on the entry")
    remove.set_defaults(handler=waitlist_remove)


def waitlist_list(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for, print_json, print_table
    from worker.waitlist import store

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        rows = store.list_entries(session, clinic_id, include_inactive=args.all, service_slug=args.service)
    if args.json:
        print_json(rows)
        return 0
    table = [
        {
            "id": r["id"],
            "joined": r["created_at"].strftime("%Y-%m-%d %H:%M"),
            "client": r["client_name"] or "",
            "phone": r["phone"] or "",
            "service": r["service"],
            "provider": r["provider"] or "any",
            "windows": store.describe_windows(r["windows"]),
            "dates": f"{r['date_from'] or ''}..{r['date_to'] or ''}" if r["date_from"] or r["date_to"] else "",
            "offers": r["offers"],
            "status": r["status"],
        }
        for r in rows
    ]
    print_table(table, _COLUMNS)
    return 0


def waitlist_remove(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for
    from worker.waitlist import store

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        removed = store.remove(session, clinic_id, args.entry_id, args.reason)
    if not removed:
        raise CommandError(f"no active waitlist entry {args.entry_id} in clinic {args.clinic!r}")
    print(f"removed waitlist entry {args.entry_id}")
    return 0
