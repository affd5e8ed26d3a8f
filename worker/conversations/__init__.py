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
Modules: ``attach`` (inbound events join their conversation), ``lease`` (who runs the next turn),
``snapshot`` (what a turn works from), ``commit`` (the fenced commit) and ``rows`` (the typed rows they share).
Each has its named statements at the top.
"""

from __future__ import annotations

from worker.conversations.attach import attach_and_lease, record_failed_delivery, sms_conversation
from worker.conversations.commit import commit_turn, write_safety_now
from worker.conversations.lease import quarantine
from worker.conversations.rows import Attached, Committed, Lease, PendingMessage, Snapshot, StaleTurn, TurnRecord
from worker.conversations.snapshot import lease_and_load, load_snapshot, turn_input

__all__ = [
    "Attached",
    "Committed",
    "Lease",
    "PendingMessage",
    "Snapshot",
    "StaleTurn",
    "TurnRecord",
    "attach_and_lease",
    "commit_turn",
    "lease_and_load",
    "load_snapshot",
    "quarantine",
    "record_failed_delivery",
    "sms_conversation",
    "turn_input",
    "write_safety_now",
]
