"""Recording "sent": the statement, and a per-process recorder that writes the marks of many sends at once.

After a turn's commit its reply is sent inline (``worker/sending.py``), and the row's "sent" used to be written
right then, in a transaction of its own — one transaction, one commit and one round trip per turn, after the
patient already has the text.  The last send of that inline work now hands its marks to the process's
``SentMarkRecorder``, whose thread writes every mark that arrived within ``window_s`` of the first, one
``medspa_mark_sent`` call per clinic (each its own transaction: the function scopes itself to its clinic) in one
round trip.  Measured (``scripts/bench.py --only pipeline``, eight alternating pairs): +8 % turns/s, −8 % worker
and −9 % Postgres CPU per turn; docs/performance.md, *Sent marks in batches*.

Why a late mark is safe.  The provider already has the message; until the mark lands the row stays ``sending``
under its claim.  If the process dies first, the sweeper takes the claim back as ``unknown`` once its
``claimed_at`` is ``OUTBOX_SWEEP_AFTER_S`` old, and the sender reconciles it with the provider
(``SmsSender.find_sent``) before anything is re-sent — the path of a worker killed between a provider call and
its record — so a lost mark can cost a provider lookup, never a second text.  ``medspa_mark_sent`` is not fenced
on the claim (the provider has the message, whoever holds the row), so a mark that lands after the sweep still
records it.  A mark carries the moment of its send (``SentMark.at``, stamped in ``add``), so batching never moves
``sent_at``.

Why only the last send of a batch waits.  A conversation's next row is claimed only when no earlier row of it is
unsent (``ORDERED_KINDS``); a mark still waiting in front of it would push that row to the send actor.  So the
sender defers only a mark nothing of its own follows (``send_rows(record_later=True)``) — not when the
conversation's next turn runs right after (``worker.outbox.sender.send_in_order``'s ``more_follow``) — and the worker
writes what is still waiting when it shuts down (``worker.runtime.BuildContainerAtBoot``).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from db.arrays import BigintArray, IntArray, TextArray, TimestamptzArray
from db.engine import Database
from medspa import metrics
from worker.outbox.rows import SentMark

log = logging.getLogger(__name__)

# Not fenced on the claim: the provider has the message, whoever holds the row now (a row swept to 'unknown'
# meanwhile is then never re-claimed, and a sender that re-claimed it finds it sent when it re-verifies).
# ``medspa_mark_sent`` (migration 0019) is the UPDATE: row by row by primary key — with the batch form (``FROM
# unnest(ids)``) and statistics from before a campaign, the planner reached the rows through the clinic and status
# indexes instead, every row of the clinic still queued or sending hashed on every call (16–25 ms per 50-row chunk
# in the campaign benchmark's statement profile) — all of a chunk's rows in one call, and, alone, in autocommit:
# the function scopes its own transaction to the clinic, so a reply's record is one statement, not four.
MARK_SENT = "SELECT medspa_mark_sent(%s, %s::bigint[], %s::timestamptz[], %s::text[], %s::int[])"

WINDOW_S = 0.02  # how long the recorder waits after a first mark for others to join it (the mark is late by that)
MAX_BATCH = 1000  # marks written in one round trip at most


def mark_sent_params(clinic_id: int, sent: Sequence[SentMark]) -> tuple[Any, ...]:
    return (
        clinic_id,
        BigintArray(m.outbox_id for m in sent),
        TimestamptzArray(m.at for m in sent),
        TextArray(m.provider_id for m in sent),
        IntArray(m.segments for m in sent),
    )


class SentMarkRecorder:
    """One per worker process: writes the "sent" marks handed to ``add`` in batches (a daemon thread, started on
    first use); ``flush`` writes what is waiting now, ``close`` stops the thread after a last flush."""

    def __init__(self, database: Database, *, window_s: float = WINDOW_S, max_batch: int = MAX_BATCH) -> None:
        self.database = database
        self.window_s = window_s
        self.max_batch = max_batch
        self._waiting: list[tuple[int, SentMark]] = []
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, clinic_id: int, sent: Sequence[SentMark]) -> None:
        """Queue ``sent`` (rows of ``clinic_id`` the provider accepted) to be marked within ``window_s``."""
        now = datetime.now(UTC)
        stamped = [(clinic_id, m if m.at is not None else replace(m, at=now)) for m in sent]
        with self._ready:
            self._waiting.extend(stamped)
            closed = self._stop.is_set()
            if not closed:
                self._start()
                self._ready.notify()
        if closed:  # a send that outlived the worker's shutdown: no batch is coming, write it now
            self.flush()

    def flush(self) -> int:
        """Write every mark waiting now (in this thread); returns how many rows were marked."""
        marked = 0
        while batch := self._take():
            marked += self._write(batch)
        return marked

    def close(self) -> None:
        """Stop the thread and write what is still waiting (the worker's shutdown).  Under the lock ``add`` queues
        under: a mark queued before it is written by the flush below, one queued after by ``add`` itself."""
        with self._ready:
            self._stop.set()
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()

    def _take(self) -> list[tuple[int, SentMark]]:
        with self._ready:
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        return batch

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sent-marks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._ready:
                while not self._waiting and not self._stop.is_set():
                    self._ready.wait()
            if self._stop.wait(self.window_s):
                return  # ``close`` writes the rest
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - never let the recorder die (``_write`` already logged and counted)
                log.exception("sent-mark recorder iteration failed")

    def _write(self, batch: list[tuple[int, SentMark]]) -> int:
        by_clinic: dict[int, list[SentMark]] = defaultdict(list)
        for clinic_id, mark in batch:
            by_clinic[clinic_id].append(mark)
        marked = 0
        try:
            with self.database.autocommit_connection() as conn:
                while by_clinic:
                    clinic_id, marks = by_clinic.popitem()
                    try:
                        found = conn.execute(MARK_SENT, mark_sent_params(clinic_id, marks)).fetchone()
                    except psycopg.Error as exc:
                        self._unrecorded(clinic_id, len(marks), exc)
                        continue
                    marked += int(found[0] or 0) if found else 0
        except Exception as exc:  # noqa: BLE001 - no connection: the sweeper reconciles these rows
            for clinic_id, marks in by_clinic.items():
                self._unrecorded(clinic_id, len(marks), exc)
        return marked

    @staticmethod
    def _unrecorded(clinic_id: int, rows: int, exc: BaseException) -> None:
        metrics.sent_marks_unrecorded.inc(rows)
        log.warning(
            "sent marks not recorded; the sweeper reconciles those rows with the provider",
            extra={"clinic_id": clinic_id, "rows": rows, "error": type(exc).__name__},
        )
