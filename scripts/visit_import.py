"""``medspa appointments import-visits FILE.csv``: past visits from a booking system's export become the
clinic's visit history, so campaign segments on last visit, services had and spend reach imported clients.

The rules are ``domain.visit_import``; this module reads the file, matches clients (phone, then email),
services and providers against the clinic, and writes the appointments.  Imported visits carry
``imported_at`` (the automations that follow a live visit never fire for them), ``calendar_sync = 'none'`` (no
calendar events for history) and a ``source_key`` per visit, so re-importing changes nothing and a corrected
export updates only what it imported before.  A dry run by default; ``--apply`` writes one transaction per
batch.  PHI goes to the terminal that asked; nothing is logged.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.client_import import match_existing
from domain.import_values import ImportFileError, Rejected
from domain.visit_import import (
    DATE_FIELDS,
    VISIT_FIELDS,
    Named,
    Resolver,
    VisitRow,
    parse_name_overrides,
    parse_status_overrides,
    parse_visit_row,
    visit_times,
)
from scripts.client_import import existing_clients
from scripts.common import CommandError, add_clinic_argument
from scripts.csv_import import (
    Outcome,
    Progress,
    add_reading_options,
    committed_batches,
    describe_file,
    open_import,
    print_counts,
    print_rejected_rows,
    report_counts,
    write_rejects,
)


def register_import_visits(sub: Any) -> None:
    visits = sub.add_parser(
        "import-visits",
        help="import past visits from a booking system's CSV (dry run unless --apply)",
        description="Import past visits (completed, no-show, cancelled) from a booking system's CSV export: "
        "matched to clients by phone then email, to services and providers by name; the amount charged feeds "
        "spend segments. Imported visits never trigger aftercare or review requests. A dry run unless --apply.",
    )
    add_reading_options(visits, VISIT_FIELDS)
    add_clinic_argument(visits)
    visits.add_argument(
        "--map-service",
        action="append",
        default=[],
        metavar='"NAME=SLUG"',
        help="read this service name as the clinic's service SLUG ('none': keep the visit without a service)",
    )
    visits.add_argument(
        "--map-provider", action="append", default=[], metavar='"NAME=SLUG"', help="read this name as provider SLUG"
    )
    visits.add_argument(
        "--map-status",
        action="append",
        default=[],
        metavar='"STATUS=completed|no_show|cancelled"',
        help="read this status as one of completed, no_show, cancelled",
    )
    visits.add_argument("--default-provider", metavar="SLUG", help="provider for rows that name none")
    visits.set_defaults(handler=import_visits)


def _catalogue(session: Session, table: str) -> list[Named]:
    if table == "services":
        rows = session.execute(
            text("SELECT id, slug, name, category, synonyms, duration_min FROM services ORDER BY active DESC, id")
        ).mappings()
        return [
            Named(int(r["id"]), r["slug"], r["name"], r["category"], tuple(r["synonyms"] or ()), r["duration_min"])
            for r in rows
        ]
    rows = session.execute(text("SELECT id, slug, name FROM providers ORDER BY active DESC, id")).mappings()
    return [Named(int(r["id"]), r["slug"], r["name"]) for r in rows]


_EXISTING = """SELECT source_key, id, client_id, provider_id, service_id, starts_at, ends_at, status, amount_charged_cents
               FROM appointments WHERE source_key = ANY(CAST(:keys AS text[])) AND imported_at IS NOT NULL"""
_INSERT = """
    INSERT INTO appointments (clinic_id, kind, client_id, provider_id, service_id, starts_at, ends_at, blocked_until,
                              status, source_key, calendar_sync, imported_at, amount_charged_cents, cancel_reason, notes)
    VALUES (:clinic_id, 'appointment', :client_id, :provider_id, :service_id, :starts_at, :ends_at, :ends_at,
            :status, :key, 'none', now(), :amount, :cancel_reason, :notes)
    ON CONFLICT (clinic_id, source_key) DO NOTHING RETURNING id"""
_UPDATE = """
    UPDATE appointments SET client_id = :client_id, provider_id = :provider_id, service_id = :service_id,
                            starts_at = :starts_at, ends_at = :ends_at, blocked_until = :ends_at, status = :status,
                            amount_charged_cents = :amount, cancel_reason = :cancel_reason, updated_at = now()
    WHERE id = :id AND imported_at IS NOT NULL"""


def import_visits(args: argparse.Namespace) -> int:
    from scripts.common import app_database

    opened = open_import(args, VISIT_FIELDS)
    clinic, region, source = opened.clinic, opened.region, opened.source
    database = app_database()
    with database.tenant_scope(clinic.id) as session:
        services_list, providers_list = _catalogue(session, "services"), _catalogue(session, "providers")
    try:
        statuses = parse_status_overrides(args.map_status)
        services = Resolver(services_list, parse_name_overrides(args.map_service, "--map-service"), fuzzy=True,
                            kind="service")  # fmt: skip
        provider_overrides = parse_name_overrides(args.map_provider, "--map-provider")
        if args.default_provider:
            provider_overrides[""] = args.default_provider
        providers = Resolver(providers_list, provider_overrides, fuzzy=False, kind="provider")
    except ImportFileError as exc:
        raise CommandError(str(exc)) from None
    day_first = describe_file(
        args,
        opened,
        DATE_FIELDS,
        [
            ({"phone", "email"}, "no phone or email column to find clients by; name one with --map 'COLUMN=phone'"),
            ({"start", "date"}, "no date column; name one with --map 'COLUMN=date'"),
        ],
    )
    mapping = opened.mapping
    now = datetime.now(clinic.tz)
    outcome = Outcome()
    rows: list[tuple[VisitRow, Named | None, Named]] = []
    seen: dict[str, int] = {}
    matched: Counter[tuple[str, str, str]] = Counter()  # (file's service, clinic's slug, how)
    for line, cells in source.rows:
        row = parse_visit_row(cells, mapping, line, region=region, tz=clinic.timezone, now=now, day_first=day_first,
                              status_overrides=statuses)  # fmt: skip
        if isinstance(row, Rejected):
            outcome.reject(line, row.reason, row.text)
            continue
        if row.key in seen:
            outcome.duplicate(line, seen[row.key])
            continue
        seen[row.key] = line
        try:
            service, how = services.resolve(row.service)
        except LookupError as exc:
            outcome.reject(line, "unknown service", f"{exc}: {row.service!r} (--map-service)")
            continue
        try:
            provider, _ = providers.resolve(row.provider)
        except LookupError as exc:
            outcome.reject(line, "unknown provider", f"{exc}: {row.provider!r} (--map-provider / --default-provider)")
            continue
        assert provider is not None
        matched[(row.service or "(blank)", service.slug if service else "(none)", how)] += 1
        rows.append((row, service, provider))

    progress = Progress.for_args(len(rows), "importing visits" if args.apply else "checking visits", args)
    clients_seeded: set[int] = set()
    with committed_batches(progress, outcome, "visit"):
        _import_batches(args, clinic, rows, outcome, progress, clients_seeded)
    return _report(args, source, outcome, matched, len(clients_seeded))


def _import_batches(
    args: argparse.Namespace,
    clinic: Any,
    rows: list[tuple[VisitRow, Named | None, Named]],
    outcome: Outcome,
    progress: Progress,
    clients_seeded: set[int],
) -> None:
    """Match each visit to its client and write it (with --apply), one transaction per batch."""
    from scripts.common import app_database

    database = app_database()
    for start in range(0, len(rows), args.batch_size):
        batch = rows[start : start + args.batch_size]
        with database.tenant_scope(clinic.id) as session:
            by_phone, by_email = existing_clients(session, [r for r, _, _ in batch])
            existing = {
                r["source_key"]: r
                for r in session.execute(text(_EXISTING), {"keys": [r.key for r, _, _ in batch]}).mappings()
            }
            for row, service, provider in batch:
                # The same rule as the client list: an email decides only where one side has no number.
                match = match_existing(row, by_phone, by_email)
                if isinstance(match, Rejected):
                    outcome.reject(row.row, match.reason, match.text)
                    continue
                if match is None:
                    outcome.reject(
                        row.row, "no matching client", "import the client list first (medspa clients import)"
                    )
                    continue
                client_id = match.id
                ends_at, _ = visit_times(row, service)
                values = {
                    "client_id": client_id,
                    "provider_id": provider.id,
                    "service_id": service.id if service else None,
                    "starts_at": row.starts_at,
                    "ends_at": ends_at,
                    "status": row.status,
                    "amount": row.amount_cents,
                    "cancel_reason": "cancelled (imported)" if row.status == "cancelled" else "",
                }
                old = existing.get(row.key)
                if old is None:
                    action = "new"
                elif any(old[k] != values[k] for k in ("client_id", "provider_id", "service_id", "status")) or (
                    old["starts_at"] != row.starts_at
                    or old["ends_at"] != ends_at
                    or old["amount_charged_cents"] != row.amount_cents
                ):
                    action = "update"
                else:
                    action = "unchanged"
                if args.apply and action == "new":
                    session.execute(
                        text(_INSERT), {**values, "clinic_id": clinic.id, "key": row.key, "notes": row.notes}
                    )
                elif args.apply and action == "update":
                    session.execute(text(_UPDATE), {**values, "id": old["id"]})  # type: ignore[index]
                outcome.actions[action] += 1
                for warning in row.warnings:
                    outcome.warnings[warning.split(":")[0]] += 1
                if row.status == "completed":
                    clients_seeded.add(client_id)
                if action != "unchanged" and len(outcome.sample) < 8:
                    outcome.sample.append(
                        f"row {row.row}: {action:<6} {row.starts_at.astimezone(clinic.tz):%Y-%m-%d %H:%M} {row.status:<9} "
                        f"{service.name if service else '(no service)'} with {provider.name}, client {client_id}"
                        + (f", ${row.amount_cents / 100:,.2f}" if row.amount_cents is not None else "")
                    )
        progress.advance(len(batch))


def _report(
    args: argparse.Namespace, source: Any, outcome: Outcome, matched: Counter[tuple[str, str, str]], clients: int
) -> int:
    rejects = write_rejects(args.rejects, source, outcome) if args.rejects else 0
    counts = {
        **report_counts(source, outcome, args),
        "clients_with_completed_visits": clients,
        "services": [{"file": f, "service": s, "how": h, "rows": n} for (f, s, h), n in sorted(matched.items())],
    }
    if args.json:
        print(json.dumps(counts, indent=2, sort_keys=True))
        return 0
    print("Services (file -> clinic):")
    for (name, slug, how), count in sorted(matched.items()):
        print(f"  {name} -> {slug}  ({how}, {count:,} row(s))")
    print("Applied:" if args.apply else "Dry run (nothing written; add --apply to import):")
    for label, key in (("new visits", "new"), ("updated", "updated"), ("unchanged (imported before)", "unchanged")):
        print(f"  {label}: {counts[key]:,}")
    print(f"  duplicates in the file: {counts['duplicates']:,}")
    print(f"  clients with completed visits in the file: {clients:,}")
    print_counts("rejected", outcome.rejected)
    print_counts("warnings", outcome.warnings)
    for sample in outcome.sample:
        print(f"  {sample}")
    print_rejected_rows(outcome, args.rejects, rejects)
    return 0
