"""``medspa clients …``: find a client, see their history, record consent given in person (import and export of
a client list: ``scripts/client_import.py``).

PHI (names, phone numbers, message bodies) is printed to the terminal that
asked for it and nowhere else: these commands log nothing about clients.
Every query runs as the app role inside the clinic's row-level-security scope.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from sqlalchemy import text

from db.engine import sql_list
from domain.appointments import VISITED_STATUSES
from scripts.common import CommandError, add_clinic_argument
from worker.appointments.store import upcoming_visit

_COLUMNS = ["id", "name", "phone", "email", "consent", "marketing", "tags", "last_visit", "next_visit"]
_LIST_SQL = f"""
    SELECT c.id, c.name, c.phone_e164 AS phone, c.email, c.consent_state AS consent, c.marketing_consent AS marketing,
           array_to_string(c.tags, ',') AS tags,
           (SELECT max(a.starts_at) FROM appointments a WHERE a.client_id = c.id
               AND a.status IN {sql_list(VISITED_STATUSES)}) AS last_visit,
           (SELECT min(a.starts_at) FROM appointments a WHERE a.client_id = c.id
               AND {upcoming_visit("a", "now()")}) AS next_visit
    FROM clients c
"""


def register(subparsers: Any) -> None:
    clients = subparsers.add_parser(
        "clients",
        help="list, search and show clients; record consent given in person; import/export a client list",
        description="Client lookups for staff. Names and phone numbers are shown here only, never logged.",
    )
    sub = clients.add_subparsers(dest="clients_command", metavar="SUBCOMMAND", required=True)

    listing = sub.add_parser("list", help="list a clinic's clients", description="List a clinic's clients.")
    add_clinic_argument(listing)
    listing.add_argument("--limit", type=int, default=200, help="at most this many rows (default 200)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=clients_list)

    search = sub.add_parser(
        "search",
        help="find clients by name, phone or email",
        description="Find clients whose name or email contains QUERY, or whose phone number "
        "contains QUERY's digits (any spelling: (415) 555-0142, 5550142, ...).",
    )
    search.add_argument("query", metavar="QUERY", help="part of a name, email or phone number")
    add_clinic_argument(search)
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")
    search.set_defaults(handler=clients_search)

    show = sub.add_parser(
        "show",
        help="a client's details, appointments, conversations and consent history",
        description="Show one client: details, appointments, conversations (recent messages) and the consent ledger.",
    )
    show.add_argument("client_id", metavar="ID", type=int, help="client id (see: clients search)")
    add_clinic_argument(show)
    show.add_argument("--messages", type=int, default=10, help="recent messages per conversation (default 10)")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(handler=clients_show)

    consent = sub.add_parser(
        "consent",
        help="record texting consent (or opt-out) given in person",
        description="Record consent the client gave in person (consent ledger source "
        "'staff'), with the exact wording they agreed to. Appointment texts and marketing are separate: "
        "marketing needs its own --opt-in --scope marketing; an opt-out of appointment texts stops all texts.",
    )
    consent.add_argument("client_id", metavar="ID", type=int, help="client id")
    add_clinic_argument(consent)
    choice = consent.add_mutually_exclusive_group(required=True)
    choice.add_argument("--opt-in", dest="kind", action="store_const", const="opt_in", help="client agreed to texts")
    choice.add_argument(
        "--opt-out", dest="kind", action="store_const", const="opt_out", help="client asked not to be texted"
    )
    consent.add_argument(
        "--scope",
        choices=["transactional", "marketing"],
        default="transactional",
        help="transactional: appointment texts and replies (default; an opt-out stops all texts); "
        "marketing: offers and campaigns",
    )
    consent.add_argument(
        "--wording", required=True, metavar="TEXT", help="what the client agreed to, as shown or read to them"
    )
    consent.set_defaults(handler=clients_consent)

    from scripts.client_import import register_import_export  # import / export: their own module

    register_import_export(sub)


def _rows(clinic_id: int, where: str = "", params: dict[str, Any] | None = None, limit: int = 200) -> list[dict]:
    from scripts.common import app_database

    with app_database().tenant_scope(clinic_id) as session:
        result = session.execute(
            text(f"{_LIST_SQL} {where} ORDER BY c.name NULLS LAST, c.id LIMIT :limit"),
            {**(params or {}), "limit": limit},
        )
        return [dict(r) for r in result.mappings()]


def _output(rows: list[dict[str, Any]], as_json: bool) -> int:
    from scripts.common import print_json, print_table

    if as_json:
        print_json(rows)
    else:
        print_table([{k: ("" if v is None else v) for k, v in r.items()} for r in rows], _COLUMNS)
    return 0


def clients_list(args: argparse.Namespace) -> int:
    from scripts.common import clinic_id_for

    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    return _output(_rows(clinic_id_for(args.clinic), limit=args.limit), args.json)


def clients_search(args: argparse.Namespace) -> int:
    from scripts.common import clinic_id_for

    query = args.query.strip()
    if not query:
        raise CommandError("give part of a name, email or phone number to search for")
    digits = re.sub(r"\D", "", query)
    conditions = ["c.name ILIKE :pattern", "c.email ILIKE :pattern"]
    params: dict[str, Any] = {"pattern": f"%{_escape_like(query)}%"}
    if len(digits) >= 4:
        # Phone spellings differ ("(415) 555-0142" vs "+14155550142"): compare digits only.
        conditions.append("regexp_replace(c.phone_e164, '\\D', '', 'g') LIKE :digits")
        params["digits"] = f"%{digits[-10:] if len(digits) > 10 else digits}%"
    rows = _rows(clinic_id_for(args.clinic), "WHERE " + " OR ".join(conditions), params)
    if not rows and not args.json:
        print("no matching clients")
        return 0
    return _output(rows, args.json)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def clients_show(args: argparse.Namespace) -> int:
    from scripts.appointments import clinic_facts
    from scripts.common import app_database, print_json

    clinic = clinic_facts(args.clinic)
    clinic_id = clinic.id

    def local(moment: Any) -> str:
        return moment.astimezone(clinic.tz).strftime("%Y-%m-%d %H:%M") if moment else ""

    with app_database().tenant_scope(clinic_id) as session:
        client = (
            session.execute(
                text("""SELECT id, name, phone_e164 AS phone, email, timezone, consent_state AS consent,
                           marketing_consent AS marketing, sms_status,
                           tags, notes, birth_date, created_at FROM clients WHERE id = :id"""),
                {"id": args.client_id},
            )
            .mappings()
            .one_or_none()
        )
        if client is None:
            raise CommandError(f"no client {args.client_id} at clinic {args.clinic!r}")
        appointments = [
            dict(r)
            for r in session.execute(
                text("""SELECT a.id, a.starts_at, a.status, s.name AS service, p.name AS provider, a.deposit_cents,
                           a.cancel_reason, a.notes, a.amount_charged_cents, a.imported_at IS NOT NULL AS imported
                    FROM appointments a LEFT JOIN services s ON s.id = a.service_id
                    JOIN providers p ON p.id = a.provider_id
                    WHERE a.client_id = :id ORDER BY a.starts_at DESC"""),
                {"id": args.client_id},
            ).mappings()
        ]
        conversations = [
            dict(r)
            for r in session.execute(
                text("""SELECT id, channel, agent_state, handoff_reason, handoff_urgency, last_message_at
                    FROM conversations WHERE client_id = :id ORDER BY id"""),
                {"id": args.client_id},
            ).mappings()
        ]
        for conversation in conversations:
            recent = (
                session.execute(
                    text("""SELECT created_at, role, body FROM messages
                        WHERE conversation_id = :c AND role IN ('user', 'assistant', 'staff') AND body <> ''
                        ORDER BY id DESC LIMIT :n"""),
                    {"c": conversation["id"], "n": max(0, args.messages)},
                )
                .mappings()
                .all()
            )
            conversation["messages"] = [dict(m) for m in reversed(recent)]
        consent = [
            dict(r)
            for r in session.execute(
                text("""SELECT created_at, kind, scope, source, wording, given_at, given_via FROM consent_events
                    WHERE client_id = :id OR (client_id IS NULL AND phone_e164 = :phone) ORDER BY id"""),
                {"id": args.client_id, "phone": client["phone"]},
            ).mappings()
        ]
    details = dict(client)
    if args.json:
        print_json({**details, "appointments": appointments, "conversations": conversations, "consent_events": consent})
        return 0
    print(f"Client {details['id']}: {details['name'] or '(no name)'}   (times in {clinic.timezone})")
    for label, key in (
        ("phone", "phone"),
        ("email", "email"),
        ("consent", "consent"),
        ("marketing", "marketing"),
        ("sms status", "sms_status"),
        ("time zone", "timezone"),
        ("tags", "tags"),
        ("notes", "notes"),
        ("born", "birth_date"),
        ("since", "created_at"),
    ):
        value = local(details[key]) if key == "created_at" else details.get(key)
        if value not in (None, "", []):
            print(f"  {label}: {', '.join(value) if isinstance(value, list) else value}")
    print(f"\nAppointments ({len(appointments)}):")
    for a in appointments:
        extra = f"  [{a['cancel_reason']}]" if a["cancel_reason"] else ""
        if a["amount_charged_cents"] is not None:
            extra += f"  charged ${a['amount_charged_cents'] / 100:,.2f}"
        if a["imported"]:
            extra += "  (imported)"
        print(
            f"  #{a['id']}  {local(a['starts_at'])}  {a['status']:<15} {a['service'] or '-'} with "
            f"{a['provider']}{extra}"
        )
    print(f"\nConversations ({len(conversations)}):")
    for c in conversations:
        handoff = f", handoff: {c['handoff_urgency']} {c['handoff_reason']}" if c["handoff_urgency"] else ""
        print(f"  #{c['id']} {c['channel']} state {c['agent_state']}{handoff}")
        for m in c["messages"]:
            print(f"    {local(m['created_at'])} {m['role']:>9}: {m['body']}")
    print(f"\nConsent ledger ({len(consent)}):")
    for e in consent:
        given = f" [given {local(e['given_at'])} via {e['given_via']}]" if e["given_at"] or e["given_via"] else ""
        print(f"  {local(e['created_at'])}  {e['kind']:<8} via {e['source']} ({e['scope']}): {e['wording']}{given}")
    return 0


def clients_consent(args: argparse.Namespace) -> int:
    from db.consent import record_consent
    from domain.compliance import ConsentError, ConsentKind, ConsentRecord, ConsentScope, ConsentSource
    from scripts.common import app_database, clinic_id_for

    wording = args.wording.strip()
    if not wording:
        raise CommandError("--wording must say what the client agreed to")
    kind = ConsentKind(args.kind)
    scope = ConsentScope(args.scope)
    if kind is ConsentKind.OPT_OUT and scope is ConsentScope.TRANSACTIONAL:
        scope = ConsentScope.ALL  # no appointment texts means no texts at all
    try:
        record = ConsentRecord(kind, scope, ConsentSource.STAFF, wording)
    except ConsentError as exc:
        raise CommandError(str(exc)) from None
    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        client = session.execute(
            text("SELECT id, phone_e164 FROM clients WHERE id = :id FOR UPDATE"), {"id": args.client_id}
        ).one_or_none()
        if client is None:
            raise CommandError(f"no client {args.client_id} at clinic {args.clinic!r}")
        record_consent(session, clinic_id, int(client.id), client.phone_e164, record)
        consent, marketing = session.execute(
            text("SELECT consent_state, marketing_consent FROM clients WHERE id = :id"), {"id": client.id}
        ).one()
    what = f"{kind.value.replace('_', ' ')} ({scope.value})"
    print(
        f"client {client.id}: {what} recorded in the consent ledger (source staff); now {_consent_line(consent, marketing)}"
    )
    return 0


def _consent_line(consent: str, marketing: str) -> str:
    """How a client's consent stands, in words (an opt-out suspends a marketing grant)."""
    texts = {"opted_out": "opted out of all texts", "opted_in": "appointment texts: yes"}.get(
        consent, "appointment texts: not asked"
    )
    offers = {"granted": "marketing: yes", "revoked": "marketing: no (revoked)"}.get(marketing, "marketing: not given")
    if consent == "opted_out" and marketing == "granted":
        offers = "marketing: suspended by the opt-out"
    return f"{texts}, {offers}"
