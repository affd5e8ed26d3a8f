"""``medspa clients import FILE.csv`` and ``medspa clients export``: a clinic's client list in and out.

The rules (columns, numbers, who is who, what consent an import may record) are ``domain.client_import``;
this module reads the file, asks the database who already exists, and writes — clients here, consent only
through the ledger's one writer (``db.consent.record_consent``).

- A dry run by default: the mapping, the counts (new, updated, unchanged, duplicates, rejected by reason,
  consent recorded or not and why) and a sample; ``--apply`` writes, one transaction per batch, so an
  interrupted import keeps its finished batches and a re-run continues (what is done is unchanged).
- Nobody becomes campaign-eligible without provenance: ``marketing_consent`` moves only through an imported
  grant that carries its source, date and wording (``ConsentRecord`` refuses one without).
- PHI goes to the terminal that asked (and the rejects file it named); nothing is logged.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import sql_list
from domain.appointments import VISITED_STATUSES
from domain.client_import import (
    CLIENT_FIELDS,
    DATE_FIELDS,
    ClientPlan,
    ClientRow,
    ExistingClient,
    RowKeys,
    dedupe,
    match_existing,
    parse_client_row,
    plan_client,
    shares_email,
)
from domain.import_values import Rejected
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
    safe_cell,
    write_rejects,
)

_EXISTING_SQL = """
    SELECT c.id, c.phone_e164, c.name, c.email, c.birth_date, c.tags, c.notes, c.consent_state, c.marketing_consent,
           (SELECT max(coalesce(e.given_at, e.created_at)) FROM consent_events e
             WHERE e.client_id = c.id AND e.kind = 'opt_in') AS last_opt_in_at,
           (SELECT max(coalesce(e.given_at, e.created_at)) FROM consent_events e
             WHERE e.client_id = c.id AND e.kind = 'opt_out') AS last_opt_out_at
    FROM clients c
    WHERE c.phone_e164 = ANY(CAST(:phones AS text[])) OR lower(c.email) = ANY(CAST(:emails AS text[]))
"""
# Columns an import may set (never interpolated from anywhere else).
_WRITABLE = ("name", "phone_e164", "email", "birth_date", "tags", "notes", "sms_status")


def register_import_export(sub: Any) -> None:
    imp = sub.add_parser(
        "import",
        help="import a client list from CSV (dry run unless --apply)",
        description="Import a client list (any booking system's or spreadsheet's CSV export). Columns are mapped "
        "by header; phone numbers normalised to E.164 (invalid rows reported, never guessed); clients deduplicated "
        "by phone, then email; consent recorded only with its provenance (source, date and wording columns) — "
        "without it a client gets appointment texts at most, never marketing. A dry run unless --apply.",
    )
    add_reading_options(imp, CLIENT_FIELDS)
    add_clinic_argument(imp)
    imp.add_argument("--tag", action="append", default=[], metavar="TAG", help="add this tag to every imported client")
    imp.set_defaults(handler=clients_import)

    exp = sub.add_parser(
        "export",
        help="write the client list as CSV (the import's columns, consent with its provenance)",
        description="Write every client of the clinic as CSV, in the columns the import reads, with consent and "
        "where, when and in what words it was given, last visit, visits and spend.",
    )
    exp.add_argument("out", metavar="FILE", nargs="?", default="-", help="CSV file to write (default '-': stdout)")
    add_clinic_argument(exp)
    exp.set_defaults(handler=clients_export)


# ---------------------------------------------------------------------------------------------- import
def existing_clients(
    session: Session, rows: Sequence[RowKeys], *, lock: bool = False
) -> tuple[dict[str, ExistingClient], dict[str, list[ExistingClient]]]:
    """The clients the rows' numbers and emails find, by number and by (lower-case) email — what
    ``domain.client_import.match_existing`` matches a row against.  ``lock``: FOR UPDATE (the import writes them)."""
    existing = _existing(session, rows, lock)
    by_phone = {c.phone: c for c in existing if c.phone}
    by_email: dict[str, list[ExistingClient]] = {}
    for client in existing:
        if client.email:
            by_email.setdefault(client.email, []).append(client)
    return by_phone, by_email


def _existing(session: Session, rows: Sequence[RowKeys], lock: bool) -> list[ExistingClient]:
    phones = sorted({r.phone for r in rows if r.phone})
    emails = sorted({r.email for r in rows if r.email})
    found = session.execute(
        text(_EXISTING_SQL + (" FOR UPDATE OF c" if lock else "")), {"phones": phones, "emails": emails}
    ).mappings()
    return [
        ExistingClient(
            id=int(r["id"]),
            phone=r["phone_e164"],
            name=r["name"],
            email=(r["email"] or "").lower() or None,
            birth_date=r["birth_date"],
            tags=tuple(r["tags"] or ()),
            notes=r["notes"] or "",
            consent_state=r["consent_state"],
            marketing_consent=r["marketing_consent"],
            last_opt_in_at=r["last_opt_in_at"],
            last_opt_out_at=r["last_opt_out_at"],
        )
        for r in found
    ]


def _write(session: Session, clinic_id: int, plan: ClientPlan) -> int | None:
    """Apply one plan in the caller's transaction; the client's id, or None when another writer created the
    same number meanwhile (the next run sees it)."""
    from db.consent import record_consent

    columns = [c for c in _WRITABLE if c in plan.changes]
    params = {c: plan.changes[c] for c in columns}
    if plan.action == "new":
        names = ", ".join(columns)
        values = ", ".join(f"CAST(:{c} AS text[])" if c == "tags" else f":{c}" for c in columns)
        client_id = session.execute(
            text(f"""INSERT INTO clients (clinic_id, {names}) VALUES (:clinic_id, {values})
                     ON CONFLICT (clinic_id, phone_e164) DO NOTHING RETURNING id"""),
            {"clinic_id": clinic_id, **params},
        ).scalar_one_or_none()
        if client_id is None:
            return None
    else:
        assert plan.client_id is not None
        client_id = plan.client_id
        if columns:
            sets = ", ".join(f"{c} = CAST(:{c} AS text[])" if c == "tags" else f"{c} = :{c}" for c in columns)
            session.execute(text(f"UPDATE clients SET {sets} WHERE id = :id"), {"id": client_id, **params})
    phone = plan.changes.get("phone_e164") or plan.row.phone
    for record in plan.consent:
        record_consent(session, clinic_id, int(client_id), str(phone) if phone else None, record)
    return int(client_id)


def _consent_word(plan: ClientPlan) -> str:
    granted = [f"{r.kind.value.replace('_', '-')} {r.scope.value}" for r in plan.consent]
    return ", ".join(granted) or "no consent recorded"


def _sample_line(plan: ClientPlan) -> str:
    row = plan.row
    who = " ".join(x for x in (row.name or "(no name)", row.phone or "", row.email or "") if x)
    if plan.action == "new":
        what = "new client"
    else:
        what = f"client {plan.client_id}" + (f" (adds {', '.join(plan.changes)})" if plan.changes else "")
    return f"row {row.row}: {what}: {who}; consent: {_consent_word(plan)}"


def _tally(outcome: Outcome, plan: ClientPlan) -> None:
    outcome.actions[plan.action] += 1
    if plan.row.not_mobile and plan.action == "new":
        outcome.warnings[f"imported as not mobile ({plan.row.phone_kind}): no texts"] += 1
    for warning in plan.warnings:
        outcome.warnings[warning] += 1
    for record in plan.consent:
        outcome.notes[f"recorded: {record.kind.value.replace('_', '-')} ({record.scope.value})"] += 1
    for note in plan.consent_notes:
        outcome.notes["not recorded: " + note.split(" (")[0]] += 1
    if plan.action in ("new", "update") and len(outcome.sample) < 8:
        outcome.sample.append(_sample_line(plan))


def clients_import(args: argparse.Namespace) -> int:
    from scripts.common import app_database

    opened = open_import(args, CLIENT_FIELDS)
    clinic, region, source, mapping = opened.clinic, opened.region, opened.source, opened.mapping
    day_first = describe_file(
        args,
        opened,
        DATE_FIELDS,
        [({"phone", "email"}, "no phone or email column found; name one with --map 'COLUMN=phone'")],
    )
    now = datetime.now(clinic.tz)
    outcome = Outcome()
    parsed: list[ClientRow] = []
    for line, cells in source.rows:
        result = parse_client_row(
            cells, mapping, line, region=region, tz=clinic.timezone, now=now, day_first=day_first, extra_tags=args.tag
        )
        if isinstance(result, Rejected):
            outcome.reject(line, result.reason, result.text)
        else:
            parsed.append(result)
    unique, duplicates = dedupe(parsed)
    for duplicate in duplicates:
        outcome.duplicate(duplicate.row, duplicate.of_row)

    progress = Progress.for_args(len(unique), "importing" if args.apply else "checking", args)
    touched: dict[int, int] = {}  # client id -> the row that matched it (two rows, one client)
    database = app_database()
    with committed_batches(progress, outcome, "client"):
        for start in range(0, len(unique), args.batch_size):
            batch = unique[start : start + args.batch_size]
            with database.tenant_scope(clinic.id) as session:
                by_phone, by_email = existing_clients(session, batch, lock=args.apply)
                for row in batch:
                    match = match_existing(row, by_phone, by_email)
                    if isinstance(match, Rejected):
                        outcome.reject(row.row, match.reason, match.text)
                        continue
                    if match is not None and match.id in touched:
                        outcome.duplicate(row.row, touched[match.id])
                        continue
                    plan = plan_client(row, match, shared_email_with=shares_email(row, by_email) if not match else ())
                    if args.apply and plan.action != "unchanged":
                        client_id = _write(session, clinic.id, plan)
                        if client_id is None:
                            outcome.reject(row.row, "created meanwhile", "another writer added this number; run again")
                            continue
                        touched[client_id] = row.row
                    elif match is not None:
                        touched[match.id] = row.row
                    _tally(outcome, plan)
            progress.advance(len(batch))
    return _report(args, source, outcome)


def _report(args: argparse.Namespace, source: Any, outcome: Outcome) -> int:
    rejects = write_rejects(args.rejects, source, outcome) if args.rejects else 0
    counts = {**report_counts(source, outcome, args), "consent": dict(outcome.notes)}
    if args.json:
        print(json.dumps(counts, indent=2, sort_keys=True))
        return 0
    print("Applied:" if args.apply else "Dry run (nothing written; add --apply to import):")
    for label, key in (("new clients", "new"), ("updated (details added)", "updated"), ("unchanged", "unchanged")):
        print(f"  {label}: {counts[key]:,}")
    print(f"  duplicates in the file: {counts['duplicates']:,} (merged into their first row)")
    print_counts("rejected", outcome.rejected)
    print_counts("consent", outcome.notes, total=False)
    print_counts("warnings", outcome.warnings)
    if outcome.sample:
        print("Sample:")
        for sample in outcome.sample:
            print(f"  {sample}")
    print_rejected_rows(outcome, args.rejects, rejects)
    return 0


# ---------------------------------------------------------------------------------------------- export
EXPORT_COLUMNS = [
    "Client ID", "Name", "Mobile", "Email", "Date of Birth", "Tags", "Notes",
    "SMS Consent", "Consent Source", "Consent Date", "Consent Wording",
    "Marketing Consent", "Marketing Consent Source", "Marketing Consent Date", "Marketing Consent Wording",
    "SMS Status", "Last Visit", "Visits", "Spend",
]  # fmt: skip
_EXPORT_SQL = f"""
    SELECT c.id, c.name, c.phone_e164, c.email, c.birth_date, array_to_string(c.tags, ', ') AS tags, c.notes,
           c.consent_state, c.marketing_consent, c.sms_status,
           t.via AS t_via, t.at AS t_at, t.wording AS t_wording, m.via AS m_via, m.at AS m_at, m.wording AS m_wording,
           v.last_visit, v.visits, v.spend
    FROM clients c
    LEFT JOIN LATERAL (SELECT coalesce(nullif(e.given_via, ''), e.source) AS via,
                              coalesce(e.given_at, e.created_at) AS at, e.wording
                       FROM consent_events e WHERE e.client_id = c.id AND e.kind = 'opt_in' AND e.scope = 'transactional'
                       ORDER BY e.id DESC LIMIT 1) t ON true
    LEFT JOIN LATERAL (SELECT coalesce(nullif(e.given_via, ''), e.source) AS via,
                              coalesce(e.given_at, e.created_at) AS at, e.wording
                       FROM consent_events e WHERE e.client_id = c.id AND e.kind = 'opt_in' AND e.scope = 'marketing'
                       ORDER BY e.id DESC LIMIT 1) m ON true
    LEFT JOIN LATERAL (SELECT max(a.starts_at) AS last_visit, count(*) AS visits,
                              sum(coalesce(a.amount_charged_cents, s.price_cents, 0)) AS spend
                       FROM appointments a LEFT JOIN services s ON s.id = a.service_id
                       WHERE a.client_id = c.id AND a.status IN {sql_list(VISITED_STATUSES)}) v ON true
    ORDER BY c.id
"""


def _export_row(r: Any, tz: Any) -> list[str]:
    def when(moment: Any) -> str:
        return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else ""

    texts = {"opted_in": "yes", "opted_out": "no"}.get(r["consent_state"], "")
    offers = {"granted": "yes", "revoked": "no"}.get(r["marketing_consent"], "")
    values = [
        r["id"], r["name"], r["phone_e164"], r["email"], r["birth_date"].isoformat() if r["birth_date"] else "",
        r["tags"], r["notes"],
        texts, r["t_via"] if texts == "yes" else "", when(r["t_at"]) if texts == "yes" else "",
        r["t_wording"] if texts == "yes" else "",
        offers, r["m_via"] if offers == "yes" else "", when(r["m_at"]) if offers == "yes" else "",
        r["m_wording"] if offers == "yes" else "",
        r["sms_status"], r["last_visit"].astimezone(tz).date().isoformat() if r["last_visit"] else "",
        r["visits"] or 0, f"{(r['spend'] or 0) / 100:.2f}",
    ]  # fmt: skip
    return [safe_cell(v) for v in values]


def _write_export(handle: Any, clinic: Any) -> int:
    from scripts.common import app_database

    writer = csv.writer(handle)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    with app_database().tenant_scope(clinic.id) as session:
        for row in session.execute(text(_EXPORT_SQL)).mappings():
            writer.writerow(_export_row(row, clinic.tz))
            count += 1
    return count


def clients_export(args: argparse.Namespace) -> int:
    from scripts.appointments import clinic_facts

    clinic = clinic_facts(args.clinic)
    if args.out == "-":
        _write_export(sys.stdout, clinic)
        return 0
    try:  # PHI: readable by its owner only
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise CommandError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    with open(fd, "w", encoding="utf-8", newline="") as handle:
        count = _write_export(handle, clinic)
    print(f"wrote {count:,} client(s) to {args.out}")
    return 0
