"""The benchmark's measurements (``scripts/bench_measure.py``): CPU and memory of a real process tree from /proc,
WAL and table growth from a real Postgres."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from medspa import devstack
from medspa.services import Infrastructure
from scripts import bench_measure as measure
from tests.support.infra import private_redis, wait_for

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
        assert growth.wal_bytes > 2000 * 200  # every row's payload went through the WAL (the LSN: exact at once)
        assert growth.table_bytes >= 2000 * 200  # and into the table
        # pg_stat_wal's record count comes from the backends' statistics, which a backend reports a moment after
        # its transaction (the inserting connection's, as it exits): counted once that report is in.
        counted = wait_for(
            lambda: measure.storage_growth(url, before).wal_records >= 2000,
            timeout=15,
            what="pg_stat_wal to count the insert's records",
        )
        assert counted
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute("DROP TABLE bench_measure_probe")


def _turn_with_reply(conn: psycopg.Connection, trace: str, at: float, *, sent: bool = True) -> None:
    """A text recorded at ``at`` (Unix s), its turn started 80 ms later with a 2,000 ms model inside 2,100 ms of
    work, committed 5 ms after that, and its reply sent 20 ms after the commit (unless ``sent`` is False)."""
    params = {"trace": trace, "at": at, "phone": "+1415999" + trace[-4:]}
    conn.execute(
        """INSERT INTO inbox_events (clinic_id, source, provider_event_id, payload, sender_key, trace_id, status,
                                     received_at)
           VALUES (1, 'sms', %(trace)s, '{}', 'sms:' || %(phone)s, %(trace)s, 'processed', to_timestamp(%(at)s))""",
        params,
    )
    conn.execute(
        """WITH client AS (INSERT INTO clients (clinic_id, phone_e164) VALUES (1, %(phone)s) RETURNING id),
                conversation AS (INSERT INTO conversations (clinic_id, client_id, channel)
                                 SELECT 1, id, 'sms' FROM client RETURNING id)
           INSERT INTO turns (clinic_id, conversation_id, first_seq, last_seq, state_before, state_after, outcome,
                              model_latency_ms, latency_ms, trace_id, started_at, finished_at)
           SELECT 1, id, 1, 1, 'idle', 'idle', 'replied', 2000, 2100, %(trace)s,
                  to_timestamp(%(at)s + 0.080), to_timestamp(%(at)s + 0.080 + 2.100 + 0.005)
             FROM conversation""",
        params,
    )
    conn.execute(
        """INSERT INTO outbox (clinic_id, channel, kind, to_address, body, status, trace_id, sent_at)
           VALUES (1, 'sms', 'reply', %(phone)s, 'hi', %(status)s, %(trace)s,
                   CASE WHEN %(sent)s THEN to_timestamp(%(at)s + 0.080 + 2.100 + 0.005 + 0.020) END)""",
        params | {"sent": sent, "status": "sent" if sent else "queued"},
    )


def test_turn_stages_split_the_time_beyond_the_model_and_keep_to_the_window(infra: Infrastructure) -> None:
    base = time.time() + 3600  # an hour ahead: no other test's turns fall in the window
    with measure.connect(infra.migration_database_url) as conn:
        try:
            _turn_with_reply(conn, "stage-test-0001", base)
            _turn_with_reply(conn, "stage-test-0002", base + 1)
            _turn_with_reply(conn, "stage-test-0003", base + 2, sent=False)  # no reply sent yet: not counted
            _turn_with_reply(conn, "stage-test-0004", base + 60)  # committed after the window
            stages = measure.turn_stages(conn, base, base + 30)
        finally:
            conn.rollback()  # nothing stays behind
    assert stages["turns"] == 2
    assert stages["queue_ms_p50_p90_p99"] == [80.0, 80.0, 80.0]
    assert stages["commit_ms_p50_p90_p99"] == [5.0, 5.0, 5.0]
    assert stages["send_ms_p50_p90_p99"] == [20.0, 20.0, 20.0]
    assert stages["beyond_model_ms_p50_p90_p99"] == [205.0, 205.0, 205.0]  # 80 + 100 of work + 5 + 20
    with measure.connect(infra.migration_database_url) as conn:
        assert measure.turn_stages(conn, base, base + 30) == {
            "turns": 0,
            **{f"{name}_ms_p50_p90_p99": None for name in measure.TURN_STAGES},
        }


def test_per_turn_is_none_without_turns() -> None:
    assert measure.per_turn(100.0, 0) is None
    assert measure.per_turn(None, 8) is None  # no measured window: no figure, not 0.0
    assert measure.per_turn(100.0, 8) == 12.5


def test_the_window_sampler_measures_between_the_edges_the_load_marks() -> None:
    # Burns its CPU only once told to (a line on stdin), so all of it falls inside the window.
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys\nsys.stdin.readline()\n" + BUSY_CHILD], stdin=subprocess.PIPE
    )
    events: list[str] = []
    sampler = measure.WindowSampler(
        roots=lambda: {"child": [child.pid]},
        memory_root=lambda: [child.pid],
        at_start=lambda: events.append("start"),
        at_end=lambda: events.append("end"),
    )
    try:
        sampler.begin()
        assert sampler.cpu_ms() == {} and sampler.rss_mb is None  # nothing until the window closes
        with pytest.raises(RuntimeError):
            sampler.close()  # a window never opened has no figures to give
        sampler.open()
        # The interpreter's own start-up CPU may already be counted before the window opens: what the window must
        # see is what the child burns after it, so wait on the growth since this point, not on the child's total.
        at_open = measure.tree_cpu_ms(child.pid)
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        deadline = time.monotonic() + 20
        while measure.tree_cpu_ms(child.pid) - at_open < 250:  # the child burns its CPU inside the window
            assert time.monotonic() < deadline, "the child never burned its 300 ms of CPU"
            time.sleep(0.05)
        burn_until = time.process_time() + 0.1  # and this process (the load generator's share) 100 ms of its own
        while time.process_time() < burn_until:
            pass
        sampler.close()
        assert events == ["start", "end"]
        assert sampler.cpu_ms()["child"] >= 250
        assert 100 <= sampler.cpu_ms()[measure.LOAD_GENERATOR] < sampler.cpu_ms()["child"]  # its own, not the child's
        assert sampler.seconds() > 0
        assert sampler.rss_mb is not None and sampler.rss_mb > 1
        with pytest.raises(RuntimeError):
            sampler.open()  # one window per sampler
    finally:
        child.kill()
        child.wait()


def test_the_wal_profile_names_the_table_and_index_each_record_changed(infra: Infrastructure, tmp_path: Path) -> None:
    url = infra.migration_database_url
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_wal_probe (id bigserial PRIMARY KEY, payload text)")
        # What the benchmark's --wal-profile sets at start-up: no checkpoint may recycle the range before it is read.
        conn.execute("ALTER SYSTEM SET wal_keep_size = '256MB'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        before = measure.sample_storage(url)
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute("INSERT INTO bench_wal_probe (payload) SELECT repeat('y', 100) FROM generate_series(1, 500)")
            conn.execute("UPDATE bench_wal_probe SET payload = 'z' WHERE id IN (SELECT min(id) FROM bench_wal_probe)")
        growth = measure.storage_growth(url, before)
        profile = {(r.kind, r.relation): r for r in measure.wal_profile(url, growth)}

        heap = profile[("Heap/INSERT", "bench_wal_probe")]
        index = profile[("Btree/INSERT_LEAF", "bench_wal_probe_pkey")]
        first_on_page = profile.get(("Heap/INSERT+INIT", "bench_wal_probe"))  # a row that starts a new page
        assert heap.records + (first_on_page.records if first_on_page else 0) == 500
        assert heap.bytes >= heap.records * 100  # every row's payload, whole records counted
        assert index.records >= 490  # one leaf insert per row (a few land in page splits instead)
        assert profile[("Transaction/COMMIT", "-")].records >= 2  # records without a block: under '-'
        # The range's records add up to the WAL the range spans (alignment and page headers aside).
        assert 0.9 * growth.wal_bytes <= sum(r.bytes for r in profile.values()) <= growth.wal_bytes

        out = tmp_path / "wal.tsv"
        measure.write_wal_profile(list(profile.values()), 500, out)
        lines = out.read_text().splitlines()
        assert lines[0] == "bytes/turn\trecords/turn\trecord\trelation"
        assert lines[1].endswith("\t(all)\t")
        assert lines[2].endswith("\t(workload)\t")
        assert 0 < float(lines[2].split("\t")[0]) <= float(lines[1].split("\t")[0])
        relations = lines[lines.index("bytes/turn\trecords/turn\trelation") + 1 :]
        per_relation = {line.split("\t")[2]: float(line.split("\t")[0]) for line in relations}
        assert per_relation["bench_wal_probe"] > per_relation["bench_wal_probe_pkey"] > 0
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute("DROP TABLE bench_wal_probe")
            conn.execute("ALTER SYSTEM RESET wal_keep_size")
            conn.execute("SELECT pg_reload_conf()")


def test_a_wal_profiles_workload_leaves_out_catalogs_other_databases_and_named_references() -> None:
    profile = [
        measure.WalRecords("Heap/INSERT", "messages", 2, 400),
        measure.WalRecords("Heap/INSERT", "pg_toast.pg_toast_40123", 1, 2000),  # a table of ours, TOASTed
        measure.WalRecords("Transaction/COMMIT", "-", 1, 34),
        measure.WalRecords("Heap/INSERT", "pg_statistic", 1, 300),  # autovacuum's ANALYZE
        measure.WalRecords("Heap/INSERT", "pg_toast.pg_toast_2619", 1, 500),  # pg_statistic's TOAST
        measure.WalRecords("Heap/LOCK", "(another database)", 1, 54),
        measure.WalRecords("Heap2/VISIBLE", "bench_commit", 1, 60),
    ]
    kept = [r.relation for r in profile if measure.is_workload_relation(r.relation, frozenset({"bench_commit"}))]
    assert kept == ["messages", "pg_toast.pg_toast_40123", "-"]


def test_a_wal_profile_keeps_the_wal_it_reads() -> None:
    options = ["shared_preload_libraries=pg_stat_statements"]
    measure.keep_wal_for_profile(options)
    assert options == ["shared_preload_libraries=pg_stat_statements", "wal_keep_size=4GB"]
    mine = ["wal_keep_size=1GB"]
    measure.keep_wal_for_profile(mine)
    assert mine == ["wal_keep_size=1GB"]  # one given on the command line wins


def test_the_redis_server_is_found_by_its_pidfile() -> None:
    with private_redis() as redis_server:
        pid = devstack.redis_pid(redis_server.data_dir)
        assert Path(f"/proc/{pid}/comm").read_text().strip().startswith("redis-server")
        assert pid == redis_server.pid


def test_a_report_path_gets_its_folder_and_an_unwritable_one_fails_before_any_load(tmp_path: Path) -> None:
    # bench-results/ is git-ignored: a fresh clone has no such folder, and the report must not be lost for it.
    report = tmp_path / "bench-results" / "run.json"
    measure.prepare_output(report)
    assert report.parent.is_dir() and report.exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError):
        measure.prepare_output(blocker / "run.json")  # a folder cannot be made under a file
    # The benchmark refuses such a path at start-up (argparse's exit 2), before it starts a server or runs a scenario.
    from scripts import bench

    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--only", "pipeline", "--json", str(blocker / "run.json")])
    assert exit_info.value.code == 2


def _bench_processes(bench_pid: int) -> tuple[dict[int, str], Path]:
    """The processes a running benchmark started — its descendants (the app, the workers) and the two servers
    that daemonised out of its tree (found by their pidfiles in its data folder) — and that folder."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {bench_pid}, True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= found
        grew = bool(found)
    # Its processes write their logs into the data folder (``medspa-bench-*``).
    opened: set[Path] = set()
    for pid in tree:
        with contextlib.suppress(OSError):
            opened |= {Path(os.readlink(fd)) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    data_dir = next(p for f in opened for p in f.parents if p.name.startswith("medspa-bench-"))
    servers = {measure.postmaster_pid(data_dir), devstack.redis_pid(data_dir)}
    return {pid: commands.get(pid, "") for pid in (tree | servers) - {bench_pid}}, data_dir


def test_a_benchmark_stopped_by_sigterm_stops_everything_it_started(tmp_path: Path) -> None:
    # A CI job's time limit or `kill` sends SIGTERM: the benchmark must not leave Postgres, Redis, the app or its
    # workers running (they sit in sessions of their own, out of reach of a signal to its process group).
    log = tmp_path / "bench.log"
    with log.open("wb") as out:
        bench = subprocess.Popen(
            [sys.executable, "scripts/bench.py", "--only", "idle", "--idle-seconds", "600"],
            cwd=Path(__file__).resolve().parents[2],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started: dict[int, str] = {}
    data_dir: Path | None = None
    try:
        wait_for(lambda: b"measuring" in log.read_bytes(), timeout=180, what="the idle scenario to start measuring")
        started, data_dir = _bench_processes(bench.pid)
        assert any("dramatiq" in c for c in started.values()), started  # its workers,
        assert any("postgres" in c for c in started.values()), started  # its own Postgres
        assert any("redis-server" in c for c in started.values()), started  # and Redis
        bench.terminate()
        assert bench.wait(120) == 128 + 15
        wait_for(
            lambda: not [pid for pid in started if devstack.process_alive(pid)],
            timeout=60,
            what="every process the benchmark started to exit",
        )
        assert not data_dir.exists()
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(30)
        for pid in started:  # a failed run must not leave its servers behind either
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
