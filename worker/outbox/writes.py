"""Outbox writes that run in the caller's transaction: queueing rows (the turn's fenced commit, keyword
confirmations, notices, staff texts, automations, campaign batches), the history message of a text queued
outside a turn (``write_history_message``: staff replies and changes, missed-call text-backs, payment notices),
withdrawing queued ones, and the sweeper's take-back of stale claims.

One dialect (psycopg's ``%s`` / ``%(name)s``): the hot path passes its pipeline-mode connection, everyone else a
``tenant_scope`` session (the same transaction underneath, ``db.engine.psycopg_connection``).  The turn's commit
(``worker/conversations/commit.py``) queues its statements without waiting: it imports ``INSERT_OUTBOX`` /
``INSERT_REPLY`` and their parameter builders from here, so the claim rule it applies inline stays the outbox's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from db.arrays import BigintArray, BoolArray, IntArray, TextArray
from db.engine import psycopg_connection, sql_list
from domain.outbox import APPOINTMENT_GONE, CANCELLED, ORDERED_KINDS, QUEUED, SENDING, SUPPRESSED, UNKNOWN, UNSENT
from domain.segments import GSM7_BASIC, GSM7_MULTI_SEGMENT, GSM7_SINGLE_SEGMENT, count_segments
from worker.outbox.rows import OutboxRow

Conn = psycopg.Connection[Any] | Session | Connection
# Who a history message is from: the clinic's automatic texts speak as the assistant, a person as staff.
HistoryRole = Literal["assistant", "staff"]


INSERT_OUTBOX = """
INSERT INTO outbox (clinic_id, conversation_id, client_id, channel, kind, priority, to_address, from_address, body,
                    meta, dedupe_key, trace_id, segments, encoding, status, error_message)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s)
ON CONFLICT (clinic_id, dedupe_key) DO NOTHING
RETURNING id
"""
# One reply of a turn: its history message and its outbox row (carrying the message id, so a reconnecting chat
# widget dedupes the stream against the history).  The first reply is claimed for an immediate send when the
# turn's send decision said so, nothing of this conversation is still waiting to go out before it (a safety reply
# waits for nothing) and, for SMS, the client's consent and number status are still what the decision read (a
# STOP attached meanwhile voids the claim); anything else stays queued for the send actor, which decides again.
INSERT_REPLY = f"""
WITH message AS (
    INSERT INTO messages (clinic_id, conversation_id, direction, role, body, channel, turn_id, meta)
    VALUES (%(clinic)s::bigint, %(conversation)s::bigint, 'outbound', 'assistant', %(history_body)s,
            %(channel)s::text, currval('turns_id_seq'), %(message_meta)s::jsonb)
    RETURNING id
), claim AS MATERIALIZED (
    SELECT %(claim)s::bool
           AND (NOT %(in_order)s::bool OR NOT EXISTS (
                    SELECT 1 FROM outbox o
                    WHERE o.conversation_id = %(conversation)s::bigint AND o.channel = %(channel)s::text
                      AND o.status IN {sql_list(UNSENT)} AND o.kind IN {sql_list(ORDERED_KINDS)}
                      AND (o.not_before IS NULL OR o.not_before <= now())))
           AND (%(channel)s::text <> 'sms' OR EXISTS (
                    SELECT 1 FROM clients cl WHERE cl.id = %(client)s::bigint
                      AND cl.consent_state = %(consent)s::text AND cl.sms_status = %(sms_status)s::text))
           AS now
)
INSERT INTO outbox (clinic_id, conversation_id, client_id, channel, kind, priority, to_address, from_address, body,
                    meta, dedupe_key, trace_id, segments, encoding, status, attempts, claimed_at, claim_token)
SELECT %(clinic)s::bigint, %(conversation)s::bigint, %(client)s::bigint, %(channel)s::text, %(kind)s::text,
       %(priority)s,
       %(to)s, %(from)s, %(body)s, %(meta)s::jsonb || jsonb_build_object('message_id', message.id), %(dedupe)s,
       %(trace)s, %(segments)s, %(encoding)s,
       CASE WHEN claim.now THEN '{SENDING}' ELSE '{QUEUED}' END,
       CASE WHEN claim.now THEN 1 ELSE 0 END,
       CASE WHEN claim.now THEN now() END,
       CASE WHEN claim.now THEN %(claim_token)s::bigint END
FROM message, claim
ON CONFLICT (clinic_id, dedupe_key) DO NOTHING
RETURNING id, status, meta
"""
_QUEUE_CAMPAIGN_MESSAGES = f"""
INSERT INTO outbox (clinic_id, client_id, channel, kind, priority, to_address, from_address,
                    body, meta, dedupe_key, campaign_id, segments, encoding)
SELECT %(clinic_id)s, u.client_id, 'sms', 'campaign', %(priority)s, c.phone_e164, %(from_address)s,
       u.body, jsonb_build_object('campaign_id', %(campaign_id)s, 'marketing', true, 'footer', u.footer),
       'campaign:' || %(campaign_id)s || ':client:' || u.client_id, %(campaign_id)s, u.segments, u.encoding
FROM unnest(%(clients)s::bigint[], %(bodies)s::text[], %(footers)s::boolean[], %(segs)s::int[], %(encs)s::text[])
     AS u(client_id, body, footer, segments, encoding)
JOIN clients c ON c.id = u.client_id
ON CONFLICT (clinic_id, dedupe_key) DO UPDATE
    SET status = '{QUEUED}', body = EXCLUDED.body, meta = EXCLUDED.meta, error_message = '',
        segments = EXCLUDED.segments, encoding = EXCLUDED.encoding
    WHERE outbox.status = '{CANCELLED}' AND outbox.error_message = %(requeue_mark)s
RETURNING id, client_id
"""
_BY_DEDUPE_KEYS = "SELECT id, client_id FROM outbox WHERE clinic_id = %s AND dedupe_key = ANY(%s)"
# A sender that already claimed a row finishes it: the claim holds the row lock, and these UPDATEs re-check
# ``status = 'queued'`` after waiting for it.
_WITHDRAW_CAMPAIGN = f"""
UPDATE outbox SET status = '{CANCELLED}', error_message = %s
WHERE clinic_id = %s AND campaign_id = %s AND status = '{QUEUED}'
RETURNING id
"""
_WITHDRAW_AUTOMATIONS = f"""
UPDATE outbox SET status = '{CANCELLED}', error_message = %s
WHERE clinic_id = %s AND kind = 'automation' AND status = '{QUEUED}'
  AND meta->>'appointment_id' = %s AND meta->>'automation' <> ALL(%s)
RETURNING id
"""
_LINK_HISTORY_MESSAGE = "UPDATE outbox SET meta = meta || jsonb_build_object('message_id', %s::bigint) WHERE id = %s"
# A text queued outside a turn (a staff reply or change, a missed-call text-back, a payment notice) as the
# conversation history records it (the turn's own replies are ``INSERT_REPLY``'s).
_INSERT_HISTORY_MESSAGE = """
INSERT INTO messages (clinic_id, conversation_id, direction, role, body, channel, meta)
VALUES (%s, %s, 'outbound', %s, %s, %s, %s::jsonb)
RETURNING id
"""
# The sweeper: a claim older than the deadline is taken back ('unknown': reconciled before any re-send) ...
_TAKE_BACK_STALE_CLAIMS = f"""
UPDATE outbox SET status = '{UNKNOWN}'
WHERE id IN (SELECT id FROM outbox WHERE status = '{SENDING}'
               AND claimed_at < now() - make_interval(secs => %(after)s) LIMIT %(batch)s)
RETURNING id, kind
"""
# ... and rows waiting past the deadline are handed to a sender again, each at most once per deadline.
_MARK_DUE_FOR_RESEND = f"""
UPDATE outbox SET swept_at = now()
WHERE id IN (
    SELECT id FROM outbox
    WHERE ((status = '{QUEUED}' AND created_at < now() - make_interval(secs => %(after)s)
            AND (not_before IS NULL OR not_before <= now()))
           OR (status = '{UNKNOWN}' AND claimed_at < now() - make_interval(secs => %(after)s)
               AND (not_before IS NULL OR not_before <= now())))
      AND (swept_at IS NULL OR swept_at < now() - make_interval(secs => %(after)s))
    ORDER BY priority, id LIMIT %(batch)s)
RETURNING id, kind
"""


def segment_fields(channel: str, body: str) -> tuple[int, str]:
    """(segments, encoding) of a text, recorded on its row.  A C-speed fast path for the common case (basic
    GSM-7 characters only) — a campaign batch renders thousands."""
    if channel != "sms":
        return 1, "text"
    if GSM7_BASIC.issuperset(body):
        return (1 if len(body) <= GSM7_SINGLE_SEGMENT else -(-len(body) // GSM7_MULTI_SEGMENT)), "GSM-7"
    info = count_segments(body)
    return info.segments, info.encoding


def outbox_params(clinic_id: int, row: OutboxRow, *, suppressed_because: str = "") -> tuple[Any, ...]:
    """Parameters of ``INSERT_OUTBOX``: the row queued, or recorded as suppressed with the reason."""
    segments, encoding = segment_fields(row.channel, row.body)
    return (
        clinic_id,
        row.conversation_id,
        row.client_id,
        row.channel,
        row.kind,
        row.priority,
        row.to_address,
        row.from_address,
        row.body,
        json.dumps(row.meta),
        row.dedupe_key,
        row.trace_id,
        segments,
        encoding,
        SUPPRESSED if suppressed_because else QUEUED,
        suppressed_because,
    )


def reply_params(
    clinic_id: int,
    row: OutboxRow,
    *,
    history_body: str,
    message_meta: dict[str, Any],
    claim: bool,
    claim_token: int,
    consent_state: str,
    sms_status: str,
) -> dict[str, Any]:
    """Parameters of ``INSERT_REPLY``.  ``claim``: this reply may be claimed by the commit (the turn's first
    reply, and the turn's send decision said now); ``consent_state`` / ``sms_status``: what that decision read."""
    segments, encoding = segment_fields(row.channel, row.body)
    return {
        "clinic": clinic_id,
        "conversation": row.conversation_id,
        "client": row.client_id,
        "channel": row.channel,
        "history_body": history_body,
        "message_meta": json.dumps(message_meta),
        "priority": row.priority,
        "to": row.to_address,
        "from": row.from_address,
        "body": row.body,
        "meta": json.dumps(row.meta),
        "dedupe": row.dedupe_key,
        "trace": row.trace_id,
        "segments": segments,
        "encoding": encoding,
        "kind": row.kind,
        "claim": claim,
        "claim_token": claim_token,
        "in_order": row.kind in ORDERED_KINDS,
        "consent": consent_state,
        "sms_status": sms_status,
    }


def insert_rows(conn: Conn, clinic_id: int, rows: Sequence[OutboxRow], *, suppressed_because: str = "") -> list[int]:
    """Queue rows for sending (``queued``; with ``suppressed_because``, recorded as suppressed instead); a row
    whose dedupe key exists already is skipped.  Returns the new ids."""
    driver = psycopg_connection(conn)
    cursors = [
        driver.execute(INSERT_OUTBOX, outbox_params(clinic_id, row, suppressed_because=suppressed_because))
        for row in rows
    ]
    ids: list[int] = []
    for cursor in cursors:
        found = cursor.fetchone()
        if found is not None:
            ids.append(int(found[0]))
    return ids


@dataclass(frozen=True)
class CampaignMessage:
    """One recipient's rendered campaign text."""

    client_id: int
    body: str
    footer: bool  # carries the opt-out footer (their first marketing text)
    segments: int
    encoding: str


def queue_campaign_messages(
    conn: Conn,
    clinic_id: int,
    campaign_id: int,
    *,
    from_address: str,
    priority: int,
    messages: Sequence[CampaignMessage],
    requeue_mark: str,
) -> dict[int, int]:
    """One row per recipient (dedupe key ``campaign:{id}:client:{client}`` → at most one text per person), in
    one statement.  A row withdrawn with ``requeue_mark`` (a pause) is queued again with the new text.  Returns
    client id → outbox id: positive for a row queued now, negative for one that existed already (sent before a
    crash: link it, never send it twice)."""
    driver = psycopg_connection(conn)
    inserted = driver.execute(
        _QUEUE_CAMPAIGN_MESSAGES,
        {
            "clinic_id": clinic_id,
            "priority": priority,
            "from_address": from_address,
            "campaign_id": campaign_id,
            "clients": BigintArray(m.client_id for m in messages),
            "bodies": TextArray(m.body for m in messages),
            "footers": BoolArray(m.footer for m in messages),
            "segs": IntArray(m.segments for m in messages),
            "encs": TextArray(m.encoding for m in messages),
            "requeue_mark": requeue_mark,
        },
    ).fetchall()
    outbox_of = {int(client): int(outbox_id) for outbox_id, client in inserted}
    missing = [m.client_id for m in messages if m.client_id not in outbox_of]
    if missing:
        keys = [f"campaign:{campaign_id}:client:{client}" for client in missing]
        for outbox_id, client in driver.execute(_BY_DEDUPE_KEYS, (clinic_id, keys)).fetchall():
            outbox_of[int(client)] = -int(outbox_id)
    return outbox_of


def withdraw_campaign_messages(conn: Conn, clinic_id: int, campaign_id: int, mark: str) -> list[int]:
    """The campaign's queued rows → cancelled with ``mark``; returns their ids."""
    rows = psycopg_connection(conn).execute(_WITHDRAW_CAMPAIGN, (mark, clinic_id, campaign_id)).fetchall()
    return [int(r[0]) for r in rows]


def withdraw_automation_messages(
    conn: Conn, clinic_id: int, appointment_id: int, keep_kinds: Sequence[str] = ()
) -> int:
    """Queued automation texts about an appointment → cancelled (but those of ``keep_kinds``); returns how many."""
    rows = (
        psycopg_connection(conn)
        .execute(_WITHDRAW_AUTOMATIONS, (APPOINTMENT_GONE, clinic_id, str(int(appointment_id)), list(keep_kinds)))
        .fetchall()
    )
    return len(rows)


def link_history_message(conn: Conn, outbox_id: int, message_id: int) -> None:
    """The conversation-history message a queued text was written with (a chat widget dedupes by it)."""
    psycopg_connection(conn).execute(_LINK_HISTORY_MESSAGE, (message_id, outbox_id))


def write_history_message(
    conn: Conn,
    clinic_id: int,
    conversation_id: int,
    body: str,
    *,
    role: HistoryRole,
    channel: str,
    meta: dict[str, Any],
    outbox_id: int | None = None,
) -> int:
    """Write a text queued outside a turn into the patient's conversation (so the agent sees what they were told
    when they reply); returns the message id.  With ``outbox_id`` the queued row is linked to it
    (:func:`link_history_message`); a caller that writes the message first passes its id on the row instead."""
    driver = psycopg_connection(conn)
    found = driver.execute(
        _INSERT_HISTORY_MESSAGE, (clinic_id, conversation_id, role, body, channel, json.dumps(meta))
    ).fetchone()
    assert found is not None  # INSERT … RETURNING always returns the row
    message_id = int(found[0])
    if outbox_id is not None:
        link_history_message(driver, outbox_id, message_id)
    return message_id


def take_back_stale_claims(conn: Conn, after_s: float, batch: int) -> list[tuple[int, str]]:
    """Claims older than ``after_s`` → ``unknown`` (to reconcile); returns (id, kind) of each."""
    rows = psycopg_connection(conn).execute(_TAKE_BACK_STALE_CLAIMS, {"after": after_s, "batch": batch}).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def mark_due_for_resend(conn: Conn, after_s: float, batch: int) -> list[tuple[int, str]]:
    """Rows waiting longer than ``after_s`` (queued and due, or unknown), at most once per deadline: returns
    (id, kind) of each, for a sender."""
    rows = psycopg_connection(conn).execute(_MARK_DUE_FOR_RESEND, {"after": after_s, "batch": batch}).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]
