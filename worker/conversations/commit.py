"""The fenced commit of a turn: nothing of a stale turn commits; the replies, the turn and its tool calls are
queued in one round trip behind the fence.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from db.engine import commit_pipeline
from domain.conversation import Handoff, ToolAudit
from domain.outbox import REPLY_KINDS
from medspa.ids import fast_int63
from worker.conversations.rows import STALE_TURN_SQLSTATE, Committed, Conn, Cursor, Snapshot, StaleTurn, TurnRecord
from worker.handoff_notify import INSERT_ALERT, alert_params
from worker.outbox.rows import ClaimedSend, OutboxRow
from worker.outbox.writes import INSERT_OUTBOX, INSERT_REPLY, outbox_params, reply_params

# The fence and the turn's row in one statement: the conversation is updated only by the lease holder of this
# version, and the turn inserted only from that update's row — a stale turn writes neither, and
# ``medspa_stale_turn`` aborts the transaction (nothing queued after it runs).  The model's tool steps are kept
# once, on the turn (``turns.tool_calls``: call id, name, arguments, result, ok, latency, in call order; empty for
# a turn without tools; migration 0020 says why not rows of their own); the replies once, as the outbound messages.
# The brain's transcript (``TurnOutput.transcript``) repeats both, so it is not stored: as message rows it
# doubled every reply in the history the next turn reads and cost three inserts per turn.
_FENCED_UPDATE = """
WITH fenced AS (
UPDATE conversations SET
    answered_seq = %(last_seq)s, agent_state = %(state)s, slots = %(slots)s::jsonb, failed_turns = 0,
    handoff_reason = COALESCE(%(handoff_reason)s, handoff_reason),
    handoff_urgency = COALESCE(%(handoff_urgency)s, handoff_urgency),
    lease_owner = CASE WHEN last_inbound_seq > %(last_seq)s THEN lease_owner END,
    lease_expires_at = CASE WHEN last_inbound_seq > %(last_seq)s THEN now() + make_interval(secs => %(secs)s) END
WHERE id = %(id)s AND version = %(version)s AND lease_owner = %(owner)s
RETURNING last_inbound_seq
), turn AS (
INSERT INTO turns (clinic_id, conversation_id, first_seq, last_seq, state_before, state_after, model, prompt_tokens,
                   completion_tokens, steps, outcome, model_latency_ms, latency_ms, trace_id, worker, started_at,
                   tool_calls)
SELECT %(clinic)s, %(id)s, %(first_seq)s, %(last_seq)s, %(state_before)s, %(state)s, %(model)s, %(prompt_tokens)s,
       %(completion_tokens)s, %(steps)s, %(outcome)s, %(model_latency_ms)s, %(latency_ms)s, %(trace)s, %(worker)s,
       %(started_at)s, %(tool_calls)s::jsonb
FROM fenced
)
SELECT COALESCE((SELECT last_inbound_seq FROM fenced), medspa_stale_turn(%(id)s))
"""
# Later rows of this turn (its replies) refer to it by the sequence's current value in this session (no round
# trip for the id).


def _tool_calls_json(audit: Sequence[ToolAudit]) -> str:
    """The turn's ``tool_calls`` column: its tool steps in call order, each with ``ToolAudit``'s fields."""
    return json.dumps([vars(a) for a in audit], default=str)


def _queue_commit(
    conn: Conn,
    snapshot: Snapshot,
    record: TurnRecord,
    outbox_rows: list[OutboxRow],
    lease_seconds: int,
    claim_first_reply: bool,
    claim_token: int,
) -> tuple[Cursor, list[tuple[OutboxRow, Cursor]], list[Cursor]]:
    """Send (without waiting) the statements of a turn's commit; returns the cursors to read after COMMIT."""
    out = record.output
    lease = snapshot.lease
    clinic_id, conversation_id = snapshot.clinic_id, lease.conversation_id
    fence = conn.execute(
        _FENCED_UPDATE,
        {
            "id": conversation_id,
            "version": lease.version,
            "owner": lease.owner,
            "last_seq": snapshot.last_seq,
            "state": out.agent_state,
            "slots": json.dumps(out.slots, default=str),
            "handoff_reason": out.handoff.reason if out.handoff else None,
            "handoff_urgency": out.handoff.urgency if out.handoff else None,
            "secs": lease_seconds,
            "clinic": clinic_id,
            "first_seq": snapshot.pending[0].seq if snapshot.pending else snapshot.answered_seq,
            "state_before": snapshot.agent_state,
            "model": out.model,
            "prompt_tokens": out.usage.prompt_tokens,
            "completion_tokens": out.usage.completion_tokens,
            "steps": out.steps,
            "outcome": out.outcome,
            "model_latency_ms": out.model_latency_ms,
            "latency_ms": record.latency_ms,
            "trace": record.trace_id,
            "worker": record.worker,
            "started_at": record.started_at,
            "tool_calls": _tool_calls_json(out.tool_audit),
        },
    )
    reply_rows = [row for row in outbox_rows if row.kind in REPLY_KINDS]
    other_rows = [row for row in outbox_rows if row.kind not in REPLY_KINDS]
    replies: list[tuple[OutboxRow, psycopg.Cursor[Any]]] = []
    for index, reply in enumerate(out.replies):
        row = reply_rows[index] if index < len(reply_rows) else None
        message_meta = (
            {"quick_replies": [{"label": q.label, "value": q.value} for q in reply.quick_replies]}
            if reply.quick_replies
            else {}
        )
        if row is None:  # a reply with nowhere to go (no outbox row): history only
            conn.execute(
                """INSERT INTO messages (clinic_id, conversation_id, direction, role, body, channel, turn_id, meta)
                   VALUES (%s, %s, 'outbound', 'assistant', %s, %s, currval('turns_id_seq'), %s::jsonb)""",
                (clinic_id, conversation_id, reply.text, snapshot.channel, json.dumps(message_meta)),
            )
            continue
        params = reply_params(
            clinic_id,
            row,
            history_body=reply.text,
            message_meta=message_meta,
            claim=claim_first_reply and index == 0 and row.send_now,
            claim_token=claim_token,
            consent_state=snapshot.consent_state,
            sms_status=snapshot.sms_status,
        )
        replies.append((row, conn.execute(INSERT_REPLY, params)))
    other_cursors = [conn.execute(INSERT_OUTBOX, outbox_params(clinic_id, row)) for row in other_rows]
    if out.handoff is not None:  # staff hear about every handoff (worker/handoff_notify.py): the alert commits with it
        key = f"turn:{conversation_id}:{snapshot.last_seq}"
        conn.execute(INSERT_ALERT, alert_params(clinic_id, conversation_id, out.handoff.urgency, key))
    return fence, replies, other_cursors


def write_safety_now(
    conn: Conn, clinic_id: int, conversation_id: int, last_seq: int, rows: Sequence[OutboxRow], handoff: Handoff | None
) -> list[int]:
    """A safety turn's outbox rows and its staff alert, written beside a turn another worker is running
    (``worker.turns._safety_while_another_turn_runs``): no fence and no conversation update — the row is the
    lease holder's — and the same dedupe keys the turn that reads these texts will give them, so its commit
    finds them written.  The reply goes out without a history message: that turn's commit records it.  Returns
    the ids of the rows inserted (queued, for the send actor)."""
    cursors = [conn.execute(INSERT_OUTBOX, outbox_params(clinic_id, row)) for row in rows]
    if handoff is not None:
        key = f"turn:{conversation_id}:{last_seq}"
        conn.execute(INSERT_ALERT, alert_params(clinic_id, conversation_id, handoff.urgency, key))
    commit_pipeline(conn)
    return [int(found[0]) for cursor in cursors if (found := cursor.fetchone()) is not None]


def commit_turn(
    conn: Conn,
    snapshot: Snapshot,
    record: TurnRecord,
    outbox_rows: list[OutboxRow],
    lease_seconds: int,
    *,
    claim_first_reply: bool = True,
) -> Committed:
    """Write one turn's results under the fence and COMMIT, all in one round trip.  Raises ``StaleTurn`` (and
    nothing is written) when another worker took the conversation over."""
    lease = snapshot.lease
    conversation_id = lease.conversation_id
    claim_token, claim_started = fast_int63(), time.monotonic()  # before the COMMIT is sent: see ClaimedSend
    try:
        # In pipeline mode the fence's error may surface at any later statement or at the COMMIT.
        fence, replies, other_cursors = _queue_commit(
            conn, snapshot, record, outbox_rows, lease_seconds, claim_first_reply, claim_token
        )
        commit_pipeline(conn)  # everything travels with the commit (db/engine.py)
    except psycopg.Error as exc:
        if exc.sqlstate == STALE_TURN_SQLSTATE:
            raise StaleTurn(f"conversation {conversation_id} moved on (version {lease.version})") from None
        raise
    newest = fence.fetchone()
    assert newest is not None
    committed = Committed(outbox_ids=[], claimed=[], more_pending=int(newest[0]) > snapshot.last_seq)
    for row, reply_cursor in replies:
        inserted = reply_cursor.fetchone()
        if inserted is None:
            continue
        outbox_id, status, meta = int(inserted[0]), inserted[1], inserted[2]
        if status == "sending":
            committed.claimed.append(
                ClaimedSend(
                    outbox_id,
                    row.channel,
                    row.kind,
                    row.to_address,
                    row.from_address,
                    row.body,
                    meta,
                    row.conversation_id,
                    row.client_id,
                    row.trace_id,
                    claim_token,
                    claim_started,
                )
            )
        else:
            committed.outbox_ids.append(outbox_id)
    for other in other_cursors:
        found = other.fetchone()
        if found is not None:
            committed.outbox_ids.append(int(found[0]))
    return committed
