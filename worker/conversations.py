"""Conversation persistence for the turn pipeline: attach inbound messages, the
lease (who may run the next turn), the snapshot a turn works from, and the
fenced commit of a turn's results.

Ordering and exclusivity, across any number of worker processes:
- inbound events of one sender attach under the conversation's row lock, in
  inbox id (= arrival) order, each getting the next ``inbound_seq``;
- a turn runs only while its worker holds the lease (``lease_owner`` +
  ``lease_expires_at``); taking a lease bumps ``version``, the fencing token;
- the commit is ``UPDATE ... WHERE version = :v AND lease_owner = :me``: a stale
  worker whose lease was taken over commits nothing;
- the same UPDATE releases the lease only if no newer message arrived
  (``last_inbound_seq`` is read under the row lock), otherwise the holder runs
  one more turn that sees every message of the burst.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import compliance
from domain.conversation import AppointmentView, ClinicProfile, PatientProfile, TurnInput, TurnOutput
from domain.ports import ChatMessage

log = logging.getLogger(__name__)


class StaleTurn(Exception):
    """The lease was taken over (or the conversation changed) while this worker ran the turn."""


@dataclass(frozen=True)
class Lease:
    conversation_id: int
    owner: str
    version: int
    failed_turns: int
    took_over: bool = False  # the previous holder's lease had expired (it died or stalled)


@dataclass
class PendingMessage:
    id: int
    seq: int
    body: str
    meta: dict[str, Any]


@dataclass
class Snapshot:
    lease: Lease
    clinic_id: int
    client_id: int
    channel: str
    client_phone: str | None
    consent_state: str
    agent_state: str
    slots: dict[str, Any]
    answered_seq: int
    pending: list[PendingMessage]
    history: list[ChatMessage]
    upcoming: list[AppointmentView]
    client_name: str | None
    client_email: str | None
    trace_id: str = ""

    @property
    def last_seq(self) -> int:
        return self.pending[-1].seq if self.pending else self.answered_seq


@dataclass
class OutboxRow:
    channel: str
    kind: str
    to_address: str
    from_address: str
    body: str
    client_id: int | None
    conversation_id: int | None
    priority: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None
    trace_id: str = ""


def insert_outbox(session: Session, clinic_id: int, rows: list[OutboxRow]) -> list[int]:
    ids: list[int] = []
    for row in rows:
        result = session.execute(
            text(
                """INSERT INTO outbox (clinic_id, conversation_id, client_id, channel, kind, priority, to_address,
                                       from_address, body, meta, dedupe_key, trace_id, segments, encoding)
                   VALUES (:clinic_id, :conversation_id, :client_id, :channel, :kind, :priority, :to_address,
                           :from_address, :body, CAST(:meta AS jsonb), :dedupe_key, :trace_id, :segments, :encoding)
                   ON CONFLICT (clinic_id, dedupe_key) DO NOTHING
                   RETURNING id"""
            ),
            {
                "clinic_id": clinic_id, "conversation_id": row.conversation_id, "client_id": row.client_id,
                "channel": row.channel, "kind": row.kind, "priority": row.priority, "to_address": row.to_address,
                "from_address": row.from_address, "body": row.body, "meta": json.dumps(row.meta),
                "dedupe_key": row.dedupe_key, "trace_id": row.trace_id, **_segment_fields(row),
            },
        ).scalar_one_or_none()
        if result is not None:
            ids.append(int(result))
    return ids


def _segment_fields(row: OutboxRow) -> dict[str, Any]:
    from domain.segments import count_segments

    if row.channel != "sms":
        return {"segments": 1, "encoding": "text"}
    info = count_segments(row.body)
    return {"segments": info.segments, "encoding": info.encoding}


# ------------------------------------------------------------------ attach
def record_failed_delivery(session: Session, inbox_id: int, error: str, max_attempts: int) -> str:
    """Count a failed delivery of an inbox event; quarantine it after ``max_attempts``.
    Returns 'retry', 'quarantined' or 'done' (it was handled meanwhile)."""
    status = session.execute(
        text(
            """UPDATE inbox_events SET attempts = attempts + 1, last_error = :error,
                      status = CASE WHEN attempts + 1 >= :max THEN 'quarantined' ELSE status END
               WHERE id = :id AND status = 'received' RETURNING status"""
        ),
        {"id": inbox_id, "max": max_attempts, "error": error[:200]},
    ).scalar_one_or_none()
    if status is None:
        return "done"
    return "quarantined" if status == "quarantined" else "retry"


@dataclass
class Attached:
    conversation_id: int
    outbox_ids: list[int] = field(default_factory=list)  # compliance replies to send after commit
    newly_attached: int = 0


def attach_inbound(
    session: Session, clinic_id: int, inbox_id: int, *, clinic_name: str, clinic_phone: str
) -> Attached | None:
    """Attach inbox event ``inbox_id`` — and every other recorded, unattached event of the same sender, in
    inbox id (= arrival) order — to the sender's conversation, so a backlog of one patient's texts becomes
    one turn that sees them all.  Returns None when the event does not exist.  Idempotent."""
    event = session.execute(
        text(
            "SELECT id, source, sender_key, payload, status, conversation_id, trace_id "
            "FROM inbox_events WHERE id = :id"
        ),
        {"id": inbox_id},
    ).mappings().one_or_none()
    if event is None:
        return None
    if event["status"] != "received":
        return Attached(conversation_id=int(event["conversation_id"] or 0))
    payload = event["payload"]
    consent = "unknown"
    if event["source"] == "sms":
        client_id, conversation_id, consent = _sms_conversation(session, clinic_id, payload["from"])
        channel = "sms"
    else:
        client_id, conversation_id = int(payload["client_id"]), int(payload["conversation_id"])
        channel = "chat"
    # The conversation row lock serialises attaching with other attaches and with turn commits.
    session.execute(text("SELECT id FROM conversations WHERE id = :id FOR UPDATE"), {"id": conversation_id})
    events = session.execute(
        text(
            """SELECT id, source, payload, trace_id, provider_event_id,
                      extract(epoch FROM received_at) AS received_epoch FROM inbox_events
               WHERE clinic_id = :clinic_id AND sender_key = :sender AND status = 'received'
               ORDER BY id FOR UPDATE"""
        ),
        {"clinic_id": clinic_id, "sender": event["sender_key"]},
    ).mappings().all()
    attached = Attached(conversation_id=conversation_id)
    consent_state = consent if channel == "sms" else "unknown"
    for ev in events:
        outbox_ids, consent_state = _attach_one(
            session, clinic_id, client_id, conversation_id, channel, ev, clinic_name, clinic_phone, consent_state
        )
        attached.outbox_ids += outbox_ids
        attached.newly_attached += 1
    return attached


def _sms_conversation(session: Session, clinic_id: int, phone: str) -> tuple[int, int, str]:
    client_id, consent = session.execute(
        text(
            """WITH ins AS (
                   INSERT INTO clients (clinic_id, phone_e164) VALUES (:clinic_id, :phone)
                   ON CONFLICT (clinic_id, phone_e164) DO NOTHING RETURNING id, consent_state)
               SELECT id, consent_state FROM ins UNION ALL
               SELECT id, consent_state FROM clients WHERE clinic_id = :clinic_id AND phone_e164 = :phone LIMIT 1"""
        ),
        {"clinic_id": clinic_id, "phone": phone},
    ).one()
    conversation_id = session.execute(
        text(
            """WITH ins AS (
                   INSERT INTO conversations (clinic_id, client_id, channel) VALUES (:clinic_id, :client_id, 'sms')
                   ON CONFLICT (clinic_id, client_id, channel) DO NOTHING RETURNING id)
               SELECT id FROM ins UNION ALL
               SELECT id FROM conversations WHERE clinic_id = :clinic_id AND client_id = :client_id
                   AND channel = 'sms' LIMIT 1"""
        ),
        {"clinic_id": clinic_id, "client_id": client_id},
    ).scalar_one()
    return int(client_id), int(conversation_id), str(consent)


def _attach_one(
    session: Session,
    clinic_id: int,
    client_id: int,
    conversation_id: int,
    channel: str,
    event: Any,
    clinic_name: str,
    clinic_phone: str,
    consent_state: str,
) -> tuple[list[int], str]:
    """Attach one event; returns its compliance replies and the client's consent state afterwards."""
    payload = event["payload"]
    body = str(payload.get("body", ""))
    seq = session.execute(
        text(
            """UPDATE conversations SET last_inbound_seq = last_inbound_seq + 1, last_message_at = now()
               WHERE id = :id RETURNING last_inbound_seq"""
        ),
        {"id": conversation_id},
    ).scalar_one()
    meta: dict[str, Any] = {
        "inbox_id": int(event["id"]), "trace_id": event["trace_id"], "received_at": float(event["received_epoch"]),
    }
    outbox: list[OutboxRow] = []
    if channel == "sms":
        intent = compliance.classify_keyword(body, awaiting_opt_in=consent_state == "opted_out")
        if intent is not None:
            meta["compliance"] = intent.value
            if intent is compliance.KeywordIntent.OPT_OUT:
                consent_state = "opted_out"
            elif intent is compliance.KeywordIntent.OPT_IN:
                consent_state = "opted_in"
            outbox += _apply_keyword(
                session, clinic_id, client_id, conversation_id, payload, intent, body, clinic_name, clinic_phone,
                int(event["id"]), event["trace_id"],
            )
    session.execute(
        text(
            """INSERT INTO messages (clinic_id, conversation_id, direction, role, body, inbound_seq, channel,
                                     provider_message_id, meta)
               VALUES (:clinic_id, :conversation_id, 'inbound', 'user', :body, :seq, :channel, :provider_id,
                       CAST(:meta AS jsonb))"""
        ),
        {
            "clinic_id": clinic_id, "conversation_id": conversation_id, "body": body, "seq": seq,
            "channel": channel, "provider_id": str(event["provider_event_id"]), "meta": json.dumps(meta),
        },
    )
    session.execute(
        text(
            """UPDATE inbox_events SET status = 'processed', processed_at = now(),
                      conversation_id = :conversation_id WHERE id = :id"""
        ),
        {"id": event["id"], "conversation_id": conversation_id},
    )
    return insert_outbox(session, clinic_id, outbox), consent_state


def _apply_keyword(
    session: Session,
    clinic_id: int,
    client_id: int,
    conversation_id: int,
    payload: dict[str, Any],
    intent: compliance.KeywordIntent,
    body: str,
    clinic_name: str,
    clinic_phone: str,
    inbox_id: int,
    trace_id: str,
) -> list[OutboxRow]:
    """STOP / START / HELP, before any model: the consent ledger, the client's state, one confirmation."""
    phone = payload["from"]
    kind = {"opt_out": "opt_out", "opt_in": "opt_in", "help": "help"}[intent.value]
    session.execute(
        text(
            """INSERT INTO consent_events (clinic_id, client_id, phone_e164, kind, source, wording)
               VALUES (:clinic_id, :client_id, :phone, :kind, 'sms_keyword', :wording)"""
        ),
        {"clinic_id": clinic_id, "client_id": client_id, "phone": phone, "kind": kind, "wording": body[:500]},
    )
    if intent is compliance.KeywordIntent.OPT_OUT:
        session.execute(text("UPDATE clients SET consent_state = 'opted_out' WHERE id = :id"), {"id": client_id})
        reply = compliance.opt_out_confirmation(clinic_name)
    elif intent is compliance.KeywordIntent.OPT_IN:
        session.execute(text("UPDATE clients SET consent_state = 'opted_in' WHERE id = :id"), {"id": client_id})
        reply = compliance.opt_in_confirmation(clinic_name)
    else:
        reply = compliance.help_reply(clinic_name, clinic_phone)
    return [
        OutboxRow(
            channel="sms", kind="compliance", to_address=phone, from_address=payload.get("to", ""), body=reply,
            client_id=client_id, conversation_id=conversation_id, priority=0,
            dedupe_key=f"compliance:{inbox_id}", trace_id=trace_id,
        )
    ]


# ------------------------------------------------------------------ lease
def try_acquire_lease(session: Session, conversation_id: int, owner: str, lease_seconds: int) -> Lease | None:
    row = session.execute(
        text(
            """WITH previous AS (SELECT lease_owner FROM conversations WHERE id = :id FOR UPDATE)
               UPDATE conversations
               SET lease_owner = :owner, lease_expires_at = now() + make_interval(secs => :secs),
                   version = version + 1, failed_turns = failed_turns + 1
               WHERE id = :id AND last_inbound_seq > answered_seq
                 AND (lease_owner IS NULL OR lease_expires_at < now())
               RETURNING version, failed_turns, (SELECT lease_owner FROM previous) IS NOT NULL AS took_over"""
        ),
        {"id": conversation_id, "owner": owner, "secs": lease_seconds},
    ).one_or_none()
    if row is None:
        return None
    return Lease(conversation_id, owner, int(row[0]), int(row[1]), took_over=bool(row[2]))


def extend_lease(session: Session, lease: Lease, lease_seconds: int) -> None:
    updated = session.execute(
        text(
            """UPDATE conversations SET lease_expires_at = now() + make_interval(secs => :secs)
               WHERE id = :id AND version = :version AND lease_owner = :owner"""
        ),
        {"id": lease.conversation_id, "version": lease.version, "owner": lease.owner, "secs": lease_seconds},
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleTurn(f"lease on conversation {lease.conversation_id} was taken over")


def quarantine(session: Session, lease: Lease) -> int:
    """Give up on messages that crashed turns repeatedly: hand the conversation to staff, stop looping.
    Returns how many messages were quarantined."""
    answered = session.execute(
        text("SELECT answered_seq FROM conversations WHERE id = :id"), {"id": lease.conversation_id}
    ).scalar_one()
    updated = session.execute(
        text(
            """UPDATE conversations SET answered_seq = last_inbound_seq, agent_state = 'handoff',
                      handoff_reason = 'automatic replies failed repeatedly; needs staff', handoff_urgency = 'normal',
                      lease_owner = NULL, lease_expires_at = NULL, failed_turns = 0
               WHERE id = :id AND version = :version AND lease_owner = :owner"""
        ),
        {"id": lease.conversation_id, "version": lease.version, "owner": lease.owner},
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleTurn(f"lease on conversation {lease.conversation_id} was taken over")
    result = session.execute(
        text(
            """UPDATE inbox_events SET status = 'quarantined', last_error = 'turn failed repeatedly'
               WHERE id IN (SELECT (meta->>'inbox_id')::bigint FROM messages
                            WHERE conversation_id = :id AND inbound_seq > :answered)"""
        ),
        {"id": lease.conversation_id, "answered": answered},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# ------------------------------------------------------------------ snapshot
def load_snapshot(session: Session, clinic_id: int, lease: Lease, history_window: int) -> Snapshot:
    conv = session.execute(
        text(
            """SELECT c.client_id, c.channel, c.agent_state, c.slots, c.answered_seq,
                      cl.phone_e164, cl.consent_state, cl.name, cl.email
               FROM conversations c JOIN clients cl ON cl.id = c.client_id WHERE c.id = :id"""
        ),
        {"id": lease.conversation_id},
    ).mappings().one()
    answered = int(conv["answered_seq"])
    pending = [
        PendingMessage(int(r[0]), int(r[1]), r[2], r[3] or {})
        for r in session.execute(
            text(
                """SELECT id, inbound_seq, body, meta FROM messages
                   WHERE conversation_id = :id AND inbound_seq > :answered ORDER BY inbound_seq"""
            ),
            {"id": lease.conversation_id, "answered": answered},
        )
    ]
    history_rows = session.execute(
        text(
            """SELECT role, body FROM messages
               WHERE conversation_id = :id AND role IN ('user', 'assistant', 'staff') AND body <> ''
                 AND (inbound_seq IS NULL OR inbound_seq <= :answered)
               ORDER BY id DESC LIMIT :n"""
        ),
        {"id": lease.conversation_id, "answered": answered, "n": history_window},
    ).all()
    history = [
        ChatMessage(role="assistant" if role == "staff" else role, content=body) for role, body in reversed(history_rows)
    ]
    upcoming = [
        AppointmentView(int(r[0]), r[1] or "", r[2] or "", r[3], r[4], r[5])
        for r in session.execute(
            text(
                """SELECT a.id, s.name, p.name, a.starts_at, a.ends_at, a.status
                   FROM appointments a LEFT JOIN services s ON s.id = a.service_id
                   JOIN providers p ON p.id = a.provider_id
                   WHERE a.client_id = :client_id AND a.starts_at > now() - interval '1 hour'
                     AND a.status IN ('pending_deposit', 'booked', 'confirmed')
                   ORDER BY a.starts_at LIMIT 5"""
            ),
            {"client_id": conv["client_id"]},
        )
    ]
    return Snapshot(
        lease=lease, clinic_id=clinic_id, client_id=int(conv["client_id"]), channel=conv["channel"],
        client_phone=conv["phone_e164"], consent_state=conv["consent_state"],
        agent_state=str(conv["agent_state"]).lower(),
        slots=dict(conv["slots"] or {}), answered_seq=answered, pending=pending, history=history,
        upcoming=upcoming, client_name=conv["name"], client_email=conv["email"],
    )


def turn_input(snapshot: Snapshot, clinic: ClinicProfile, now: datetime, trace_id: str) -> TurnInput:
    return TurnInput(
        clinic=clinic,
        patient=PatientProfile(
            client_id=snapshot.client_id, name=snapshot.client_name, email=snapshot.client_email,
            consent_state=snapshot.consent_state, upcoming=tuple(snapshot.upcoming),
        ),
        conversation_id=snapshot.lease.conversation_id,
        channel=snapshot.channel,
        agent_state=snapshot.agent_state,
        slots=snapshot.slots,
        history=tuple(snapshot.history),
        new_messages=tuple(m.body for m in snapshot.pending if "compliance" not in m.meta),
        now=now,
        trace_id=trace_id,
    )


# ------------------------------------------------------------------ commit
@dataclass
class TurnRecord:
    output: TurnOutput
    started_at: datetime
    latency_ms: int
    worker: str
    trace_id: str


def commit_turn(
    session: Session,
    snapshot: Snapshot,
    record: TurnRecord,
    outbox_rows: list[OutboxRow],
    lease_seconds: int,
) -> tuple[list[int], bool]:
    """Write one turn's results under the fence.  Returns (outbox ids, more messages pending)."""
    out = record.output
    lease = snapshot.lease
    handoff_reason = out.handoff.reason if out.handoff else None
    handoff_urgency = out.handoff.urgency if out.handoff else None
    newest = session.execute(
        text(
            """UPDATE conversations SET
                   answered_seq = :last_seq, agent_state = :state, slots = CAST(:slots AS jsonb), failed_turns = 0,
                   handoff_reason = COALESCE(:handoff_reason, handoff_reason),
                   handoff_urgency = COALESCE(:handoff_urgency, handoff_urgency),
                   lease_owner = CASE WHEN last_inbound_seq > :last_seq THEN lease_owner END,
                   lease_expires_at = CASE WHEN last_inbound_seq > :last_seq
                                           THEN now() + make_interval(secs => :secs) END
               WHERE id = :id AND version = :version AND lease_owner = :owner
               RETURNING last_inbound_seq"""
        ),
        {
            "id": lease.conversation_id, "version": lease.version, "owner": lease.owner,
            "last_seq": snapshot.last_seq, "state": out.agent_state, "slots": json.dumps(out.slots, default=str),
            "handoff_reason": handoff_reason, "handoff_urgency": handoff_urgency, "secs": lease_seconds,
        },
    ).scalar_one_or_none()
    if newest is None:
        raise StaleTurn(f"conversation {lease.conversation_id} moved on (version {lease.version})")
    turn_id = session.execute(
        text(
            """INSERT INTO turns (clinic_id, conversation_id, first_seq, last_seq, state_before, state_after, model,
                                  prompt_tokens, completion_tokens, steps, outcome, model_latency_ms, latency_ms,
                                  trace_id, worker, started_at)
               VALUES (:clinic_id, :conversation_id, :first_seq, :last_seq, :before, :after, :model, :pt, :ct,
                       :steps, :outcome, :mlat, :lat, :trace, :worker, :started)
               RETURNING id"""
        ),
        {
            "clinic_id": snapshot.clinic_id, "conversation_id": lease.conversation_id,
            "first_seq": snapshot.pending[0].seq if snapshot.pending else snapshot.answered_seq,
            "last_seq": snapshot.last_seq, "before": snapshot.agent_state, "after": out.agent_state,
            "model": out.model, "pt": out.usage.prompt_tokens, "ct": out.usage.completion_tokens,
            "steps": out.steps, "outcome": out.outcome, "mlat": out.model_latency_ms, "lat": record.latency_ms,
            "trace": record.trace_id, "worker": record.worker, "started": record.started_at,
        },
    ).scalar_one()
    message_rows: list[dict[str, Any]] = []
    for msg in out.transcript:
        message_rows.append(
            {
                "role": msg.role, "body": msg.content or "",
                "tool_calls": json.dumps([
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in msg.tool_calls
                ]) if msg.tool_calls else None,
                "tool_call_id": msg.tool_call_id, "direction": "internal", "meta": "{}",
            }
        )
    if message_rows:
        session.execute(
            text(
                """INSERT INTO messages (clinic_id, conversation_id, direction, role, body, tool_calls, tool_call_id,
                                         channel, turn_id, meta)
                   VALUES (:clinic_id, :conversation_id, :direction, :role, :body, CAST(:tool_calls AS jsonb),
                           :tool_call_id, :channel, :turn_id, CAST(:meta AS jsonb))"""
            ),
            [
                {**row, "clinic_id": snapshot.clinic_id, "conversation_id": lease.conversation_id,
                 "channel": snapshot.channel, "turn_id": turn_id}
                for row in message_rows
            ],
        )
    reply_rows = iter(row for row in outbox_rows if row.kind == "reply")
    for reply in out.replies:
        meta = {"quick_replies": [{"label": q.label, "value": q.value} for q in reply.quick_replies]}
        message_id = session.execute(
            text(
                """INSERT INTO messages (clinic_id, conversation_id, direction, role, body, channel, turn_id, meta)
                   VALUES (:clinic_id, :conversation_id, 'outbound', 'assistant', :body, :channel, :turn_id,
                           CAST(:meta AS jsonb)) RETURNING id"""
            ),
            {"clinic_id": snapshot.clinic_id, "conversation_id": lease.conversation_id, "body": reply.text,
             "channel": snapshot.channel, "turn_id": turn_id,
             "meta": json.dumps(meta if reply.quick_replies else {})},
        ).scalar_one()
        outbox_row = next(reply_rows, None)
        if outbox_row is not None:
            # The chat stream and the history use the same id, so a reconnecting widget dedupes.
            outbox_row.meta["message_id"] = int(message_id)
    if out.tool_audit:
        session.execute(
            text(
                """INSERT INTO tool_calls (clinic_id, turn_id, call_id, name, arguments, result, ok, latency_ms)
                   VALUES (:clinic_id, :turn_id, :call_id, :name, CAST(:arguments AS jsonb), CAST(:result AS jsonb),
                           :ok, :latency_ms)"""
            ),
            [
                {"clinic_id": snapshot.clinic_id, "turn_id": turn_id, "call_id": a.call_id, "name": a.name,
                 "arguments": json.dumps(a.arguments, default=str), "result": json.dumps(a.result, default=str),
                 "ok": a.ok, "latency_ms": a.latency_ms}
                for a in out.tool_audit
            ],
        )
    outbox_ids = insert_outbox(session, snapshot.clinic_id, outbox_rows)
    return outbox_ids, int(newest) > snapshot.last_seq
