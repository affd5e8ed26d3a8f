"""``medspa clinic …``: onboard and change clinics from declarative YAML files.

``apply`` shows the diff, asks (unless ``--yes``), then writes everything in
one owner-role transaction; ``export`` writes the current state back out as a
file that ``apply`` accepts unchanged; ``list`` shows the tenant directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from scripts.common import CommandError

EXPORT_HEADER = """\
# Clinic configuration for `medspa clinic apply` (exported by `medspa clinic export`).
# Money is in cents; hours are HH:MM-HH:MM in the clinic's time zone; days left out are closed.
"""


def register(subparsers: Any) -> None:
    clinic = subparsers.add_parser(
        "clinic",
        help="onboard and configure clinics from YAML files",
        description="Onboard a clinic from one declarative YAML file, change it, export it, list clinics.",
    )
    sub = clinic.add_subparsers(dest="clinic_command", metavar="SUBCOMMAND", required=True)

    apply = sub.add_parser(
        "apply",
        help="create or update a clinic from a YAML file (shows the diff first)",
        description="Validate FILE, show what would change, then apply it in one transaction "
        "(all or nothing). Re-applying an unchanged file prints 'no changes'.",
    )
    apply.add_argument("file", metavar="FILE", type=Path, help="clinic YAML file (see clinics/*.yaml)")
    apply.add_argument("--yes", "-y", action="store_true", help="apply without asking for confirmation")
    apply.add_argument("--dry-run", action="store_true", help="only validate and show the diff; change nothing")
    apply.set_defaults(handler=clinic_apply)

    export = sub.add_parser(
        "export",
        help="write a clinic's current configuration as YAML",
        description="Write the clinic's current configuration as a YAML file that `clinic apply` accepts.",
    )
    export.add_argument("slug", metavar="SLUG", help="clinic slug (see: medspa clinic list)")
    export.add_argument(
        "-o", "--output", metavar="FILE", type=Path, default=None, help="write to FILE instead of standard output"
    )
    export.set_defaults(handler=clinic_export)

    listing = sub.add_parser(
        "list",
        help="list clinics with their SMS numbers",
        description="List every clinic: slug, name, time zone, SMS numbers, menu size.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=clinic_list)


# ---------------------------------------------------------------------------------------------- apply
def clinic_apply(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import IntegrityError

    from scripts.common import owner_database
    from worker.clinic_config import (
        ClinicConfigError,
        desired_state,
        diff_states,
        load_clinic_file,
        lock_slug,
        number_conflicts,
        read_state,
        write_state,
    )

    try:
        desired = desired_state(load_clinic_file(args.file))
    except ClinicConfigError as exc:
        raise CommandError(str(exc)) from None
    database = owner_database()
    with database.directory_scope() as session:
        current = read_state(session, desired.slug)
        conflicts = number_conflicts(session, desired)
        changes = diff_states(current, desired)
    if conflicts:
        raise CommandError(f"{conflicts[0]}; nothing was changed")
    if not changes:
        print(f"{desired.slug}: no changes")
        return 0
    print(f"{desired.slug}: {len(changes)} change(s)")
    for change in changes:
        print("  " + change.line())
    if args.dry_run:
        print("dry run: nothing was changed")
        return 0
    if not args.yes and not _confirm(f"Apply {len(changes)} change(s) to {desired.slug}? [y/N] "):
        print("not applied: nothing was changed")
        return 1
    try:
        with database.directory_scope() as session:
            lock_slug(session, desired.slug)
            latest = read_state(session, desired.slug)
            if diff_states(latest, desired) != changes:
                raise CommandError(
                    f"clinic {desired.slug!r} changed while the diff was shown; nothing was changed (run apply again)"
                )
            clinic_id = write_state(session, latest, desired)
    except IntegrityError as exc:
        raise CommandError(f"the database refused the change ({_constraint(exc)}); nothing was changed") from None
    verb = "created" if current is None else "updated"
    print(f"{desired.slug}: {verb} (clinic id {clinic_id})")
    return 0


def _constraint(exc: Exception) -> str:
    diag = getattr(getattr(exc, "orig", None), "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name == "uq_clinic_phone_numbers_e164":
        return "an SMS number belongs to another clinic"
    if name == "uq_clinics_public_key":
        return "public_key is used by another clinic"
    return f"constraint {name}" if name else type(getattr(exc, "orig", exc)).__name__


def _confirm(prompt: str) -> bool:
    print(prompt, end="", flush=True)
    answer = sys.stdin.readline()
    if not answer:
        print()
    return answer.strip().lower() in ("y", "yes")


# ---------------------------------------------------------------------------------------------- export and list
def clinic_export(args: argparse.Namespace) -> int:
    from scripts.common import owner_database
    from worker.clinic_config import dump_yaml, read_state, state_to_file

    with owner_database().directory_scope() as session:
        state = read_state(session, args.slug)
    if state is None:
        raise CommandError(f"no clinic with slug {args.slug!r} (see: medspa clinic list)")
    document = dump_yaml(state_to_file(state), EXPORT_HEADER)
    if args.output is None:
        sys.stdout.write(document)
        return 0
    try:
        args.output.write_text(document, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"wrote {args.output}")
    return 0


def clinic_list(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    from scripts.common import app_database, print_json, print_table

    database = app_database()
    with database.directory_scope() as session:
        clinics = [
            dict(r)
            for r in session.execute(
                text(
                    """SELECT c.id, c.slug, c.name, c.timezone,
                      COALESCE(string_agg(n.e164, ' ' ORDER BY n.id), '') AS sms_numbers
               FROM clinics c LEFT JOIN clinic_phone_numbers n ON n.clinic_id = c.id
               GROUP BY c.id ORDER BY c.id"""
                )
            ).mappings()
        ]
    for clinic in clinics:
        with database.tenant_scope(clinic["id"]) as session:
            counts = session.execute(
                text(
                    """SELECT (SELECT count(*) FROM providers WHERE active) AS providers,
                          (SELECT count(*) FROM services WHERE active) AS services"""
                )
            ).one()
        clinic["providers"], clinic["services"] = int(counts[0]), int(counts[1])
    if args.json:
        for clinic in clinics:
            clinic["sms_numbers"] = clinic["sms_numbers"].split()
        print_json(clinics)
    else:
        print_table(clinics, ["id", "slug", "name", "timezone", "sms_numbers", "providers", "services"])
    return 0
