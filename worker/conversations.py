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

Why raw psycopg in pipeline mode (``Database.tenant_connection``): this is the
hottest code in the service and it is CPU-bound.  Statements that do not depend
on each other's results are queued and travel in one round trip; a turn costs
three short transactions (attach + lease + snapshot, commit, mark sent) plus
whatever its tools do.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg

from db.consent import record_consent
from db.engine import sql_list
from domain import compliance
from domain.appointments import OCCUPYING_STATUSES
from domain.conversation import AppointmentView, ClinicProfile, PatientProfile, TurnInput, TurnOutput
from domain.outbox import REPLY_KINDS
from domain.ports import ChatMessage
from medspa.ids import fast_int63
from worker.handoff_notify import INSERT_ALERT, alert_params
from worker.media import INSERT_MEDIA, media_params
from worker.outbox.rows import ClaimedSend, OutboxRow
from worker.outbox.writes import INSERT_OUTBOX, INSERT_REPLY, outbox_params, reply_params

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


class StaleTurn(Exception):
    """The lease was taken over (or the conversation changed) while this worker ran the turn."""


@dataclass(frozen=True)
class Lease:
    conversation_id: int
    owner: str
    version: int
    failed_turns: int
    took_over: bool = False  # the previous holder's lease had expired (it died or stalled)
    # Monotonic time taken before the transaction that took the lease: the lease is valid for LEASE_SECONDS from
    # no earlier than this (worker/leases.py keeps it alive from there).
    taken_at: float = field(default_factory=time.monotonic, compare=False)


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
    sms_status: str = "ok"  # the client's number status, with consent_state what the inline send decision reads
    trace_id: str = ""
    # Set by the turn runner to its held lease's check (worker/leases.py); handed to the brain in TurnInput.
    may_continue: Callable[[], bool] = field(default=lambda: True, repr=False)

    @property
    def last_seq(self) -> int:
        return self.pending[-1].seq if self.pending else self.answered_seq


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


@dataclass
class Attached:
    conversation_id: int
    outbox_ids: list[int] = field(default_factory=list)  # compliance replies to send after commit
    media_ids: list[int] = field(default_factory=list)  # photos recorded: to fetch and store after commit
    newly_attached: int = 0
    snapshot: Snapshot | None = None  # this worker took the lease: the turn to run
    failing: Lease | None = None  # the lease was taken, but the conversation failed too often (quarantine it)
    # (``snapshot`` is set then too: the safety screen reads the messages before anything is quarantined)


# The event — plus, for SMS, the sender's client — and the row lock on its conversation when that exists
# already (the lock serialises attaching with other attaches and with turn commits); no lock for an event that
# is no longer waiting.  ``last_inbound_seq`` is NULL when nothing was locked.
_EVENT_AND_LOCK = """
WITH event AS MATERIALIZED (
    SELECT e.source, e.payload, e.status, e.conversation_id AS done_conversation, cl.id AS client_id,
           cl.consent_state, cl.marketing_consent,
           COALESCE((e.payload->>'conversation_id')::bigint, cv.id) AS conversation_id
    FROM inbox_events e
    LEFT JOIN clients cl ON e.source = 'sms' AND cl.clinic_id = e.clinic_id AND cl.phone_e164 = e.payload->>'from'
    LEFT JOIN conversations cv ON cv.clinic_id = e.clinic_id AND cv.client_id = cl.id AND cv.channel = 'sms'
    WHERE e.id = %s
)
SELECT event.source, event.payload, event.status, event.done_conversation, event.client_id, event.consent_state,
       event.marketing_consent, locked.id, locked.last_inbound_seq
FROM event LEFT JOIN LATERAL (
    SELECT c.id, c.last_inbound_seq FROM conversations c
    WHERE c.id = event.conversation_id AND event.status = 'received'
    FOR UPDATE
) locked ON true
"""
_LOCK_CONVERSATION = "SELECT id, last_inbound_seq FROM conversations WHERE id = %s FOR UPDATE"
_SENDER_BACKLOG = """
SELECT id, payload, trace_id, provider_event_id, extract(epoch FROM received_at)::float8
FROM inbox_events
WHERE clinic_id = %s AND sender_key = (SELECT sender_key FROM inbox_events WHERE id = %s) AND status = 'received'
ORDER BY id FOR UPDATE
"""
_INSERT_INBOUND = """
INSERT INTO messages (clinic_id, conversation_id, direction, role, body, inbound_seq, channel, provider_message_id,
                      meta)
VALUES (%s, %s, 'inbound', 'user', %s, %s, %s, %s, %s::jsonb)
"""


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
) -> Attached | None:
    """Attach inbox event ``inbox_id`` — and every other recorded, unattached event of the same sender, in
    inbox id (= arrival) order — to the sender's conversation, so a backlog of one patient's texts becomes
    one turn that sees them all; then take the conversation's lease if it is free and load the snapshot.
    Commits.  Returns None when the event does not exist.  Idempotent.

    Two round trips for a returning patient: (event + conversation lock, backlog), then (writes, lease,
    snapshot reads, COMMIT).  The snapshot reads are wasted when another worker holds the lease (a burst);
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
        if locked is None:  # first contact: create the client and conversation, then take the row lock
            client_id, conversation_id, _ = _sms_conversation(conn, clinic_id, payload["from"])
            locked = conn.execute(_LOCK_CONVERSATION, (conversation_id,)).fetchone()
            if locked is None:
                raise LookupError(f"conversation {conversation_id} of inbox event {inbox_id} does not exist")
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
        inbound_rows: list[tuple[Any, ...]] = []
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
            inbound_rows.append(
                (
                    clinic_id,
                    conversation_id,
                    body,
                    last_seq + index + 1,
                    channel,
                    str(provider_event_id),
                    json.dumps(meta),
                )
            )
        conn.cursor().executemany(_INSERT_INBOUND, inbound_rows)
        for event_id, seq, urls, types in media_rows:  # linked to the messages just inserted (worker/media.py)
            params = {"clinic": clinic_id, "inbox": event_id, "conversation": conversation_id, "seq": seq}
            media_cur.append(conn.execute(INSERT_MEDIA, params | {"urls": urls, "types": types}))
        conn.execute(
            """UPDATE inbox_events SET status = 'processed', processed_at = now(), conversation_id = %s
               WHERE id = ANY(%s)""",
            (conversation_id, [int(e[0]) for e in events]),
        )
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
    queued = _QueuedSnapshot(
        conversation_id, owner, head, *_queue_snapshot_reads(conn, conversation_id, history_window), taken_at=taken_at
    )
    conn.commit()  # everything above travels with the COMMIT
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
    return _sms_conversation(conn, clinic_id, phone)


def _sms_conversation(conn: Conn, clinic_id: int, phone: str) -> tuple[int, int, str]:
    """First contact: create (or find, when another worker just did) the client and their SMS conversation."""
    client = conn.execute(
        """WITH ins AS (
               INSERT INTO clients (clinic_id, phone_e164) VALUES (%(clinic)s, %(phone)s)
               ON CONFLICT (clinic_id, phone_e164) DO NOTHING RETURNING id, consent_state)
           SELECT id, consent_state FROM ins UNION ALL
           SELECT id, consent_state FROM clients WHERE clinic_id = %(clinic)s AND phone_e164 = %(phone)s LIMIT 1""",
        {"clinic": clinic_id, "phone": phone},
    ).fetchone()
    assert client is not None
    conversation = conn.execute(
        """WITH ins AS (
               INSERT INTO conversations (clinic_id, client_id, channel) VALUES (%(clinic)s, %(client)s, 'sms')
               ON CONFLICT (clinic_id, client_id, channel) DO NOTHING RETURNING id)
           SELECT id FROM ins UNION ALL
           SELECT id FROM conversations WHERE clinic_id = %(clinic)s AND client_id = %(client)s AND channel = 'sms'
           LIMIT 1""",
        {"clinic": clinic_id, "client": client[0]},
    ).fetchone()
    assert conversation is not None
    return int(client[0]), int(conversation[0]), str(client[1])


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


# ------------------------------------------------------------------ lease
# Takes the lease when it is free or expired and something is unanswered; returns the snapshot's head too.
# ``previous`` is read with the statement's snapshot, i.e. before this update (was someone holding it?).
_TAKE_LEASE = """
UPDATE conversations c
SET lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(secs)s),
    version = c.version + 1, failed_turns = c.failed_turns + 1
FROM (SELECT id, lease_owner FROM conversations WHERE id = %(id)s) previous, clients cl
WHERE c.id = %(id)s AND previous.id = c.id AND cl.id = c.client_id
  AND c.last_inbound_seq > c.answered_seq AND (c.lease_owner IS NULL OR c.lease_expires_at < now())
RETURNING c.version, c.failed_turns, previous.lease_owner IS NOT NULL,
          c.client_id, c.channel, c.agent_state, c.slots, c.answered_seq,
          cl.phone_e164, cl.consent_state, cl.name, cl.email, cl.sms_status
"""
# Attach's version, run while this transaction holds the row lock (so ``previous`` is the row as it is now):
# moves last_inbound_seq to the attached messages and takes the lease if it is free; returns the head only
# when the lease was taken.
_ATTACH_AND_TAKE_LEASE = """
WITH previous AS MATERIALIZED (
    SELECT id, lease_owner,
           (lease_owner IS NULL OR lease_expires_at < now())
           AND COALESCE(%(seq)s::bigint, last_inbound_seq) > answered_seq AS take
    FROM conversations WHERE id = %(id)s
), updated AS (
    UPDATE conversations c
    SET last_inbound_seq = COALESCE(%(seq)s::bigint, c.last_inbound_seq),
        last_message_at = CASE WHEN %(seq)s::bigint IS NULL THEN c.last_message_at ELSE now() END,
        lease_owner = CASE WHEN previous.take THEN %(owner)s ELSE c.lease_owner END,
        lease_expires_at = CASE WHEN previous.take THEN now() + make_interval(secs => %(secs)s)
                                ELSE c.lease_expires_at END,
        version = c.version + CASE WHEN previous.take THEN 1 ELSE 0 END,
        failed_turns = c.failed_turns + CASE WHEN previous.take THEN 1 ELSE 0 END
    FROM previous
    WHERE c.id = previous.id AND (previous.take OR %(seq)s::bigint IS NOT NULL)
    RETURNING c.id, c.version, c.failed_turns, c.client_id, c.channel, c.agent_state, c.slots, c.answered_seq
)
SELECT u.version, u.failed_turns, previous.lease_owner IS NOT NULL, u.client_id, u.channel, u.agent_state, u.slots,
       u.answered_seq, cl.phone_e164, cl.consent_state, cl.name, cl.email, cl.sms_status
FROM updated u JOIN previous ON previous.id = u.id JOIN clients cl ON cl.id = u.client_id
WHERE previous.take
"""
_HEAD = """
SELECT c.version, c.failed_turns, false, c.client_id, c.channel, c.agent_state, c.slots, c.answered_seq,
       cl.phone_e164, cl.consent_state, cl.name, cl.email, cl.sms_status
FROM conversations c JOIN clients cl ON cl.id = c.client_id WHERE c.id = %s
"""


@dataclass(frozen=True)
class _Head:
    lease: Lease
    client_id: int
    channel: str
    agent_state: str
    slots: dict[str, Any]
    answered_seq: int
    phone: str | None
    consent_state: str
    name: str | None
    email: str | None
    sms_status: str


def _head(conversation_id: int, owner: str, row: tuple[Any, ...], taken_at: float) -> _Head:
    version, failed, took_over, client_id, channel, state, slots, answered, phone, consent, name, email, sms = row
    return _Head(
        Lease(conversation_id, owner, int(version), int(failed), took_over=bool(took_over), taken_at=taken_at),
        int(client_id),
        str(channel),
        str(state).lower(),
        dict(slots or {}),
        int(answered),
        phone,
        str(consent),
        name,
        email,
        str(sms),
    )


def quarantine(conn: Conn, lease: Lease) -> int:
    """Give up on messages that crashed turns repeatedly: hand the conversation to staff, stop looping.
    Returns how many messages were quarantined."""
    answered = conn.execute("SELECT answered_seq FROM conversations WHERE id = %s", (lease.conversation_id,)).fetchone()
    # RETURNING, not rowcount: on the pipeline-mode connection rowcount is unknown until the results arrive.
    updated = conn.execute(
        """UPDATE conversations SET answered_seq = last_inbound_seq, agent_state = 'handoff',
                  handoff_reason = 'automatic replies failed repeatedly; needs staff', handoff_urgency = 'normal',
                  lease_owner = NULL, lease_expires_at = NULL, failed_turns = 0
           WHERE id = %s AND version = %s AND lease_owner = %s RETURNING clinic_id""",
        (lease.conversation_id, lease.version, lease.owner),
    ).fetchone()
    if answered is None or updated is None:
        raise StaleTurn(f"lease on conversation {lease.conversation_id} was taken over")
    key = f"quarantine:{lease.conversation_id}:{lease.version}"  # staff hear about it (worker/handoff_notify.py)
    conn.execute(INSERT_ALERT, alert_params(int(updated[0]), lease.conversation_id, "normal", key))
    result = conn.execute(
        """UPDATE inbox_events SET status = 'quarantined', last_error = 'turn failed repeatedly'
           WHERE id IN (SELECT (meta->>'inbox_id')::bigint FROM messages
                        WHERE conversation_id = %s AND inbound_seq > %s)
           RETURNING id""",
        (lease.conversation_id, answered[0]),
    )
    return len(result.fetchall())


# ------------------------------------------------------------------ snapshot
# The snapshot reads take the answered mark from the row itself, so they can travel in the same round trip as
# the statement that takes the lease (which reads the same row under the same lock).
_ANSWERED = "(SELECT answered_seq FROM conversations WHERE id = %(id)s)"
_PENDING = f"""
SELECT id, inbound_seq, body, meta FROM messages
WHERE conversation_id = %(id)s AND inbound_seq > {_ANSWERED} ORDER BY conversation_id, inbound_seq
"""
_HISTORY = f"""
SELECT role, body FROM messages
WHERE conversation_id = %(id)s AND role IN ('user', 'assistant', 'staff') AND body <> ''
  AND (inbound_seq IS NULL OR inbound_seq <= {_ANSWERED})
ORDER BY conversation_id DESC, id DESC LIMIT %(n)s
"""
_UPCOMING = f"""
SELECT a.id, s.name, p.name, a.starts_at, a.ends_at, a.status
FROM appointments a LEFT JOIN services s ON s.id = a.service_id
JOIN providers p ON p.id = a.provider_id
WHERE a.client_id = (SELECT client_id FROM conversations WHERE id = %(id)s)
  AND a.starts_at > now() - interval '1 hour' AND a.status IN {sql_list(OCCUPYING_STATUSES)}
ORDER BY a.starts_at LIMIT 5
"""


@dataclass
class _QueuedSnapshot:
    """Statements sent but not yet waited for: the head (with or without taking the lease) and the reads."""

    conversation_id: int
    owner: str
    head: psycopg.Cursor[Any]
    pending: psycopg.Cursor[Any]
    history: psycopg.Cursor[Any]
    upcoming: psycopg.Cursor[Any]
    lease: Lease | None = None  # set when the caller already holds the lease (``load_snapshot``)
    taken_at: float = 0.0  # monotonic, before the transaction that takes the lease

    def result(self, clinic_id: int, quarantine_after: int | None = None) -> tuple[Snapshot | None, Lease | None]:
        """(snapshot, None) normally; (snapshot, lease) when the lease was taken by a conversation that failed too
        often (quarantine it — after the safety screen has read its messages); (None, None) when another worker
        holds the lease or nothing is unanswered."""
        row = self.head.fetchone()
        pending, history, upcoming = self.pending.fetchall(), self.history.fetchall(), self.upcoming.fetchall()
        if row is None:
            return None, None
        head = _head(self.conversation_id, self.owner, row, self.taken_at)
        if self.lease is not None:
            head = replace(head, lease=self.lease)  # the lease stays the one this worker holds
        failing = head.lease if quarantine_after is not None and head.lease.failed_turns > quarantine_after else None
        return Snapshot(
            lease=head.lease,
            clinic_id=clinic_id,
            client_id=head.client_id,
            channel=head.channel,
            client_phone=head.phone,
            consent_state=head.consent_state,
            agent_state=head.agent_state,
            slots=head.slots,
            answered_seq=head.answered_seq,
            pending=[PendingMessage(int(r[0]), int(r[1]), r[2], r[3] or {}) for r in pending],
            history=[
                ChatMessage(role="assistant" if role == "staff" else role, content=body)
                for role, body in reversed(history)
            ],
            upcoming=[AppointmentView(int(r[0]), r[1] or "", r[2] or "", r[3], r[4], r[5]) for r in upcoming],
            client_name=head.name,
            client_email=head.email,
            sms_status=head.sms_status,
        ), failing


_Cursor = psycopg.Cursor[Any]


def _queue_snapshot_reads(conn: Conn, conversation_id: int, history_window: int) -> tuple[_Cursor, _Cursor, _Cursor]:
    params = {"id": conversation_id, "n": history_window}
    return conn.execute(_PENDING, params), conn.execute(_HISTORY, params), conn.execute(_UPCOMING, params)


def _queue_lease_and_snapshot(
    conn: Conn, conversation_id: int, owner: str, lease_seconds: int, history_window: int
) -> _QueuedSnapshot:
    taken_at = time.monotonic()
    head = conn.execute(_TAKE_LEASE, {"id": conversation_id, "owner": owner, "secs": lease_seconds})
    return _QueuedSnapshot(
        conversation_id, owner, head, *_queue_snapshot_reads(conn, conversation_id, history_window), taken_at=taken_at
    )


def lease_and_load(
    conn: Conn,
    clinic_id: int,
    conversation_id: int,
    owner: str,
    lease_seconds: int,
    history_window: int,
    quarantine_after: int,
) -> tuple[Snapshot | None, Lease | None]:
    """Take the lease and load the snapshot, in one round trip with the COMMIT.  See ``_QueuedSnapshot``."""
    queued = _queue_lease_and_snapshot(conn, conversation_id, owner, lease_seconds, history_window)
    conn.commit()
    return queued.result(clinic_id, quarantine_after)


def load_snapshot(conn: Conn, clinic_id: int, lease: Lease, history_window: int) -> Snapshot:
    """The snapshot for the next turn of a lease this worker still holds (newer messages arrived)."""
    queued = _QueuedSnapshot(
        lease.conversation_id,
        lease.owner,
        conn.execute(_HEAD, (lease.conversation_id,)),
        *_queue_snapshot_reads(conn, lease.conversation_id, history_window),
        lease=lease,
    )
    snapshot, _ = queued.result(clinic_id)
    if snapshot is None:
        raise StaleTurn(f"conversation {lease.conversation_id} is gone")
    return snapshot


def turn_input(snapshot: Snapshot, clinic: ClinicProfile, now: datetime, trace_id: str) -> TurnInput:
    return TurnInput(
        clinic=clinic,
        patient=PatientProfile(
            client_id=snapshot.client_id,
            name=snapshot.client_name,
            email=snapshot.client_email,
            consent_state=snapshot.consent_state,
            upcoming=tuple(snapshot.upcoming),
        ),
        conversation_id=snapshot.lease.conversation_id,
        channel=snapshot.channel,
        agent_state=snapshot.agent_state,
        slots=snapshot.slots,
        history=tuple(snapshot.history),
        new_messages=tuple(m.body for m in snapshot.pending if "compliance" not in m.meta),
        now=now,
        trace_id=trace_id,
        may_continue=snapshot.may_continue,
    )


# ------------------------------------------------------------------ commit
@dataclass
class TurnRecord:
    output: TurnOutput
    started_at: datetime
    latency_ms: int
    worker: str
    trace_id: str


@dataclass
class Committed:
    outbox_ids: list[int]  # queued rows for the send actor (not claimed here)
    claimed: list[ClaimedSend]  # rows this commit claimed: send them now, in order
    more_pending: bool  # newer messages arrived during the turn: the lease is kept for one more turn


# The fence: nothing of a stale turn may commit.  The UPDATE matches only while this worker still holds the lease
# at the version it took; otherwise medspa_stale_turn raises (SQLSTATE MS001, migration 0003), aborting the
# transaction and everything queued behind it in the same round trip.
STALE_TURN_SQLSTATE = "MS001"
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
)
SELECT COALESCE((SELECT last_inbound_seq FROM fenced), medspa_stale_turn(%(id)s))
"""
_INSERT_TURN = """
INSERT INTO turns (clinic_id, conversation_id, first_seq, last_seq, state_before, state_after, model, prompt_tokens,
                   completion_tokens, steps, outcome, model_latency_ms, latency_ms, trace_id, worker, started_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
# Rows of this turn refer to it by the sequence's current value in this session (no round trip for the id).
_INSERT_TRANSCRIPT = """
INSERT INTO messages (clinic_id, conversation_id, direction, role, body, tool_calls, tool_call_id, channel, turn_id)
VALUES (%s, %s, 'internal', %s, %s, %s::jsonb, %s, %s, currval('turns_id_seq'))
"""
_INSERT_TOOL_CALL = """
INSERT INTO tool_calls (clinic_id, turn_id, call_id, name, arguments, result, ok, latency_ms)
VALUES (%s, currval('turns_id_seq'), %s, %s, %s::jsonb, %s::jsonb, %s, %s)
"""


def _queue_commit(
    conn: Conn,
    snapshot: Snapshot,
    record: TurnRecord,
    outbox_rows: list[OutboxRow],
    lease_seconds: int,
    claim_first_reply: bool,
    claim_token: int,
) -> tuple[_Cursor, list[tuple[OutboxRow, _Cursor]], list[_Cursor]]:
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
        },
    )
    conn.execute(
        _INSERT_TURN,
        (
            clinic_id,
            conversation_id,
            snapshot.pending[0].seq if snapshot.pending else snapshot.answered_seq,
            snapshot.last_seq,
            snapshot.agent_state,
            out.agent_state,
            out.model,
            out.usage.prompt_tokens,
            out.usage.completion_tokens,
            out.steps,
            out.outcome,
            out.model_latency_ms,
            record.latency_ms,
            record.trace_id,
            record.worker,
            record.started_at,
        ),
    )
    cursor = conn.cursor()
    if out.transcript:
        cursor.executemany(
            _INSERT_TRANSCRIPT,
            [
                (
                    clinic_id,
                    conversation_id,
                    msg.role,
                    msg.content or "",
                    json.dumps([{"id": c.id, "name": c.name, "arguments": c.arguments} for c in msg.tool_calls])
                    if msg.tool_calls
                    else None,
                    msg.tool_call_id,
                    snapshot.channel,
                )
                for msg in out.transcript
            ],
        )
    if out.tool_audit:
        cursor.executemany(
            _INSERT_TOOL_CALL,
            [
                (
                    clinic_id,
                    a.call_id,
                    a.name,
                    json.dumps(a.arguments, default=str),
                    json.dumps(a.result, default=str),
                    a.ok,
                    a.latency_ms,
                )
                for a in out.tool_audit
            ],
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
        conn.commit()  # everything travels with the COMMIT
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
