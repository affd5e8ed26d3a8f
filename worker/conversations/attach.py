"""Attach: inbound events join their conversation under its row lock, in arrival order (carrier keywords
recorded in the consent ledger), and the lease is taken in the same round trip when it is free.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import psycopg

from db.arrays import BigintArray, JsonbArray, TextArray
from db.consent import record_consent
from db.engine import commit_pipeline
from domain import compliance
from worker.conversations.lease import _ATTACH_AND_TAKE_LEASE
from worker.conversations.rows import Attached, Conn
from worker.conversations.snapshot import _queue_snapshot_reads, _QueuedSnapshot
from worker.media import INSERT_MEDIA, media_params
from worker.outbox.rows import OutboxRow
from worker.outbox.writes import INSERT_OUTBOX, outbox_params


# ------------------------------------------------------------------ attach
def record_failed_delivery(conn: Conn, inbox_id: int, error: str, max_attempts: int) -> str:
    """Count a failed delivery of an inbox event; quarantine it after ``max_attempts``.
    Returns 'retry', 'quarantined' or 'done' (it was handled meanwhile)."""
    found = conn.execute(
        """UPDATE inbox_events SET attempts = attempts + 1, last_error = %s,
                  status = CASE WHEN attempts + 1 >= %s THEN 'quarantined' ELSE status END
           WHERE id = %s AND status = 'received' RETURNING status""",
        (error[:200], max_attempts, inbox_id),
    ).fetchone()
    if found is None:
        return "done"
    return "quarantined" if found[0] == "quarantined" else "retry"
    # (``snapshot`` is set then too: the safety screen reads the messages before anything is quarantined)


# The event — plus, for SMS, the sender's client — and the row lock on its conversation when that exists
# already (the lock serialises attaching with other attaches and with turn commits); no lock for an event that
# is no longer waiting.  ``last_inbound_seq`` is NULL when nothing was locked.
# The sender's number is read out of the payload in a CTE of its own: under row-level security the planner may
# only push *leakproof* join conditions into an index scan of ``clients``, and one containing ``payload->>'from'``
# is not (``->>`` isn't leakproof), so joining on it directly hash-joined a sequential scan of every client of the
# clinic (measured: 2.7 ms per text at 12,000 clients, growing with the list; 0.2 ms through the index).
_EVENT_AND_LOCK = """
WITH e AS MATERIALIZED (
    SELECT id, clinic_id, source, payload, status, conversation_id, payload->>'from' AS sender
    FROM inbox_events WHERE id = %s
), event AS MATERIALIZED (
    SELECT e.source, e.payload, e.status, e.conversation_id AS done_conversation, cl.id AS client_id,
           cl.consent_state, cl.marketing_consent,
           COALESCE((e.payload->>'conversation_id')::bigint, cv.id) AS conversation_id
    FROM e
    LEFT JOIN clients cl ON e.source = 'sms' AND cl.clinic_id = e.clinic_id AND cl.phone_e164 = e.sender
    LEFT JOIN conversations cv ON cv.clinic_id = e.clinic_id AND cv.client_id = cl.id AND cv.channel = 'sms'
)
SELECT event.source, event.payload, event.status, event.done_conversation, event.client_id, event.consent_state,
       event.marketing_consent, locked.id, locked.last_inbound_seq
FROM event LEFT JOIN LATERAL (
    SELECT c.id, c.last_inbound_seq FROM conversations c
    WHERE c.id = event.conversation_id AND event.status = 'received'
    FOR UPDATE
) locked ON true
"""
_SENDER_BACKLOG = """
SELECT id, payload, trace_id, provider_event_id, extract(epoch FROM received_at)::float8
FROM inbox_events
WHERE clinic_id = %s AND sender_key = (SELECT sender_key FROM inbox_events WHERE id = %s) AND status = 'received'
ORDER BY id FOR UPDATE
"""
# The events' messages, in arrival order with their sequence numbers, and the events marked processed: one
# statement (a data-modifying CTE always runs to completion, read or not).  The usual single event by
# ``id = %(event)s``: under the generic plan a prepared statement gets, ``id = ANY(...)`` is priced at ten rows and
# lost to a scan of every event of the clinic whenever the statistics put the clinic at a row or two (the pipeline
# benchmark's first seconds, before autovacuum's first ANALYZE: 3,000 events read per text); a burst keeps ``ANY``.
_ATTACH_INBOUND_OF = """
WITH inbound AS (
    INSERT INTO messages (clinic_id, conversation_id, direction, role, body, inbound_seq, channel,
                          provider_message_id, meta)
    SELECT %(clinic)s, %(conversation)s, 'inbound', 'user', u.body, u.seq, %(channel)s, u.provider_id, u.meta
    FROM unnest(%(bodies)s::text[], %(seqs)s::bigint[], %(provider_ids)s::text[], %(metas)s::jsonb[])
         AS u(body, seq, provider_id, meta)
    ORDER BY u.seq
)
UPDATE inbox_events SET status = 'processed', processed_at = now(), conversation_id = %(conversation)s
WHERE {events}
"""
_ATTACH_INBOUND = _ATTACH_INBOUND_OF.format(events="id = %(event)s")
_ATTACH_INBOUND_BURST = _ATTACH_INBOUND_OF.format(events="id = ANY(%(events)s)")


def attach_and_lease(
    conn: Conn,
    clinic_id: int,
    inbox_id: int,
    *,
    clinic_name: str,
    clinic_phone: str,
    owner: str,
    lease_seconds: int,
    history_window: int,
    quarantine_after: int,
    now: datetime | None = None,
) -> Attached | None:
    """Attach inbox event ``inbox_id`` — and every other recorded, unattached event of the same sender, in
    inbox id (= arrival) order — to the sender's conversation, so a backlog of one patient's texts becomes
    one turn that sees them all; then take the conversation's lease if it is free and load the snapshot.
    Commits.  Returns None when the event does not exist.  Idempotent.

    Two round trips for a returning patient: (event + conversation lock, backlog), then (writes, lease,
    snapshot reads, COMMIT).  ``now``: the turn's clock, for which appointments are upcoming (None: the
    database's).  The snapshot reads are wasted when another worker holds the lease (a burst);
    they are cheap, and the common case saves a round trip."""
    taken_at = time.monotonic()  # the transaction starts about now (the lease's validity counts from here)
    event_cur = conn.execute(_EVENT_AND_LOCK, (inbox_id,))
    backlog_cur = conn.execute(_SENDER_BACKLOG, (clinic_id, inbox_id))  # after the lock, in the same round trip
    event = event_cur.fetchone()
    if event is None:
        return None
    source, payload, status, done_conversation, client_id, _consent, marketing, locked_id, locked_seq = event
    locked = (locked_id, locked_seq) if locked_id is not None else None
    events = backlog_cur.fetchall()
    if status != "received":
        return Attached(conversation_id=int(done_conversation or 0))
    if source == "sms":
        channel = "sms"
        if locked is None:  # first contact: create the client and conversation and take the row lock, together
            client_id, _, locked = _sms_conversation(conn, clinic_id, payload["from"], lock=True)
    else:
        channel = "chat"
        client_id = int(payload["client_id"])
        if locked is None:
            raise LookupError(f"conversation {payload.get('conversation_id')} of inbox event {inbox_id} does not exist")
    conversation_id, last_seq = int(locked[0]), int(locked[1])
    attached = Attached(conversation_id=conversation_id, newly_attached=len(events))
    outbox_cur: list[psycopg.Cursor[Any]] = []
    media_cur: list[psycopg.Cursor[Any]] = []
    media_rows: list[tuple[int, int, list[str], list[str]]] = []  # photos: (inbox id, seq, urls, content types)
    if events:
        bodies = TextArray()
        provider_ids = TextArray()
        metas = JsonbArray()
        for index, (event_id, event_payload, trace_id, provider_event_id, received_epoch) in enumerate(events):
            body = str(event_payload.get("body", ""))
            meta: dict[str, Any] = {"inbox_id": int(event_id), "trace_id": trace_id, "received_at": received_epoch}
            if channel == "sms" and event_payload.get("media"):
                urls, types = media_params(event_payload)
                if urls:
                    meta["media"] = len(urls)
                    media_rows.append((int(event_id), last_seq + index + 1, urls, types))
            if channel == "sms":
                # Only START-family keywords re-subscribe: a bare "yes" after STOP is dialogue (the clinic sends
                # no "reply YES to resubscribe" question, so no YES can be the answer to one).
                intent = compliance.classify_keyword(body, awaiting_opt_in=False)
                if intent is not None:
                    meta["compliance"] = intent.value
                    row = _apply_keyword(
                        conn,
                        clinic_id,
                        int(client_id),
                        conversation_id,
                        event_payload,
                        intent,
                        body,
                        clinic_name,
                        clinic_phone,
                        int(event_id),
                        trace_id,
                        marketing_granted=marketing == "granted",
                    )
                    outbox_cur.append(conn.execute(INSERT_OUTBOX, outbox_params(clinic_id, row)))
            bodies.append(body)
            provider_ids.append(str(provider_event_id))
            metas.append(json.dumps(meta))
        event_ids = [int(e[0]) for e in events]
        conn.execute(
            _ATTACH_INBOUND if len(event_ids) == 1 else _ATTACH_INBOUND_BURST,
            {
                "clinic": clinic_id,
                "conversation": conversation_id,
                "channel": channel,
                "bodies": bodies,
                "seqs": BigintArray(last_seq + index + 1 for index in range(len(events))),
                "provider_ids": provider_ids,
                "metas": metas,
                "event": event_ids[0],
                "events": BigintArray(event_ids),
            },
        )
        for event_id, seq, urls, types in media_rows:  # linked to the messages just inserted (worker/media.py)
            params = {"clinic": clinic_id, "inbox": event_id, "conversation": conversation_id, "seq": seq}
            media_cur.append(conn.execute(INSERT_MEDIA, params | {"urls": urls, "types": types}))
    # The new last_inbound_seq and the lease in one UPDATE: a second update of the row in this transaction would
    # make Postgres re-run the row's foreign-key checks (it skips them only for a row another transaction wrote).
    head = conn.execute(
        _ATTACH_AND_TAKE_LEASE,
        {
            "id": conversation_id,
            "owner": owner,
            "secs": lease_seconds,
            "seq": last_seq + len(events) if events else None,
        },
    )
    reads = _queue_snapshot_reads(conn, conversation_id, history_window, now)
    queued = _QueuedSnapshot(conversation_id, owner, head, *reads, taken_at=taken_at)
    commit_pipeline(conn)  # everything above travels with the commit (db/engine.py)
    for cursor in outbox_cur:
        found = cursor.fetchone()
        if found is not None:
            attached.outbox_ids.append(int(found[0]))
    for cursor in media_cur:
        attached.media_ids.extend(int(r[0]) for r in cursor.fetchall())
    attached.snapshot, attached.failing = queued.result(clinic_id, quarantine_after)
    return attached


def sms_conversation(conn: Conn, clinic_id: int, phone: str) -> tuple[int, int, str]:
    """The client with this number and their SMS conversation, created when new: (client, conversation, consent)."""
    client_id, consent, (conversation_id, _) = _sms_conversation(conn, clinic_id, phone, lock=False)
    return client_id, conversation_id, consent


# First contact, as three statements that travel together (one round trip in pipeline mode): each finds the client
# by its number, and each sees what the ones before it wrote in this transaction — or, after waiting on another
# worker's insert of the same number, what that worker committed (the last one runs with a snapshot taken after the
# wait, so a race with another first contact of the number — a missed call's — costs a wait, never an error).
_ADD_CLIENT = """
INSERT INTO clients (clinic_id, phone_e164) VALUES (%(clinic)s, %(phone)s) ON CONFLICT (clinic_id, phone_e164) DO NOTHING
"""
_ADD_SMS_CONVERSATION = """
INSERT INTO conversations (clinic_id, client_id, channel)
SELECT %(clinic)s, id, 'sms' FROM clients WHERE clinic_id = %(clinic)s AND phone_e164 = %(phone)s
ON CONFLICT (clinic_id, client_id, channel) DO NOTHING
"""
_SMS_CONVERSATION_OF_PHONE = """
SELECT cl.id, cl.consent_state, c.id, c.last_inbound_seq
FROM clients cl JOIN conversations c ON c.client_id = cl.id AND c.clinic_id = cl.clinic_id AND c.channel = 'sms'
WHERE cl.clinic_id = %(clinic)s AND cl.phone_e164 = %(phone)s
"""
_LOCK_SMS_CONVERSATION_OF_PHONE = _SMS_CONVERSATION_OF_PHONE + "FOR UPDATE OF c"


def _sms_conversation(conn: Conn, clinic_id: int, phone: str, *, lock: bool) -> tuple[int, str, tuple[int, int]]:
    """First contact: create (or find, when another worker just did) the client and their SMS conversation, and
    with ``lock`` take the conversation's row lock.  Returns (client, consent, (conversation, last inbound seq))."""
    params = {"clinic": clinic_id, "phone": phone}
    conn.execute(_ADD_CLIENT, params)
    conn.execute(_ADD_SMS_CONVERSATION, params)
    found = conn.execute(_LOCK_SMS_CONVERSATION_OF_PHONE if lock else _SMS_CONVERSATION_OF_PHONE, params).fetchone()
    if found is None:
        raise LookupError(f"the SMS conversation of a new number could not be created in clinic {clinic_id}")
    return int(found[0]), str(found[1]), (int(found[2]), int(found[3]))


def _apply_keyword(
    conn: Conn,
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
    *,
    marketing_granted: bool,
) -> OutboxRow:
    """STOP / START / HELP, before any model: the consent ledger and the client's state (``record_consent``, by
    the rules of ``compliance.keyword_consent``), one confirmation.  ``marketing_granted``: the client had an
    explicit marketing grant, which START restores (STOP suspended it) — and the confirmation says so."""
    phone = payload["from"]
    record_consent(conn, clinic_id, client_id, phone, compliance.keyword_consent(intent, body))
    if intent is compliance.KeywordIntent.OPT_OUT:
        reply = compliance.opt_out_confirmation(clinic_name)
    elif intent is compliance.KeywordIntent.OPT_IN:
        reply = compliance.opt_in_confirmation(clinic_name, marketing=marketing_granted)
    else:
        reply = compliance.help_reply(clinic_name, clinic_phone)
    return OutboxRow(
        channel="sms",
        kind="compliance",
        to_address=phone,
        from_address=payload.get("to", ""),
        body=reply,
        client_id=client_id,
        conversation_id=conversation_id,
        priority=0,
        dedupe_key=f"compliance:{inbox_id}",
        trace_id=trace_id,
    )
