"""Keeping conversation leases alive while their turns run (a heartbeat).

A turn can make several model calls of up to ``MODEL_DEADLINE_S`` each, far longer than ``LEASE_SECONDS``.
Without renewal the lease expires mid-turn, the sweeper hands the conversation to another worker, and two
turns of one conversation run at once: the fence keeps the data right (the older commit is discarded), but the
model is paid twice and replies can cross.

So each worker process runs one renewer thread that extends every lease the process holds, every
``LEASE_SECONDS / 3``, in one statement per clinic fenced on version + owner (``UPDATE ... WHERE version = :v
AND lease_owner = :me``).  A turn asks ``HeldLease.live()`` before every model call, every tool call and its
commit; it stops — no commit, no sends — once its lease is lost (another worker took the conversation over)
or can no longer be shown valid (renewals failed until it lapsed).

Why "valid until" is measured on this process's monotonic clock from *before* the renewing transaction: the
database sets ``lease_expires_at = now() + LEASE_SECONDS`` with ``now()`` no earlier than that moment, so until
then nobody else can take the lease.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from db.arrays import BigintArray
from db.engine import Database
from medspa import metrics
from worker.conversations import Lease

log = logging.getLogger(__name__)

LIVE_MARGIN_S = 1.0  # a lease this close to lapsing no longer counts as held (clock rates, the next step's start)
MIN_INTERVAL_S = 0.2

_RENEW = """
UPDATE conversations c SET lease_expires_at = now() + make_interval(secs => %(secs)s)
FROM unnest(%(ids)s::bigint[], %(versions)s::bigint[]) AS held(id, version)
WHERE c.id = held.id AND c.version = held.version AND c.lease_owner = %(owner)s
RETURNING c.id
"""


@dataclass
class HeldLease:
    """A lease a running turn holds, kept alive by the ``LeaseKeeper``."""

    clinic_id: int
    lease: Lease
    valid_until: float  # monotonic: nobody else can take the lease before this
    lost: bool = False  # a renewal matched nothing: another worker has the conversation now
    released: bool = False  # the turn's commit released the lease: nothing left to renew

    def release(self) -> None:
        self.released = True

    def live(self) -> bool:
        return not self.lost and time.monotonic() < self.valid_until - LIVE_MARGIN_S


class LeaseKeeper:
    """One per worker process: renews every ``HeldLease`` registered with ``holding`` (a daemon thread, started
    on first use, stopped by ``close``)."""

    def __init__(self, database: Database, lease_seconds: float, *, interval_s: float | None = None) -> None:
        self.database = database
        self.lease_seconds = float(lease_seconds)
        self.interval_s = max(MIN_INTERVAL_S, interval_s if interval_s is not None else lease_seconds / 3)
        self._held: dict[int, HeldLease] = {}  # by id(HeldLease): one conversation can be held twice for a moment
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def holding(self, clinic_id: int, lease: Lease) -> Iterator[HeldLease]:
        """Keep ``lease`` (taken at ``lease.taken_at``, monotonic) alive while the block runs."""
        held = HeldLease(clinic_id, lease, lease.taken_at + self.lease_seconds)
        with self._lock:
            self._held[id(held)] = held
            self._start()
        try:
            yield held
        finally:
            with self._lock:
                self._held.pop(id(held), None)

    def renew(self) -> None:
        """Extend every held lease now (the renewer thread calls this every ``interval_s``)."""
        with self._lock:
            groups: dict[tuple[int, str], list[HeldLease]] = {}
            for held in self._held.values():
                if not held.lost and not held.released:
                    groups.setdefault((held.clinic_id, held.lease.owner), []).append(held)
        for (clinic_id, owner), leases in groups.items():
            started = time.monotonic()
            try:
                with self.database.tenant_connection(clinic_id) as conn:
                    renewed = {
                        int(row[0])
                        for row in conn.execute(
                            _RENEW,
                            {
                                "secs": self.lease_seconds,
                                "ids": BigintArray(h.lease.conversation_id for h in leases),
                                "versions": BigintArray(h.lease.version for h in leases),
                                "owner": owner,
                            },
                        ).fetchall()
                    }
            except Exception as exc:  # noqa: BLE001 - the database may be away: the leases lapse on their own
                log.warning(
                    "lease renewal failed; turns stop if their lease lapses",
                    extra={"clinic_id": clinic_id, "leases": len(leases), "error": type(exc).__name__},
                )
                continue
            for held in leases:
                if held.lease.conversation_id in renewed:
                    held.valid_until = started + self.lease_seconds
                elif not held.released:  # (released meanwhile: the commit let it go, nothing was lost)
                    held.lost = True
                    metrics.leases_lost.inc()
                    log.warning(
                        "lease lost while its turn ran; the turn stops",
                        extra={"clinic_id": clinic_id, "conversation_id": held.lease.conversation_id},
                    )

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - never let the heartbeat die
                log.exception("lease keeper iteration failed")
