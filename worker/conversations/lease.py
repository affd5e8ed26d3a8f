"""The lease: who may run the next turn (taking it bumps ``version``, the fencing token), and quarantine of a
conversation whose turns keep failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.conversations.rows import Conn, Lease, StaleTurn
from worker.handoff_notify import INSERT_ALERT, alert_params

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
# when the lease was taken.  ``c.id = %(id)s`` as well as the join: with only the join, statistics gathered
# before the clinic had many conversations let the planner walk all of them (measured: 317 rows, 25 ms).
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
    WHERE c.id = %(id)s AND c.id = previous.id AND (previous.take OR %(seq)s::bigint IS NOT NULL)
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
