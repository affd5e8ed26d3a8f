"""``medspa staff …``: the front desk steps in when the agent hands a conversation off.

- ``attention``: what needs a human now — handoffs by urgency, conversations whose last turn failed,
  quarantined inbound messages;
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
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.agent_state import AgentState
from domain.staff_access import HANDOFF_URGENCY_ORDER
from scripts.common import CommandError, add_clinic_argument

log = logging.getLogger(__name__)

HANDOFF = AgentState.HANDOFF.value
IDLE = AgentState.IDLE.value
URGENCY_ORDER = HANDOFF_URGENCY_ORDER
PAUSED_REASON = "paused by staff"
STAFF_REPLY_REASON = "staff took over"
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
        "last turn failed, and quarantined inbound messages.",
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
    for row in rows:
        since = row["since"]
        row["waiting_s"] = int((now - since).total_seconds()) if since else 0
    rank = {u: i for i, u in enumerate(URGENCY_ORDER)}
    rows.sort(key=lambda r: (rank.get(str(r["urgency"]), len(rank)), r["since"] or now))
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
def _conversation(session: Session, conversation_id: int, *, lock: bool = False) -> dict[str, Any]:
    row = (
        session.execute(
            text(
                f"""SELECT c.id, c.channel, c.agent_state, c.handoff_reason, c.handoff_urgency, c.client_id,
                       c.last_inbound_seq, c.answered_seq, cl.name AS client, cl.phone_e164 AS phone,
                       cl.consent_state, cl.sms_status
                FROM conversations c JOIN clients cl ON cl.id = c.client_id
                WHERE c.id = :id {"FOR UPDATE OF c" if lock else ""}"""
            ),
            {"id": conversation_id},
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise CommandError(f"no conversation {conversation_id} in this clinic (see: medspa staff attention)")
    return dict(row)


def staff_show(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for, print_json

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        conv = _conversation(session, args.conversation_id)
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
def _take_over(session: Session, conversation_id: int, reason: str, urgency: str) -> bool:
    """Put the conversation with staff (keeping an existing handoff's reason); fence out running turns.
    Returns whether unanswered patient messages are pending (they get a silent turn)."""
    row = session.execute(
        text(
            """UPDATE conversations SET
                   handoff_reason = CASE WHEN lower(agent_state) = 'handoff' AND handoff_reason <> ''
                                         THEN handoff_reason ELSE :reason END,
                   handoff_urgency = CASE WHEN lower(agent_state) = 'handoff'
                                          THEN COALESCE(handoff_urgency, :urgency) ELSE :urgency END,
                   agent_state = :handoff, version = version + 1, lease_owner = NULL, lease_expires_at = NULL
               WHERE id = :id RETURNING last_inbound_seq > answered_seq"""
        ),
        {"id": conversation_id, "reason": reason, "urgency": urgency, "handoff": HANDOFF},
    ).scalar_one()
    return bool(row)


def staff_reply(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for
    from worker.outbox.decisions import conversation_text_decision
    from worker.outbox.rows import OutboxRow
    from worker.outbox.writes import insert_rows

    body = args.text.strip()
    if not body:
        raise CommandError("--text is empty")
    staff_name = args.as_name.strip() or "staff"
    clinic_id = clinic_id_for(args.clinic)
    trace_id = uuid.uuid4().hex
    with app_database().tenant_scope(clinic_id) as session:
        conv = _conversation(session, args.conversation_id, lock=True)
        if conv["channel"] == "sms":
            # The one decision every sender makes (the send actor makes it again at the moment of sending).
            decision = conversation_text_decision(
                conv["phone"], conv["consent_state"], conv["sms_status"], datetime.now(UTC)
            )
            refusal = {
                "no_phone": f"conversation {conv['id']} has no phone number to text",
                "opted_out": f"the patient on conversation {conv['id']} opted out of texts; nothing sent",
                "invalid_number": f"the patient's number on conversation {conv['id']} cannot receive texts "
                f"({conv['sms_status']}); nothing sent",
            }
            if not decision.send:
                raise CommandError(refusal.get(decision.reason or "", f"not sent: {decision.reason}"))
        # The number the patient texted (a clinic may have several), else the clinic's first SMS number.
        clinic_number = session.execute(
            text(
                """SELECT COALESCE(
                       (SELECT payload->>'to' FROM inbox_events WHERE conversation_id = :id AND source = 'sms'
                        ORDER BY id DESC LIMIT 1),
                       (SELECT e164 FROM clinic_phone_numbers WHERE clinic_id = :clinic_id ORDER BY id LIMIT 1), '')"""
            ),
            {"id": conv["id"], "clinic_id": clinic_id},
        ).scalar_one()
        pending = _take_over(session, conv["id"], STAFF_REPLY_REASON, "normal")
        message_id = session.execute(
            text(
                """INSERT INTO messages (clinic_id, conversation_id, direction, role, body, channel, meta)
                   VALUES (:clinic_id, :conversation_id, 'outbound', 'staff', :body, :channel, CAST(:meta AS jsonb))
                   RETURNING id"""
            ),
            {
                "clinic_id": clinic_id,
                "conversation_id": conv["id"],
                "body": body,
                "channel": conv["channel"],
                "meta": json.dumps({"staff": staff_name}),
            },
        ).scalar_one()
        to_address = conv["phone"] if conv["channel"] == "sms" else f"chat:{conv['id']}"
        outbox_ids = insert_rows(
            session,
            clinic_id,
            [
                OutboxRow(
                    channel=conv["channel"],
                    kind="staff",
                    to_address=to_address,
                    from_address=str(clinic_number or "") if conv["channel"] == "sms" else "",
                    body=body,
                    client_id=int(conv["client_id"]),
                    conversation_id=int(conv["id"]),
                    priority=0,
                    meta={"message_id": int(message_id), "staff": staff_name},
                    dedupe_key=f"staff:{conv['id']}:{message_id}",
                    trace_id=trace_id,
                )
            ],
        )
    queued = _enqueue_after_commit(clinic_id, conv["id"], outbox_ids, pending)
    log.info(
        "staff reply queued",
        extra={"clinic_id": clinic_id, "conversation_id": conv["id"], "outbox_ids": outbox_ids, "trace_id": trace_id},
    )
    note = "" if queued else " (the broker is unreachable: the outbox sweeper will send it)"
    print(
        f"Reply queued on conversation {conv['id']} ({conv['channel']}) as {staff_name}; the agent stays "
        f"paused until `medspa staff handback {conv['id']} --clinic {args.clinic}`{note}"
    )
    return 0


def staff_pause(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        conv = _conversation(session, args.conversation_id, lock=True)
        pending = session.execute(
            text(
                """UPDATE conversations SET agent_state = :handoff, handoff_reason = :reason,
                          handoff_urgency = COALESCE(handoff_urgency, 'normal'),
                          version = version + 1, lease_owner = NULL, lease_expires_at = NULL
                   WHERE id = :id RETURNING last_inbound_seq > answered_seq"""
            ),
            {"id": conv["id"], "handoff": HANDOFF, "reason": PAUSED_REASON},
        ).scalar_one()
    _enqueue_after_commit(clinic_id, conv["id"], [], bool(pending))
    log.info("agent paused by staff", extra={"clinic_id": clinic_id, "conversation_id": conv["id"]})
    print(
        f"Agent paused on conversation {conv['id']}; hand it back with "
        f"`medspa staff handback {conv['id']} --clinic {args.clinic}`"
    )
    return 0


def staff_handback(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        conv = _conversation(session, args.conversation_id, lock=True)
        if str(conv["agent_state"]).lower() != HANDOFF:
            print(
                f"Conversation {conv['id']} is not with staff (state {str(conv['agent_state']).lower()}); "
                "nothing to hand back"
            )
            return 0
        pending = session.execute(
            text(
                """UPDATE conversations SET agent_state = :idle, handoff_reason = '', handoff_urgency = NULL,
                          failed_turns = 0, version = version + 1, lease_owner = NULL, lease_expires_at = NULL
                   WHERE id = :id RETURNING last_inbound_seq > answered_seq"""
            ),
            {"id": conv["id"], "idle": IDLE},
        ).scalar_one()
    _enqueue_after_commit(clinic_id, conv["id"], [], bool(pending))
    log.info("conversation handed back to the agent", extra={"clinic_id": clinic_id, "conversation_id": conv["id"]})
    print(f"Conversation {conv['id']} handed back: the agent answers the patient's next message")
    return 0


def _enqueue_after_commit(clinic_id: int, conversation_id: int, outbox_ids: list[int], pending: bool) -> bool:
    """Enqueue by actor name (the CLI never imports the worker's actors).  A failed enqueue loses nothing:
    the rows are committed and the sweeper re-enqueues queued outbox rows and unanswered conversations."""
    from medspa.broker import OUTBOX_QUEUE, TURNS_QUEUE, message_for
    from scripts.common import enqueue_by_name

    messages = [message_for("send_outbox", OUTBOX_QUEUE, clinic_id, outbox_id) for outbox_id in outbox_ids]
    if pending:
        messages.append(message_for("run_conversation", TURNS_QUEUE, clinic_id, conversation_id))
    try:
        enqueue_by_name(messages)
    except Exception as exc:  # noqa: BLE001 - any broker failure is covered by the sweeper
        log.warning(
            "enqueue after commit failed; the sweeper will pick the work up",
            extra={"clinic_id": clinic_id, "conversation_id": conversation_id, "error": type(exc).__name__},
        )
        return False
    return True
