"""What the benchmark measures besides wall time: CPU and memory of process trees (``/proc``), WAL and table growth
(``pg_current_wal_insert_lsn``, relation sizes).  Linux only, as the benchmark is.

CPU of a process tree = user + system time of every live process in it, plus what each has collected from its
reaped children (``cutime``/``cstime``): a Postgres backend that exits when its connection closes still counts,
through the postmaster.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from medspa import devstack

_TICKS = os.sysconf("SC_CLK_TCK")


def prepare_output(path: Path) -> None:
    """Make sure a report can be written to ``path`` before minutes of load are spent on it: its folder is created
    (``bench-results/`` is git-ignored, so a fresh clone has none) and the file opened for writing once.  Raises
    ``OSError`` naming the path when it cannot be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a"):
        pass


def prepare_outputs(parser: argparse.ArgumentParser, *paths: Path | None) -> None:
    """``prepare_output`` for each report path a benchmark was given; a path that cannot be written is a usage error
    (the parser exits with 2) before any server starts."""
    for path in paths:
        if path is not None:
            try:
                prepare_output(path)
            except OSError as exc:
                parser.error(f"cannot write the report to {path}: {exc.strerror or exc}")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        # The command name (field 2) may hold spaces and parentheses: split after its closing one.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu_ms(root: int) -> float:
    total = 0
    for pid in descendants(root):
        fields = _stat_fields(pid)
        if fields is not None:  # utime, stime, cutime, cstime
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total * 1000 / _TICKS


def tree_rss_mb(root: int, *, peak: bool = False) -> float:
    """Resident memory of the tree (``peak``: each process's high-water mark, VmHWM)."""
    key = "VmHWM:" if peak else "VmRSS:"
    total_kb = 0
    for pid in descendants(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key):
                    total_kb += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total_kb / 1024


def postmaster_pid(data_dir: Path) -> int:
    """The embedded Postgres's postmaster (first line of ``postmaster.pid``)."""
    pid = devstack.postmaster_pid(data_dir)
    if pid is None:
        raise RuntimeError(f"no embedded Postgres runs in {data_dir / 'pg'}")
    return pid


@dataclass
class CpuSample:
    at: float
    cpu_ms: dict[str, float]


LOAD_GENERATOR = "bench"  # this process: the load generator and the script's polling (its children not included)


def sample_cpu(roots: dict[str, list[int]]) -> CpuSample:
    """CPU each process tree of ``roots`` used so far, and this process's own (``LOAD_GENERATOR``): it shares the
    cores with what it measures, so a report names its share too."""
    cpu = {name: sum(tree_cpu_ms(pid) for pid in pids) for name, pids in roots.items()}
    cpu[LOAD_GENERATOR] = time.process_time() * 1000
    return CpuSample(time.monotonic(), cpu)


@dataclass
class StorageSample:
    wal_lsn: str
    table_bytes: int
    wal_records: int
    wal_fpi: int


_STORAGE = """SELECT pg_current_wal_insert_lsn()::text,
                     (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                      WHERE c.relkind IN ('r', 'm') AND c.relnamespace = 'public'::regnamespace),
                     w.wal_records, w.wal_fpi
              FROM pg_stat_wal w"""


def sample_storage(owner_url: str) -> StorageSample:
    """The WAL position (and pg_stat_wal's record and full-page-image counts) and the size of every table of ours
    (heap, indexes, TOAST)."""
    with connect(owner_url, autocommit=True) as conn:
        lsn, size, records, fpi = conn.execute(_STORAGE).fetchone()  # type: ignore[misc]
    return StorageSample(str(lsn), int(size), int(records), int(fpi))


@dataclass
class StorageGrowth:
    wal_bytes: int
    table_bytes: int
    wal_records: int
    wal_fpi: int  # full-page images: the first change to a page after a checkpoint logs the whole 8 KB page
    start_lsn: str = ""  # the WAL range the growth covers (``wal_profile`` reads it)
    end_lsn: str = ""


def storage_growth(owner_url: str, before: StorageSample) -> StorageGrowth:
    """WAL written and table bytes grown since ``before``."""
    after = sample_storage(owner_url)
    with connect(owner_url, autocommit=True) as conn:
        wal = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint", (after.wal_lsn, before.wal_lsn))
        wal_bytes = int(wal.fetchone()[0])  # type: ignore[index]
    return StorageGrowth(
        wal_bytes,
        after.table_bytes - before.table_bytes,
        after.wal_records - before.wal_records,
        after.wal_fpi - before.wal_fpi,
        before.wal_lsn,
        after.wal_lsn,
    )


# Which relation each WAL record changed, from pg_walinspect (contrib): a record is counted once, under the relation
# of its first block reference (an index insert under its index, a heap update under its table; a B-tree split under
# the index, though it touches three pages); records with no block (commit, multixact) under '-'.
_WAL_RECORDS = """
WITH records AS (
    SELECT start_lsn, resource_manager || '/' || record_type AS kind, record_length
      FROM pg_get_wal_records_info(%(start)s::pg_lsn, %(end)s::pg_lsn)
), first_block AS (
    SELECT DISTINCT ON (start_lsn) start_lsn, reltablespace, reldatabase, relfilenode
      FROM pg_get_wal_block_info(%(start)s::pg_lsn, %(end)s::pg_lsn, false)
     ORDER BY start_lsn, block_id
), here AS (
    SELECT oid, dattablespace FROM pg_database WHERE datname = current_database()
)
SELECT r.kind,
       CASE WHEN b.relfilenode IS NULL THEN '-'
            WHEN b.reldatabase NOT IN (0, here.oid) THEN '(another database)'
            ELSE coalesce(pg_filenode_relation(CASE WHEN b.reltablespace = here.dattablespace THEN 0
                                                    ELSE b.reltablespace END, b.relfilenode)::text,
                          '(dropped relation)')
       END AS relation,
       count(*), sum(r.record_length)
  FROM records r LEFT JOIN first_block b USING (start_lsn) CROSS JOIN here
 GROUP BY 1, 2
 ORDER BY 4 DESC
"""


@dataclass(frozen=True)
class WalRecords:
    kind: str  # resource manager / record type, e.g. 'Btree/INSERT_LEAF'
    relation: str  # the relation it changed, '-' for none
    records: int
    bytes: int  # whole records, full-page images included


def keep_wal_for_profile(pg_options: list[str]) -> None:
    """A WAL profile reads the WAL back after the phase, so no checkpoint during the phase may recycle it."""
    if not any(option.startswith("wal_keep_size=") for option in pg_options):
        pg_options.append("wal_keep_size=4GB")


def wal_profile(owner_url: str, growth: StorageGrowth, *, timeout_s: float = 10.0) -> list[WalRecords]:
    """The WAL records written over ``growth``'s range, by record type and relation (superuser: pg_walinspect).
    The range must still be on disk: start the server with ``keep_wal_for_profile``'s setting."""
    with connect(owner_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        deadline = time.monotonic() + timeout_s
        # pg_walinspect reads only flushed WAL; the range's tail may still be in the WAL writer's buffers.
        while not conn.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (growth.end_lsn,)).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() > deadline:
                raise TimeoutError(f"WAL up to {growth.end_lsn} was not flushed within {timeout_s:.0f} s")
            time.sleep(0.05)
        rows = conn.execute(_WAL_RECORDS, {"start": growth.start_lsn, "end": growth.end_lsn}).fetchall()
    return [WalRecords(str(kind), str(relation), int(count), int(size)) for kind, relation, count, size in rows]


# Postgres's own objects have OIDs below this (``FirstNormalObjectId``): a TOAST table named after one is a catalog's.
_FIRST_NORMAL_OID = 16384


def is_workload_relation(relation: str, others: frozenset[str] = frozenset()) -> bool:
    """Whether a profile's relation is the measured workload's: not a system catalog (autovacuum's statistics,
    ``pg_class`` updates) or a catalog's TOAST, not another database's or a dropped relation, not one of ``others``
    (e.g. a reference's table).  Records without a relation (``-``: commits) are the workload's."""
    if relation in others or relation in ("(another database)", "(dropped relation)"):
        return False
    if relation.startswith("pg_toast.pg_toast_"):
        owner = relation.removeprefix("pg_toast.pg_toast_")
        return not (owner.isdigit() and int(owner) < _FIRST_NORMAL_OID)
    return not relation.startswith("pg_")


def write_wal_profile(
    profile: list[WalRecords], turns: int, path: Path, *, others: frozenset[str] = frozenset()
) -> None:
    """``wal_profile`` per turn as a tab-separated file: the total, the workload's part (``is_workload_relation``:
    without what catalogs, other databases and ``others`` wrote meanwhile — the figure to compare changes by, as
    those vary by run), every record type and relation by bytes, then each relation's total (its table's or
    index's share of the WAL)."""
    total_bytes = sum(r.bytes for r in profile)
    total_records = sum(r.records for r in profile)
    workload = [r for r in profile if is_workload_relation(r.relation, others)]
    lines = [
        "bytes/turn\trecords/turn\trecord\trelation",
        f"{total_bytes / turns:.1f}\t{total_records / turns:.2f}\t(all)\t",
        f"{sum(r.bytes for r in workload) / turns:.1f}\t{sum(r.records for r in workload) / turns:.2f}\t(workload)\t",
    ]
    lines += [f"{r.bytes / turns:.1f}\t{r.records / turns:.2f}\t{r.kind}\t{r.relation}" for r in profile]
    by_relation: dict[str, list[int]] = {}
    for r in profile:
        sums = by_relation.setdefault(r.relation, [0, 0])
        sums[0] += r.bytes
        sums[1] += r.records
    lines += ["", "bytes/turn\trecords/turn\trelation"]
    lines += [
        f"{size / turns:.1f}\t{count / turns:.2f}\t{relation}"
        for relation, (size, count) in sorted(by_relation.items(), key=lambda item: -item[1][0])
    ]
    path.write_text("\n".join(lines) + "\n")


# Where a turn's time beyond the model goes, from the rows it left (joined by the trace id the webhook gave the text,
# which the turn and its reply carry).  queue: the text recorded (the inbox insert's transaction) to the turn started
# (the enqueue, Redis, a worker thread free, the attach and the lease); commit: the turn's work done to its commit
# transaction begun (the outbox rows, a pool connection, the statements queued); send: that commit to the reply
# handed to the SMS provider (the commit's round trip, the inline send); beyond_model: recorded to sent, less the
# model's time.  started_at and sent_at are the worker's clock, the rest the database's (one machine here).
_TURN_STAGES_SQL = """
WITH turn AS (
  SELECT extract(epoch FROM t.started_at - ie.received_at) * 1000 AS queue_ms,
         extract(epoch FROM t.finished_at - t.started_at) * 1000 - t.latency_ms AS commit_ms,
         extract(epoch FROM o.sent_at - t.finished_at) * 1000 AS send_ms,
         extract(epoch FROM o.sent_at - ie.received_at) * 1000 - t.model_latency_ms AS beyond_model_ms
    FROM turns t
    JOIN inbox_events ie ON ie.clinic_id = t.clinic_id AND ie.trace_id = t.trace_id
    JOIN outbox o ON o.clinic_id = t.clinic_id AND o.trace_id = t.trace_id AND o.sent_at IS NOT NULL
   WHERE t.trace_id <> '' AND t.finished_at BETWEEN to_timestamp(%(start)s) AND to_timestamp(%(end)s)
)
SELECT count(*),
       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY queue_ms),
       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY commit_ms),
       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY send_ms),
       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY beyond_model_ms)
  FROM turn
"""
TURN_STAGES = ("queue", "commit", "send", "beyond_model")


def turn_stages(conn: psycopg.Connection[Any], start: float, end: float) -> dict[str, Any]:
    """p50 / p90 / p99 (ms) of each stage of the turns committed between ``start`` and ``end`` (Unix seconds), and
    how many turns they cover; every clinic's (run it as the database owner, which row-level security lets read
    them all when it is a superuser, as the benchmark's is)."""
    row = conn.execute(_TURN_STAGES_SQL, {"start": start, "end": end}).fetchone()
    assert row is not None
    stages: dict[str, Any] = {"turns": int(row[0])}
    for name, values in zip(TURN_STAGES, row[1:], strict=True):
        stages[f"{name}_ms_p50_p90_p99"] = [round(v, 1) for v in values] if values else None
    return stages


@dataclass
class WindowSampler:
    """CPU (and worker memory) over a measured window whose edges the load itself marks: ``open`` and ``close``
    are called by the load generator at the moments it starts and stops counting (``bench_closed_loop``), so the
    CPU is divided by the turns of the same window.  (A timer of its own drifted from the load's: on a slow
    machine its closing sample could miss the end, and every CPU figure came out as 0.0.)"""

    roots: Callable[[], dict[str, list[int]]]
    memory_root: Callable[[], list[int]]
    at_start: Callable[[], object] | None = None  # run when the window opens (e.g. a statement profile's reset)
    at_end: Callable[[], object] | None = None  # and when it closes
    samples: list[CpuSample] = field(default_factory=list)
    wall_edges: list[float] = field(default_factory=list)  # Unix time of the edges: rows written in the window
    rss_mb: float | None = None
    idle_rss_mb: float = 0.0

    def begin(self) -> None:
        """Before any load: the workers' resident memory at rest."""
        self.idle_rss_mb = sum(tree_rss_mb(pid) for pid in self.memory_root())

    def open(self) -> None:
        if self.samples:
            raise RuntimeError("the measured window was opened twice")
        if self.at_start is not None:
            self.at_start()
        self.samples.append(sample_cpu(self.roots()))
        self.wall_edges.append(time.time())

    def close(self) -> None:
        if len(self.samples) != 1:
            raise RuntimeError("the measured window was closed without being opened, or twice")
        self.samples.append(sample_cpu(self.roots()))
        self.wall_edges.append(time.time())
        if self.at_end is not None:
            self.at_end()
        self.rss_mb = sum(tree_rss_mb(pid) for pid in self.memory_root())

    def cpu_ms(self) -> dict[str, float]:
        """CPU milliseconds each tree used in the window (empty when the window did not complete)."""
        if len(self.samples) < 2:
            return {}
        first, last = self.samples
        return {name: last.cpu_ms[name] - first.cpu_ms[name] for name in first.cpu_ms}

    def seconds(self) -> float:
        return self.samples[1].at - self.samples[0].at if len(self.samples) == 2 else 0.0


def per_turn(value: float | None, turns: int) -> float | Any:
    """``value`` per turn, rounded; None when there is no figure (no turns, or no measured window)."""
    return round(value / turns, 2) if turns and value is not None else None


def say(message: str) -> None:
    """Progress on stderr (the results go to stdout and ``--json``)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (0.0 when empty)."""
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def libpq_url(owner_url: str) -> str:
    """The SQLAlchemy URL of the benchmark's database as libpq (psycopg) reads it."""
    return owner_url.replace("postgresql+psycopg://", "postgresql://")


def connect(owner_url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(owner_url), autocommit=autocommit)


def count_rows(owner_url: str, sql: str) -> int:
    with connect(owner_url) as conn:
        return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]


_STATEMENTS = """
SELECT calls, total_exec_time, rows, wal_bytes, wal_records, shared_blks_hit + shared_blks_read,
       regexp_replace(query, '\\s+', ' ', 'g')
  FROM pg_stat_statements
 WHERE query !~* 'pg_stat_statements|pg_current_wal|pg_total_relation_size|pg_stat_wal'
 ORDER BY total_exec_time DESC
"""


def reset_statements(owner_url: str) -> bool:
    """Start a statement profile (pg_stat_statements, when the server preloads it); False when it doesn't."""
    with connect(owner_url, autocommit=True) as conn:
        loaded = conn.execute(
            "SELECT 'pg_stat_statements' = ANY(string_to_array(current_setting('shared_preload_libraries'), ','))"
        ).fetchone()
        if not loaded or not loaded[0]:
            return False
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")
    return True


def read_statements(owner_url: str) -> list[tuple[Any, ...]]:
    """Every statement's totals since ``reset_statements``, by execution time."""
    with connect(owner_url, autocommit=True) as conn:
        return conn.execute(_STATEMENTS).fetchall()


def write_statements(rows: list[tuple[Any, ...]], turns: int, path: Path) -> None:
    """``read_statements``' rows per turn: calls, execution ms, rows, WAL bytes and records, buffers touched;
    sorted by execution time (a tab-separated file to read with ``column -t``)."""
    lines = ["calls/turn\tms/turn\trows/turn\twal_B/turn\twal_rec/turn\tbufs/turn\tquery"]
    totals = [0.0] * 6
    for calls, ms, nrows, wal, records, bufs, query in rows:
        values = [calls, ms, nrows, float(wal), records, bufs]
        totals = [t + float(v) for t, v in zip(totals, values, strict=True)]
        lines.append("\t".join(f"{float(v) / turns:.3f}" for v in values) + "\t" + str(query)[:300])
    lines.insert(1, "\t".join(f"{t / turns:.3f}" for t in totals) + "\t(all statements)")
    path.write_text("\n".join(lines) + "\n")


def stop_cleanly_on_sigterm() -> None:
    """A benchmark stopped with SIGTERM (a CI job's time limit, ``kill``) unwinds as Ctrl-C does: every ``finally``
    runs, so the servers and processes it started are stopped and its folder removed.  Python's default for
    SIGTERM ends the process at once, and what it started (embedded Postgres, Redis, the app, the workers — each in
    a session of its own) kept running and kept its ports."""
    signal.signal(signal.SIGTERM, _exit_for_signal)


def _exit_for_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
