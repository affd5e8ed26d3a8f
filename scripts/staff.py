"""``medspa staff …``: the front desk steps in when the agent hands a conversation off.

- ``attention``: what needs a human now — handoffs by urgency, conversations whose last turn failed,
  quarantined inbound messages, visits with no outcome, and money the workers cannot move alone (a deposit refund
  Stripe refused, a payment that is not the deposit asked, a visit fee that failed or needs the patient);
- ``show``: a conversation's transcript;
- ``reply``: a staff message sent through the same transactional outbox as the agent's replies (so consent,
  rate limits, retries and exactly-once sending apply unchanged);
- ``pause`` / ``handback``: take the agent off a conversation, and give it back.

Taking over or handing back bumps the conversation's ``version`` (the fencing token turns commit under) and
drops its lease: a turn that was running at that moment commits nothing — the agent can neither answer over
the staff member nor write its old state back over theirs.  Its messages are re-run by the next lease holder,
which sees the new state (silent while staff handle the conversation).

PHI (names, phone numbers, message bodies) is printed to the terminal that asked for it, never logged.
"""

from __future__ import annotations

import argparse
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import sql_list
from domain.agent_state import AgentState
from domain.staff_access import HANDOFF_URGENCY_ORDER
from scripts.common import CommandError, add_clinic_argument

log = logging.getLogger(__name__)

HANDOFF = AgentState.HANDOFF.value
URGENCY_ORDER = HANDOFF_URGENCY_ORDER
_ATTENTION_COLUMNS = ["conversation", "why", "urgency", "waiting", "channel", "client", "phone", "reason"]

# One row per conversation or quarantined event, most pressing first.  Handoffs order by urgency, then by how
# long they have waited (since the turn that handed off; the last message when no such turn was recorded).
_ATTENTION_SQL = """
WITH last_turn AS (
    SELECT DISTINCT ON (conversation_id) conversation_id, outcome
    FROM turns ORDER BY conversation_id, id DESC
), handed_off AS (
    SELECT conversation_id, max(finished_at) AS at FROM turns
    WHERE lower(state_after) = 'handoff' AND lower(state_before) <> 'handoff'
    GROUP BY conversation_id
)
SELECT c.id AS conversation_id, NULL::bigint AS inbox_id,
       CASE WHEN lower(c.agent_state) = 'handoff' THEN 'handoff' ELSE 'failed turn' END AS why,
       CASE WHEN lower(c.agent_state) = 'handoff' THEN COALESCE(c.handoff_urgency, 'normal') ELSE 'normal' END
           AS urgency,
       COALESCE(h.at, c.last_message_at, c.created_at) AS since,
       c.channel, cl.name AS client, cl.phone_e164 AS phone,
       CASE WHEN lower(c.agent_state) = 'handoff' THEN c.handoff_reason ELSE 'the last turn failed' END AS reason
FROM conversations c
JOIN clients cl ON cl.id = c.client_id
LEFT JOIN last_turn lt ON lt.conversation_id = c.id
LEFT JOIN handed_off h ON h.conversation_id = c.id
WHERE lower(c.agent_state) = 'handoff' OR lt.outcome = 'failed'
UNION ALL
SELECT e.conversation_id, e.id AS inbox_id, 'quarantined' AS why, 'urgent' AS urgency, e.received_at AS since,
       e.source AS channel, cl.name AS client, COALESCE(cl.phone_e164, e.payload->>'from') AS phone,
       e.last_error AS reason
FROM inbox_events e
LEFT JOIN conversations c ON c.id = e.conversation_id
LEFT JOIN clients cl ON cl.id = c.client_id
WHERE e.status = 'quarantined'
"""


def register(subparsers: Any) -> None:
    staff = subparsers.add_parser(
        "staff",
        help="take over conversations the agent handed off",
        description="Staff takeover: see what needs attention, read a transcript, reply as staff, pause the "
        "agent on a conversation and hand it back.",
    )
    sub = staff.add_subparsers(dest="staff_command", metavar="SUBCOMMAND", required=True)

    attention = sub.add_parser(
        "attention",
        help="conversations needing a human, most urgent first",
        description="Handoffs (emergency, urgent, normal, low; oldest first within each), conversations whose "
        "last turn failed, quarantined inbound messages, visits with no outcome, and money to handle by hand: "
        "deposit refunds Stripe refused, payments held for review, visit fees that failed or need the patient.",
    )
    add_clinic_argument(attention)
    attention.add_argument("--json", action="store_true", help="print JSON instead of a table")
    attention.set_defaults(handler=staff_attention)

    show = sub.add_parser(
        "show",
        help="a conversation's transcript and state",
        description="Print the transcript (patient, agent and staff messages with times in the "
        "clinic's time zone), the agent state and the handoff reason.",
    )
    _conversation_arg(show)
    add_clinic_argument(show)
    show.add_argument("--limit", type=int, default=50, help="the most recent N messages (default 50)")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(handler=staff_show)

    reply = sub.add_parser(
        "reply",
        help="send a message to the patient as staff (the agent stays paused)",
        description="Send TEXT to the patient on the conversation's channel through the "
        "outbox, marked as a staff message. The conversation stays with staff "
        "(the agent is silent) until `medspa staff handback`.",
    )
    _conversation_arg(reply)
    add_clinic_argument(reply)
    reply.add_argument("--text", required=True, metavar="TEXT", help="the message to send")
    reply.add_argument(
        "--as",
        dest="as_name",
        default="staff",
        metavar="NAME",
        help="who is replying (recorded with the message; default 'staff')",
    )
    reply.set_defaults(handler=staff_reply)

    pause = sub.add_parser(
        "pause",
        help="stop the agent answering a conversation",
        description="Put the conversation in handoff (reason 'paused by staff'): the agent "
        "stays silent until `medspa staff handback`.",
    )
    _conversation_arg(pause)
    add_clinic_argument(pause)
    pause.set_defaults(handler=staff_pause)

    missed = sub.add_parser(
        "missed-calls",
        help="recent calls nobody answered and whether the caller was texted",
        description="The most recent missed calls (clinic time), who called, why the call was missed and "
        "whether the caller got the text-back (or why not: opted out, the daily cap, no caller id).",
    )
    add_clinic_argument(missed)
    missed.add_argument("--limit", type=int, default=20, help="the most recent N calls (default 20)")
    missed.add_argument("--json", action="store_true", help="print JSON instead of a table")
    missed.set_defaults(handler=staff_missed_calls)

    handback = sub.add_parser(
        "handback",
        help="give the conversation back to the agent",
        description="Clear the handoff: the agent answers the patient's next message.",
    )
    _conversation_arg(handback)
    add_clinic_argument(handback)
    handback.set_defaults(handler=staff_handback)


def _conversation_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "conversation_id", metavar="CONVERSATION_ID", type=int, help="conversation id (see: medspa staff attention)"
    )


# ------------------------------------------------------------------ attention
def attention_rows(session: Session, now: datetime) -> list[dict[str, Any]]:
    """What needs a human, most pressing first (runs inside a clinic's tenant scope)."""
    rows = [dict(r) for r in session.execute(text(_ATTENTION_SQL)).mappings()]
    rows += _unresolved_visit_rows(session, now)
    rows += _money_rows(session)
    for row in rows:
        since = row["since"]
        row["waiting_s"] = int((now - since).total_seconds()) if since else 0
    rank = {u: i for i, u in enumerate(URGENCY_ORDER)}
    rows.sort(key=lambda r: (rank.get(str(r["urgency"]), len(rank)), r["since"] or now))
    return rows


# Money nothing retries: a refused deposit refund, a payment held for review (``domain.deposits``), a visit fee
# that failed or waits for the patient's bank (``worker.visits.fees``).  One row per appointment and problem.
def _money_sql() -> str:
    from domain import deposits
    from worker.visits.fees import FEE_NEEDS_STAFF

    return f"""
SELECT a.id AS appointment_id, a.conversation_id, p.status AS problem, 'deposit' AS what, p.amount_cents,
       p.refunded_cents, '' AS detail, p.updated_at AS since, cl.name AS client, cl.phone_e164 AS phone
FROM payments p JOIN appointments a ON a.id = p.appointment_id LEFT JOIN clients cl ON cl.id = a.client_id
WHERE p.status IN {sql_list(deposits.NEEDS_STAFF_STATUSES)}
UNION ALL
SELECT a.id, a.conversation_id, a.fee_status, a.fee_kind, a.fee_cents, 0, coalesce(a.fee_error, ''), a.updated_at,
       cl.name, cl.phone_e164
FROM appointments a LEFT JOIN clients cl ON cl.id = a.client_id
WHERE a.fee_status IN {sql_list(FEE_NEEDS_STAFF)}
"""


def _money_rows(session: Session) -> list[dict[str, Any]]:
    """What staff must do about money the workers gave up on, in words (the table shows the start of it)."""
    from domain.appointments import money
    from domain.deposits import REFUND_FAILED, held_cents
    from worker.visits.fees import FEE_REQUIRES_ACTION

    rows = []
    for m in session.execute(text(_money_sql())).mappings():
        if m["what"] == "deposit":
            held = money(held_cents(int(m["amount_cents"]), int(m["refunded_cents"] or 0)))
            if m["problem"] == REFUND_FAILED:
                why, todo = "refund failed", f"refund {held} by hand in Stripe: the refund was refused"
            else:
                why, todo = "payment review", f"check the payment in Stripe: not the {held} deposit asked"
        else:
            fee = f"{money(int(m['amount_cents']))} {str(m['what']).replace('_', ' ')} fee"
            if m["problem"] == FEE_REQUIRES_ACTION:
                why, todo = "fee needs patient", f"collect the {fee}: the bank wants the patient"
            else:
                why, todo = "fee failed", f"collect the {fee}: the card charge failed ({m['detail']})"
        rows.append(
            {
                "conversation_id": m["conversation_id"],
                "inbox_id": None,
                "appointment_id": m["appointment_id"],
                "why": why,
                "urgency": "normal",
                "since": m["since"],
                "channel": "payment",
                "client": m["client"],
                "phone": m["phone"],
                "reason": todo,
            }
        )
    return rows


def _unresolved_visit_rows(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Visits whose time is over with no outcome recorded (``worker.visits.end_of_day.unresolved_visits``)."""
    from worker.visits.end_of_day import unresolved_visits

    return [
        {
            "conversation_id": v["conversation_id"],
            "inbox_id": None,
            "appointment_id": v["appointment_id"],
            "why": "unresolved visit",
            "urgency": "low",
            "since": v["ends_at"],
            "channel": "visit",
            "client": v["client"],
            "phone": v["phone"],
            "reason": f"appointment {v['appointment_id']} still {v['status'].replace('_', ' ')}: "
            "record check-in / complete / no-show",
        }
        for v in unresolved_visits(session, now)
    ]


def staff_attention(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for, print_json, print_table

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        rows = attention_rows(session, datetime.now(UTC))
    if args.json:
        print_json(rows)
        return 0
    table = [
        {
            **r,
            "conversation": r["conversation_id"]
            if r["conversation_id"] is not None
            else (f"appt {r['appointment_id']}" if r.get("appointment_id") else f"inbox {r['inbox_id']}"),
            "waiting": _age(int(r["waiting_s"])),
            "client": r["client"] or "",
            "phone": r["phone"] or "",
            "reason": (r["reason"] or "")[:60],
        }
        for r in rows
    ]
    print_table(table, _ATTENTION_COLUMNS)
    return 0


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172_800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86_400}d"


# ------------------------------------------------------------------ show
def staff_show(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for, print_json
    from worker import staff_takeover

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        try:
            conv = staff_takeover.conversation(session, args.conversation_id)
        except staff_takeover.TakeoverRefused as exc:
            raise _refused(exc) from None
        tz = ZoneInfo(
            session.execute(text("SELECT timezone FROM clinics WHERE id = :id"), {"id": clinic_id}).scalar_one()
        )
        messages = [
            dict(r)
            for r in session.execute(
                text(
                    """SELECT * FROM (
                           SELECT id, role, direction, body, created_at, meta FROM messages
                           WHERE conversation_id = :id AND (body <> '' OR meta ? 'media')
                             AND (role IN ('user', 'staff') OR (role = 'assistant' AND direction = 'outbound'))
                           ORDER BY id DESC LIMIT :n) recent
                       ORDER BY id"""
                ),
                {"id": args.conversation_id, "n": max(1, args.limit)},
            ).mappings()
        ]
        _attach_media(session, args.conversation_id, messages)
    if args.json:
        print_json({"conversation": conv, "messages": messages})
        return 0
    who = " ".join(x for x in (conv["client"], conv["phone"]) if x) or f"client {conv['client_id']}"
    print(f"Conversation {conv['id']} ({conv['channel']}) with {who}")
    state = str(conv["agent_state"]).lower()
    line = f"State: {state}"
    if state == HANDOFF:
        line += f" ({conv['handoff_urgency'] or 'normal'}): {conv['handoff_reason'] or 'no reason recorded'}"
    print(line)
    if conv["consent_state"] == "opted_out":
        print("Consent: opted out (only keyword confirmations and safety replies reach this patient)")
    print()
    if not messages:
        print("(no messages)")
    for message in messages:
        when = message["created_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        speaker = {"user": "patient", "assistant": "agent"}.get(message["role"], message["role"])
        if message["role"] == "staff" and (message["meta"] or {}).get("staff"):
            speaker = f"staff ({message['meta']['staff']})"
        print(f"{when}  {speaker}: {message['body'] or '(no text)'}")
        for index, photo in enumerate(message["media"], start=1):
            where = photo["path"] or ("not stored: " + photo["status"])
            print(f"    photo {index}/{len(message['media'])} ({photo['content_type'] or 'unknown type'}): {where}")
    return 0


def _attach_media(session: Session, conversation_id: int, messages: list[dict[str, Any]]) -> None:
    """Each message's photos (``message_media``), with where staff find them (a local path, or s3://...)."""
    from medspa.settings import get_settings
    from worker.integrations.media_storage import build_media_store
    from worker.media import conversation_media

    photos = conversation_media(session, conversation_id)
    store = build_media_store(get_settings()) if photos else None
    by_message: dict[int, list[dict[str, Any]]] = {}
    for photo in photos:
        key = photo["storage_key"]
        by_message.setdefault(int(photo["message_id"]), []).append(
            {
                "id": photo["id"],
                "content_type": photo["content_type"],
                "status": photo["status"],
                "size_bytes": photo["size_bytes"],
                "path": store.location(key) if store is not None and key and photo["status"] == "stored" else None,
            }
        )
    for message in messages:
        message["media"] = by_message.get(int(message["id"]), [])


def staff_missed_calls(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for, print_json
    from worker.missed_calls import RECENT

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        tz = ZoneInfo(
            session.execute(text("SELECT timezone FROM clinics WHERE id = :id"), {"id": clinic_id}).scalar_one()
        )
        rows = [dict(r) for r in session.execute(text(RECENT), {"limit": max(1, args.limit)}).mappings()]
    if args.json:
        print_json({"missed_calls": rows})
        return 0
    if not rows:
        print("No missed calls.")
        return 0
    for row in rows:
        when = row["created_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M")
        outcome = "texted" if row["status"] == "texted" else f"not texted ({row['skip_reason']})"
        who = " ".join(x for x in (row["client"], row["from_e164"]) if x)
        conversation = f"  conversation {row['conversation_id']}" if row["conversation_id"] else ""
        print(f"{when}  {who}  {row['reason']}  {outcome}{conversation}")
    return 0


# ------------------------------------------------------------------ takeover
# The rules live in worker/staff_takeover.py (shared with the console); these commands print and enqueue.
def _refused(exc: Exception) -> CommandError:
    hint = " (see: medspa staff attention)" if getattr(exc, "reason", "") == "not_found" else ""
    return CommandError(f"{exc}{hint}")


def staff_reply(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for
    from worker import staff_takeover

    if not args.text.strip():
        raise CommandError("--text is empty")
    staff_name = args.as_name.strip() or "staff"
    clinic_id = clinic_id_for(args.clinic)
    trace_id = uuid.uuid4().hex
    try:
        with app_database().tenant_scope(clinic_id) as session:
            action = staff_takeover.reply(
                session, clinic_id, args.conversation_id, args.text, staff_name, datetime.now(UTC), trace_id
            )
    except staff_takeover.TakeoverRefused as exc:
        raise _refused(exc) from None
    queued = _enqueue_after_commit(clinic_id, action)
    log.info(
        "staff reply queued",
        extra={
            "clinic_id": clinic_id,
            "conversation_id": action.conversation_id,
            "outbox_ids": action.outbox_ids,
            "trace_id": trace_id,
        },
    )
    note = "" if queued else " (the broker is unreachable: the outbox sweeper will send it)"
    print(
        f"Reply queued on conversation {action.conversation_id} ({action.channel}) as {staff_name}; the agent "
        f"stays paused until `medspa staff handback {action.conversation_id} --clinic {args.clinic}`{note}"
    )
    return 0


def staff_pause(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for
    from worker import staff_takeover

    clinic_id = clinic_id_for(args.clinic)
    try:
        with app_database().tenant_scope(clinic_id) as session:
            action = staff_takeover.take_over(
                session, args.conversation_id, reason=staff_takeover.PAUSED_REASON, keep_reason=False
            )
    except staff_takeover.TakeoverRefused as exc:
        raise _refused(exc) from None
    _enqueue_after_commit(clinic_id, action)
    log.info("agent paused by staff", extra={"clinic_id": clinic_id, "conversation_id": action.conversation_id})
    print(
        f"Agent paused on conversation {action.conversation_id}; hand it back with "
        f"`medspa staff handback {action.conversation_id} --clinic {args.clinic}`"
    )
    return 0


def staff_handback(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for
    from worker import staff_takeover

    clinic_id = clinic_id_for(args.clinic)
    try:
        with app_database().tenant_scope(clinic_id) as session:
            action = staff_takeover.hand_back(session, args.conversation_id)
    except staff_takeover.TakeoverRefused as exc:
        raise _refused(exc) from None
    if not action.changed:
        print(
            f"Conversation {action.conversation_id} is not with staff (state {action.agent_state}); "
            "nothing to hand back"
        )
        return 0
    _enqueue_after_commit(clinic_id, action)
    log.info(
        "conversation handed back to the agent",
        extra={"clinic_id": clinic_id, "conversation_id": action.conversation_id},
    )
    print(f"Conversation {action.conversation_id} handed back: the agent answers the patient's next message")
    return 0


def _enqueue_after_commit(clinic_id: int, action: Any) -> bool:
    """Enqueue by actor name (the CLI never imports the worker's actors).  A failed enqueue loses nothing:
    the rows are committed and the sweeper re-enqueues queued outbox rows and unanswered conversations."""
    from scripts.common import enqueue_by_name
    from worker.staff_takeover import follow_ups

    messages = follow_ups(clinic_id, action)
    if not messages:
        return True
    try:
        enqueue_by_name(messages)
    except Exception as exc:  # noqa: BLE001 - any broker failure is covered by the sweeper
        log.warning(
            "enqueue after commit failed; the sweeper will pick the work up",
            extra={"clinic_id": clinic_id, "conversation_id": action.conversation_id, "error": type(exc).__name__},
        )
        return False
    return True
