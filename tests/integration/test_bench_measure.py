"""The benchmark's measurements (``scripts/bench_measure.py``): CPU and memory of a real process tree from /proc,
WAL and table growth from a real Postgres."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest

from medspa.services import Infrastructure
from scripts import bench_measure as measure

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

BUSY_CHILD = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(30)\n"


def test_a_tree_counts_its_children_cpu_and_memory() -> None:
    child = subprocess.Popen([sys.executable, "-c", BUSY_CHILD])
    try:
        deadline = time.monotonic() + 20
        while measure.tree_cpu_ms(os.getpid()) - measure.tree_cpu_ms(child.pid) <= 0 or (
            measure.tree_cpu_ms(child.pid) < 250
        ):
            assert time.monotonic() < deadline, "the child never burned its 300 ms of CPU"
            time.sleep(0.05)
        assert child.pid in measure.descendants(os.getpid())
        # The parent's tree includes the live child's CPU and memory.
        assert measure.tree_cpu_ms(os.getpid()) >= measure.tree_cpu_ms(child.pid) >= 250
        assert measure.tree_rss_mb(os.getpid()) > measure.tree_rss_mb(child.pid) > 1
        assert measure.tree_rss_mb(child.pid, peak=True) >= measure.tree_rss_mb(child.pid)
    finally:
        child.kill()
        child.wait()


def test_storage_growth_sees_wal_and_table_bytes(infra: Infrastructure) -> None:
    url = infra.migration_database_url
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_measure_probe (id bigserial PRIMARY KEY, payload text)")
    try:
        before = measure.sample_storage(url)
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO bench_measure_probe (payload) SELECT repeat('x', 200) FROM generate_series(1, 2000)"
            )
        growth = measure.storage_growth(url, before)
        assert growth.wal_bytes > 2000 * 200  # every row's payload went through the WAL
        assert growth.table_bytes >= 2000 * 200  # and into the table
        assert growth.wal_records >= 2000
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute("DROP TABLE bench_measure_probe")


def test_per_turn_is_none_without_turns() -> None:
    assert measure.per_turn(100.0, 0) is None
    assert measure.per_turn(100.0, 8) == 12.5
