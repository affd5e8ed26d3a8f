"""Benchmarks: ``python scripts/bench.py [--only NAME,...] [--json PATH]``.

Scenarios (each reported next to a reference measured in the same run):
- ingress:   the real Twilio webhook (signature, durable inbox, enqueue) vs a bare Starlette form endpoint;
- pipeline:  turns/s through webhook → worker → commit → outbox with a zero-latency model, 2 worker
             processes, vs the raw single-row commit rate of the same Postgres; new patients' first texts, or
             (``--pipeline-patients returning``) the warm-up's patients texting again;
- llm_bound: 64 patients in flight (``--concurrency``) against a model that takes 500 ms (``--model-latency-ms``):
             turns/s vs the bound (in flight / latency), end-to-end p99 minus the model time, worker memory and CPU;
             ``--model-client openai`` runs the worker's real OpenAI adapter against scripts/bench_fake_model.py;
- campaign:  fan-out of 50,000 recipients to a zero-latency SMS sink, then a run capped at 30 msg/s;
- kb_search: hybrid knowledge search p50/p99 at 10k chunks (``--kb-chunks 100000`` for 100k);
- idle:      what 2 worker processes cost with nothing to do (CPU of the workers and of Redis, Redis commands/s).

It starts everything it needs (embedded Postgres with fsync on, Redis, its own app and worker processes) in a
temporary folder and removes it afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from medspa import devstack  # noqa: E402
from medspa.services import load_seed, migrate  # noqa: E402
from scripts import bench_measure as measure  # noqa: E402
from scripts.bench_closed_loop import (  # noqa: E402
    CLINIC_NUMBER,
    TWILIO_TOKEN,
    cycle_throughput,
    run_closed_loop,
    wait_for_heartbeats,
)
from scripts.bench_kb import bench_kb_search  # noqa: E402
from scripts.bench_measure import count_rows, pct, say  # noqa: E402
from scripts.loadgen import build_post, run_load  # noqa: E402

SCENARIOS = ("ingress", "pipeline", "llm_bound", "campaign", "kb_search", "idle")


@dataclass
class BenchInfra:
    data_dir: Path
    app_url: str
    owner_url: str
    redis_url: str

    def env(self, **extra: str) -> dict[str, str]:
        return (
            os.environ.copy()
            | {
                "DATABASE_URL": self.app_url,
                "MIGRATION_DATABASE_URL": self.owner_url,
                "REDIS_URL": self.redis_url,
                "DATA_DIR": str(self.data_dir),
                "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
                "ENVIRONMENT": "test",
                "CHAT_TOKEN_SECRET": "bench",
                "STRIPE_WEBHOOK_SECRET": "whsec_bench",
                "RATE_LIMIT_PER_SENDER_PER_MIN": "1000000",
                "RATE_LIMIT_PER_SESSION_PER_MIN": "1000000",
                "LOG_LEVEL": "WARNING",
                "WORKER_METRICS_PORT": "0",
                "WEBHOOK_METRICS_PORT": "0",
                "SMS_RATE_PER_NUMBER_PER_S": "0",
                "LOCAL_EMBEDDINGS": "false",
                "SMS_PROVIDER": "sink",
                "MODEL_PROVIDER": "bench",
            }
            | extra
        )


@contextlib.contextmanager
def bench_infrastructure(*, keep: bool = False, pg_options: Sequence[str] = ()) -> Iterator[BenchInfra]:
    data_dir = Path(tempfile.mkdtemp(prefix="medspa-bench-"))
    os.chmod(data_dir, 0o755)
    try:
        say("starting embedded Postgres (fsync on) and Redis")
        pg_port = devstack.start_postgres(data_dir, fsync=True, options=pg_options)
        urls = devstack.bootstrap_database(pg_port)
        redis_port = devstack.start_redis(data_dir, appendonly=False)
        migrate(urls.owner_url)
        load_seed(urls.owner_url)
        yield BenchInfra(data_dir, urls.app_url, urls.owner_url, f"redis://127.0.0.1:{redis_port}/0")
    finally:
        devstack.stop_redis(data_dir)
        devstack.stop_postgres(data_dir)
        if keep:
            say(f"kept {data_dir} (process logs: *.log)")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        handle = open(log, "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
        for process in self.running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        self.running.clear()


def start_fake_model(procs: Processes, infra: BenchInfra, latency_ms: int) -> tuple[str, subprocess.Popen[bytes]]:
    """``scripts/bench_fake_model.py`` under uvicorn on a free port, answering after ``latency_ms``: its base URL
    once it answers, and its process."""
    port = devstack.free_port()
    argv = [sys.executable, "-m", "uvicorn", "scripts.bench_fake_model:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--no-access-log", "--log-level", "warning", "--backlog", "2048"]
    env = os.environ.copy() | {"BENCH_FAKE_MODEL_LATENCY_MS": str(latency_ms)}
    server = procs.start(argv, env, infra.data_dir / "fake-model.log")
    url = f"http://127.0.0.1:{port}"
    wait_until_answering("POST", url + "/v1/chat/completions", infra.data_dir / "fake-model.log")  # a 400: up
    return url, server


def wait_until_answering(method: str, url: str, log: Path, *, timeout_s: float = 60) -> None:
    """Until a server just started answers ``url`` with anything below 500 (a process of ours, started moments
    ago: nothing to wait on but its port)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.request(method, url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s; see {log}")


def start_app(
    procs: Processes,
    infra: BenchInfra,
    port: int,
    *,
    workers: int,
    bare: bool = False,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    target = ["scripts.bench_bare_app:app"] if bare else ["--factory", "webhooks.app:create_app"]
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        *target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = infra.env(PUBLIC_BASE_URL=f"http://127.0.0.1:{port}", **(extra_env or {}))
    app = procs.start(argv, env, infra.data_dir / f"app-{port}.log")
    path = "/webhooks/twilio/sms" if bare else "/readyz"
    wait_until_answering(
        "POST" if bare else "GET", f"http://127.0.0.1:{port}{path}", infra.data_dir / f"app-{port}.log"
    )
    return app


def start_workers(
    procs: Processes, infra: BenchInfra, *, processes: int, threads: int, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "worker.actors",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        "inbound",
        "turns",
        "outbox",
        "bulk",
        "scheduled",
    ]
    return procs.start(argv, infra.env(**(extra_env or {})), infra.data_dir / "workers.log")


def signed_sms_requests(port: int, count: int, *, senders: int | None = None, first_sender: int = 0) -> list[bytes]:
    """``count`` signed inbound texts from ``senders`` numbers (default: each from its own), the numbers counted
    from ``first_sender`` (so two batches can be different patients)."""
    validator = RequestValidator(TWILIO_TOKEN)
    url = f"http://127.0.0.1:{port}/webhooks/twilio/sms"
    senders = senders or count
    requests = []
    for i in range(count):
        form = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": "AC" + "0" * 32,
            "From": f"+1628{first_sender + i % senders:07d}",
            "To": CLINIC_NUMBER,
            "Body": "Hi! What are your hours?",
            "NumMedia": "0",
        }
        signature = validator.compute_signature(url, form)
        requests.append(
            build_post(
                "127.0.0.1", port, "/webhooks/twilio/sms", urlencode(form).encode(), {"X-Twilio-Signature": signature}
            )
        )
    return requests


# ------------------------------------------------------------------ ingress
def bench_ingress(infra: BenchInfra, args: argparse.Namespace) -> dict[str, Any]:
    procs = Processes()
    try:
        bare_port, real_port = devstack.free_port(), devstack.free_port()
        start_app(procs, infra, bare_port, workers=args.webhook_workers, bare=True)
        start_app(procs, infra, real_port, workers=args.webhook_workers)
        total = int(args.duration * 6000) + 20_000
        say(f"ingress: signing {total} requests")
        bare_requests = signed_sms_requests(bare_port, total)
        real_requests = signed_sms_requests(real_port, total, senders=5000)
        say("ingress: bare endpoint under 64 connections")
        bare = run_load("127.0.0.1", bare_port, bare_requests, connections=64, duration_s=args.duration)
        say("ingress: real webhook under 64 connections")
        real = run_load("127.0.0.1", real_port, real_requests, connections=64, duration_s=args.duration)
        recorded = count_rows(infra.owner_url, "SELECT count(*) FROM inbox_events WHERE source = 'sms'")
    finally:
        procs.stop_all()
    return {
        "rps": round(real.rps, 1),
        "p50_ms": round(real.percentile_ms(0.50), 2),
        "p99_ms": round(real.percentile_ms(0.99), 2),
        "errors": real.errors,
        "reconnects": real.reconnects,
        "bare_rps": round(bare.rps, 1),
        "bare_p50_ms": round(bare.percentile_ms(0.5), 2),
        "bare_p99_ms": round(bare.percentile_ms(0.99), 2),
        "ratio_vs_bare": round(real.rps / bare.rps, 3) if bare.rps else 0.0,
        "connections": 64,
        "webhook_workers": args.webhook_workers,
        "inbox_rows_recorded": recorded,
    }


# ------------------------------------------------------------------ raw commit reference
def raw_commit_tps(infra: BenchInfra, *, threads: int = 8, seconds: float = 5.0) -> float:
    url = measure.libpq_url(infra.owner_url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, payload text)")
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def run(index: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while time.perf_counter() < stop:
                conn.execute("INSERT INTO bench_commit (payload) VALUES ('x')")
                counts[index] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def _e2e_latencies_ms(infra: BenchInfra, *, after_inbox_id: int = 0, after_outbox_id: int = 0) -> list[float]:
    """Inbound text to sent reply, for the texts recorded after ``after_inbox_id`` and the replies queued after
    ``after_outbox_id`` (the measured ones: a returning patient's conversation holds an earlier text and reply)."""
    url = measure.libpq_url(infra.owner_url)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT extract(epoch FROM o.sent_at - i.received_at) * 1000
               FROM outbox o JOIN inbox_events i ON i.conversation_id = o.conversation_id
               WHERE o.kind = 'reply' AND o.sent_at IS NOT NULL AND i.source = 'sms' AND i.id > %s AND o.id > %s""",
            (after_inbox_id, after_outbox_id),
        ).fetchall()
    return sorted(float(r[0]) for r in rows)


def _wait_for_replies(infra: BenchInfra, sent: int, timeout_s: float = 600) -> None:
    """Until ``sent`` replies have been sent in all (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if count_rows(infra.owner_url, "SELECT count(*) FROM outbox WHERE kind = 'reply' AND status = 'sent'") >= sent:
            return
        time.sleep(0.25)


# ------------------------------------------------------------------ pipeline
def bench_pipeline(infra: BenchInfra, args: argparse.Namespace) -> dict[str, Any]:
    raw = raw_commit_tps(infra)
    say(f"pipeline: raw single-row commit rate {raw:.0f} tps")
    procs = Processes()
    try:
        port = devstack.free_port()
        app = start_app(procs, infra, port, workers=1)
        workers = start_workers(
            procs, infra, processes=2, threads=args.pipeline_threads, extra_env={"BENCH_MODEL_LATENCY_MS": "0"}
        )
        if args.pipeline_warmup:
            # Not measured: the workers open their connections, prepare their statements and warm their caches on
            # the first few hundred turns, which in a run of a few seconds weigh as much as the rest (measured:
            # 3,000 turns from cold ran at 358-409 turns/s where 8,000 ran at 478-514, the same hour).
            warmup = args.pipeline_warmup
            say(f"pipeline: warming up: {warmup} other patients text once each (not measured)")
            run_load(
                "127.0.0.1",
                port,
                signed_sms_requests(port, warmup, first_sender=5_000_000),
                connections=32,
                duration_s=600,
                warmup_s=0,
            )
            _wait_for_replies(infra, warmup)
        count = args.pipeline_turns
        before = count_rows(infra.owner_url, "SELECT count(*) FROM turns")
        sent_before = count_rows(
            infra.owner_url, "SELECT count(*) FROM outbox WHERE kind = 'reply' AND status = 'sent'"
        )
        first_inbox = count_rows(infra.owner_url, "SELECT coalesce(max(id), 0) FROM inbox_events")
        first_outbox = count_rows(infra.owner_url, "SELECT coalesce(max(id), 0) FROM outbox")
        if args.pipeline_patients == "returning":
            # The warm-up's patients text again: no client or conversation to create, a history to read.
            requests = signed_sms_requests(port, count, first_sender=5_000_000)
            say(f"pipeline: {count} of the warm-up's patients text a second time")
        else:
            requests = signed_sms_requests(port, count)
            say(f"pipeline: {count} new patients text once each")
        roots = {
            "worker": [workers.pid],
            "postgres": [measure.postmaster_pid(infra.data_dir)],
            "webhook": [app.pid],
            "redis": [devstack.redis_pid(infra.data_dir)],
        }
        storage = measure.sample_storage(infra.owner_url)
        profiling = args.statements is not None and measure.reset_statements(infra.owner_url)
        cpu_before = measure.sample_cpu(roots)
        started = time.perf_counter()
        load = run_load("127.0.0.1", port, requests, connections=32, duration_s=600, warmup_s=0)
        _wait_for_replies(infra, sent_before + count)
        elapsed = time.perf_counter() - started
        cpu_after = measure.sample_cpu(roots)
        turns = count_rows(infra.owner_url, "SELECT count(*) FROM turns") - before
        growth = measure.storage_growth(infra.owner_url, storage)
        if profiling:
            measure.write_statements(measure.read_statements(infra.owner_url), turns, args.statements)
            say(f"pipeline: statement profile per turn in {args.statements}")
        elif args.statements is not None:
            say("pipeline: no statement profile (add --pg-option shared_preload_libraries=pg_stat_statements)")
        if args.wal_profile is not None:
            measure.write_wal_profile(
                measure.wal_profile(infra.owner_url, growth),
                turns,
                args.wal_profile,
                # The raw-commit reference's table: vacuum and hint bits write to it during the phase.
                others=frozenset({"bench_commit", "bench_commit_pkey"}),
            )
            say(f"pipeline: WAL records per turn, by record type and relation, in {args.wal_profile}")
        latencies = _e2e_latencies_ms(infra, after_inbox_id=first_inbox, after_outbox_id=first_outbox)
    finally:
        procs.stop_all()
    worker_cpu = cpu_after.cpu_ms["worker"] - cpu_before.cpu_ms["worker"]
    postgres_cpu = cpu_after.cpu_ms["postgres"] - cpu_before.cpu_ms["postgres"]
    webhook_cpu = cpu_after.cpu_ms["webhook"] - cpu_before.cpu_ms["webhook"]
    redis_cpu = cpu_after.cpu_ms["redis"] - cpu_before.cpu_ms["redis"]
    bench_cpu = cpu_after.cpu_ms[measure.LOAD_GENERATOR] - cpu_before.cpu_ms[measure.LOAD_GENERATOR]
    return {
        "turns": turns,
        "warmup_turns": args.pipeline_warmup,
        "patients": args.pipeline_patients,
        "turns_per_s": round(turns / elapsed, 1),
        # Over the phase (first text to last reply): WAL from pg_current_wal_insert_lsn, table growth from relation sizes
        # (heap + indexes + TOAST of every table), CPU of the worker processes and of every Postgres process.
        "wal_bytes_per_turn": measure.per_turn(growth.wal_bytes, turns),
        "table_bytes_per_turn": measure.per_turn(growth.table_bytes, turns),
        "wal_records_per_turn": measure.per_turn(growth.wal_records, turns),
        "wal_fpi_per_turn": measure.per_turn(growth.wal_fpi, turns),
        "worker_cpu_ms_per_turn": measure.per_turn(worker_cpu, turns),
        "postgres_cpu_ms_per_turn": measure.per_turn(postgres_cpu, turns),
        "worker_cpu_cores": round(worker_cpu / 1000 / elapsed, 2),
        "postgres_cpu_cores": round(postgres_cpu / 1000 / elapsed, 2),
        # The rest of the machine's CPU per turn: the webhook app (signature, inbox insert, enqueue), Redis (the
        # queues' scripts) and the benchmark itself (load generator, polling) — with the two above, what two
        # cores must hold per turn.
        "webhook_cpu_ms_per_turn": measure.per_turn(webhook_cpu, turns),
        "redis_cpu_ms_per_turn": measure.per_turn(redis_cpu, turns),
        "bench_cpu_ms_per_turn": measure.per_turn(bench_cpu, turns),
        "raw_commit_tps": round(raw, 1),
        "p50_ms": round(pct(latencies, 0.5), 1),
        "p99_ms": round(pct(latencies, 0.99), 1),
        "webhook_errors": load.errors,
        "webhook_reconnects": load.reconnects,
        "worker_processes": 2,
        "threads_per_process": args.pipeline_threads,
    }


# ------------------------------------------------------------------ llm_bound
def bench_llm_bound(infra: BenchInfra, args: argparse.Namespace) -> dict[str, Any]:
    """Closed loop: ``concurrency`` patients each text, wait for the reply, text again.

    The patients are asyncio tasks on raw keep-alive connections (this process shares the two cores with
    the service it measures); a reply's arrival is announced by the zero-latency SMS sink over Redis pub/sub.
    """
    latency_ms, concurrency = args.model_latency_ms, args.concurrency
    procs = Processes()
    try:
        port = devstack.free_port()
        app = start_app(procs, infra, port, workers=1)
        processes = args.worker_processes
        threads = concurrency // processes + 8  # turns in flight per process plus headroom for the send actors
        model_env: dict[str, str] = {"BENCH_MODEL_LATENCY_MS": str(latency_ms)}
        model_server: subprocess.Popen[bytes] | None = None
        if args.model_client == "openai":
            # The worker's real OpenAI adapter (the SDK, its HTTP client, the agent's full request) against a fake
            # model endpoint that answers after the latency; its CPU is reported apart (it shares the cores).
            model_url, model_server = start_fake_model(procs, infra, latency_ms)
            model_env = {
                "MODEL_PROVIDER": "openai",
                "OPENAI_API_KEY": "sk-bench-not-a-secret",
                "OPENAI_BASE_URL": model_url + "/v1",
                "EMBEDDINGS_PROVIDER": "none",
            }
        workers = start_workers(
            procs, infra, processes=processes, threads=threads, extra_env=model_env | {"SMS_SINK_ANNOUNCE": "true"}
        )
        wait_for_heartbeats(infra, processes)
        postmaster = measure.postmaster_pid(infra.data_dir)
        redis_server = devstack.redis_pid(infra.data_dir)
        statements: list[tuple[Any, ...]] = []
        profiling = args.statements is not None and measure.reset_statements(infra.owner_url)
        sampler = measure.WindowSampler(
            roots=lambda: (
                {
                    "worker": [workers.pid],
                    "postgres": [postmaster],
                    "webhook": [app.pid],
                    "redis": [redis_server],
                }
                | ({"model_server": [model_server.pid]} if model_server is not None else {})
            ),
            memory_root=lambda: [workers.pid],
            at_start=(lambda: measure.reset_statements(infra.owner_url)) if profiling else None,
            at_end=(lambda: statements.extend(measure.read_statements(infra.owner_url))) if profiling else None,
        )
        say(f"llm_bound: {concurrency} patients in a closed loop against a {latency_ms} ms model")
        sampler.begin()
        loop_result = run_closed_loop(
            infra, port, concurrency, args.warmup, args.duration, on_open=sampler.open, on_close=sampler.close
        )
        latencies, completed = loop_result.latencies_ms, loop_result.completed
        stages: dict[str, Any] = {}
        if len(sampler.wall_edges) == 2:  # the window completed: its turns' stages, read before anything stops
            with measure.connect(infra.owner_url) as conn:
                stages = measure.turn_stages(conn, *sampler.wall_edges)
    finally:
        procs.stop_all()
    cpu, window = sampler.cpu_ms(), sampler.seconds()
    if statements:
        measure.write_statements(statements, completed, args.statements)
        say(f"llm_bound: statement profile of the measured window, per turn, in {args.statements}")
    counted_per_s = completed / args.duration
    # By the patients' cycle times, not the count of replies in the window (``cycle_throughput``: the count moves
    # with where the window's edges fall against the patients' phases); the count stays in the report beside it,
    # and is the figure when the window held less than a whole cycle of some patient.
    by_cycles = cycle_throughput(loop_result.replies_in_window)
    turns_per_s = by_cycles if by_cycles is not None else counted_per_s
    bound = concurrency / (latency_ms / 1000)
    latencies.sort()
    return {
        "model_latency_ms": latency_ms,
        "model_client": args.model_client,
        "concurrency": concurrency,
        "turns_per_s": round(turns_per_s, 1),
        "bound_turns_per_s": round(bound, 1),
        "fraction_of_bound": round(turns_per_s / bound, 3),
        "throughput_by": "cycles" if by_cycles is not None else "count",
        "turns_per_s_counted": round(counted_per_s, 1),
        "fraction_of_bound_counted": round(counted_per_s / bound, 3),
        "e2e_p50_ms": round(pct(latencies, 0.5), 1),
        "e2e_p99_ms": round(pct(latencies, 0.99), 1),
        "e2e_p99_minus_model_ms": round(pct(latencies, 0.99) - latency_ms, 1),
        "worker_processes": processes,
        "threads_per_process": threads,
        "turns_measured": completed,
        # Over the whole run, warm-up included: errors are webhook error statuses, requests that could not be
        # delivered, and texts not answered within 60 s; reconnects (a keep-alive connection the server had
        # closed, reopened and the text sent again) are not errors.
        "errors": loop_result.errors,
        "reconnects": loop_result.reconnects,
        # Resident memory of the worker processes (the dramatiq parent and its children) at the end of the
        # measured window, after boot with every thread started but no load, and the difference per turn in flight.
        "worker_rss_mb": round(sampler.rss_mb, 1) if sampler.rss_mb is not None else None,
        "worker_rss_idle_mb": round(sampler.idle_rss_mb, 1),
        "worker_rss_kb_per_in_flight": (
            round((sampler.rss_mb - sampler.idle_rss_mb) * 1024 / concurrency, 1)
            if sampler.rss_mb is not None
            else None
        ),
        "worker_cpu_ms_per_turn": measure.per_turn(cpu.get("worker"), completed),
        "postgres_cpu_ms_per_turn": measure.per_turn(cpu.get("postgres"), completed),
        "webhook_cpu_ms_per_turn": measure.per_turn(cpu.get("webhook"), completed),
        "redis_cpu_ms_per_turn": measure.per_turn(cpu.get("redis"), completed),
        # The closed loop itself (patients, the reply listener): it shares the two cores with the service.
        "bench_cpu_ms_per_turn": measure.per_turn(cpu.get(measure.LOAD_GENERATOR), completed),
        **(
            {"model_server_cpu_ms_per_turn": measure.per_turn(cpu.get("model_server"), completed)}
            if args.model_client == "openai"
            else {}
        ),
        "worker_cpu_cores": round(cpu["worker"] / 1000 / window, 2) if window else None,
        "postgres_cpu_cores": round(cpu["postgres"] / 1000 / window, 2) if window else None,
        # Where the time beyond the model goes, stage by stage (scripts/bench_measure.py, turn_stages).
        "stages": stages,
    }


# ------------------------------------------------------------------ idle
def bench_idle(infra: BenchInfra, args: argparse.Namespace) -> dict[str, Any]:
    """Two worker processes (the pipeline's shape) with nothing to do: what an idle replica costs the machine
    and Redis — its consumers waiting on doorbells, its heartbeats and lease checks."""
    import redis

    procs = Processes()
    client = redis.Redis.from_url(infra.redis_url)
    try:
        workers = start_workers(
            procs, infra, processes=2, threads=args.pipeline_threads, extra_env={"BENCH_MODEL_LATENCY_MS": "0"}
        )
        wait_for_heartbeats(infra, 2)
        time.sleep(5)  # past boot: every consumer thread in its idle wait
        roots = {"worker": [workers.pid], "redis": [devstack.redis_pid(infra.data_dir)]}
        client.config_resetstat()
        before, started = measure.sample_cpu(roots), time.monotonic()
        say(f"idle: measuring {args.idle_seconds:.0f} s with nothing to do")
        time.sleep(args.idle_seconds)
        after, elapsed = measure.sample_cpu(roots), time.monotonic() - started
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
        procs.stop_all()
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if isinstance(value, dict) and "calls" in value and "resetstat" not in name and name != "cmdstat_info"
    }
    return {
        "seconds": round(elapsed, 1),
        "worker_processes": 2,
        "threads_per_process": args.pipeline_threads,
        "worker_cpu_ms_per_s": round((after.cpu_ms["worker"] - before.cpu_ms["worker"]) / elapsed, 1),
        "redis_cpu_ms_per_s": round((after.cpu_ms["redis"] - before.cpu_ms["redis"]) / elapsed, 1),
        "redis_commands_per_s": round(sum(calls.values()) / elapsed, 1),
        # Dramatiq's fetch (and ack) script: one per consumer wake-up that found nothing.
        "redis_scripts_per_s": round(calls.get("evalsha", 0) / elapsed, 1),
    }


def bench_campaign(_: BenchInfra, args: argparse.Namespace) -> dict[str, Any]:
    from scripts.bench_campaign import run_campaign_bench

    say(f"campaign: {args.campaign_recipients} recipients, uncapped")
    # Its own servers per run; the settings and the statement profile (of the uncapped run, per recipient) pass on.
    fast = run_campaign_bench(
        args.campaign_recipients, None, pg_options=args.pg_option, statements=args.statements, keep=args.keep
    )
    if args.statements is not None:
        say(f"campaign: statement profile per recipient in {args.statements}")
    say("campaign: 30 msg/s cap")
    capped = run_campaign_bench(args.capped_recipients, 30.0, pg_options=args.pg_option, keep=args.keep)
    return {
        "recipients": fast["recipients"],
        "recipients_per_s": fast["recipients_per_s"],
        "cap_per_s": 30.0,
        "capped_max_rate_per_s": capped["capped_max_rate_per_s"],
        "capped_recipients": capped["recipients"],
        "uncapped_detail": fast,
        "capped_detail": capped,
    }


RUNNERS = {
    "ingress": bench_ingress,
    "pipeline": bench_pipeline,
    "llm_bound": bench_llm_bound,
    "campaign": bench_campaign,
    "kb_search": bench_kb_search,
    "idle": bench_idle,
}


def _table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| scenario | result |", "|---|---|"]
    for name, result in results.items():
        shown = {k: v for k, v in result.items() if not isinstance(v, dict)}
        lines.append(f"| {name} | " + ", ".join(f"{k}={v}" for k, v in shown.items()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios to run")
    parser.add_argument("--json", type=Path, help="write one object per scenario to this file")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per load phase")
    # 15 s: the throwaway database's tables start empty, and until autovacuum first analyzes them (its naptime
    # is 10 s) every backend keeps the plans it cached for empty tables — a cold start, not the steady state.
    parser.add_argument(
        "--warmup",
        type=float,
        default=15.0,
        help="llm_bound: seconds of load before measuring (covers the first autovacuum)",
    )
    parser.add_argument("--webhook-workers", type=int, default=1, help="uvicorn workers for both ingress apps")
    parser.add_argument("--pipeline-turns", type=int, default=3000)
    parser.add_argument(
        "--pipeline-warmup",
        type=int,
        default=1000,
        help="pipeline: turns of other new patients first, not measured (0: measure from a cold start)",
    )
    parser.add_argument(
        "--pipeline-patients",
        choices=("new", "returning"),
        default="new",
        help="pipeline: whose texts are measured — new patients (each turn creates a client and a conversation) or "
        "the warm-up's patients texting again (needs --pipeline-warmup >= --pipeline-turns)",
    )
    parser.add_argument("--pipeline-threads", type=int, default=8, help="pipeline: threads per worker process")
    parser.add_argument("--concurrency", type=int, default=64, help="llm_bound: turns in flight")
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=2,
        help="llm_bound: worker processes (threads: in flight / processes + 8)",
    )
    parser.add_argument(
        "--model-latency-ms",
        type=int,
        default=500,
        help="llm_bound: the fake model's latency per call (ms)",
    )
    parser.add_argument(
        "--model-client",
        choices=("bench", "openai"),
        default="bench",
        help="llm_bound: the worker's model adapter — the in-process bench model (sleeps), or the real OpenAI adapter "
        "through the SDK against scripts/bench_fake_model.py (what a real model's calls cost the worker)",
    )
    parser.add_argument("--campaign-recipients", type=int, default=50_000)
    parser.add_argument("--capped-recipients", type=int, default=600)
    parser.add_argument(
        "--kb-chunks", type=int, default=10_000, help="kb_search: chunks of the searched clinic (100000: ~2 min load)"
    )
    parser.add_argument("--kb-queries", type=int, default=300)
    parser.add_argument(
        "--kb-vectors",
        choices=("lowdim", "random"),
        default="lowdim",
        help="kb_search: synthetic embeddings with the structure of real ones (default) or isotropic noise",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (process logs) afterwards")
    parser.add_argument(
        "--pg-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra Postgres server setting for profiling, e.g. "
        "shared_preload_libraries=pg_stat_statements (repeatable)",
    )
    parser.add_argument(
        "--statements",
        type=Path,
        help="pipeline, llm_bound (per turn), campaign (per recipient): write every statement's calls, time, rows "
        "and WAL to this file (needs --pg-option shared_preload_libraries=pg_stat_statements)",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=20.0, help="idle: how long to measure the idle workers (seconds)"
    )
    parser.add_argument(
        "--wal-profile",
        type=Path,
        help="pipeline: write the WAL it wrote per turn, by record type and by table or index, to this file "
        "(pg_walinspect; keeps the phase's WAL with wal_keep_size)",
    )
    args = parser.parse_args(argv)
    if args.pipeline_patients == "returning" and args.pipeline_warmup < args.pipeline_turns:
        parser.error(
            f"--pipeline-patients returning needs a warm-up of at least --pipeline-turns patients "
            f"(--pipeline-warmup {args.pipeline_warmup} < --pipeline-turns {args.pipeline_turns})"
        )
    measure.prepare_outputs(parser, args.json, args.statements, args.wal_profile)
    if args.wal_profile is not None:
        measure.keep_wal_for_profile(args.pg_option)
    selected = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in selected if s not in RUNNERS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)} (choose from {', '.join(SCENARIOS)})")
    results: dict[str, dict[str, Any]] = {}
    for name in selected:
        say(f"running {name}")
        # Each scenario on fresh servers: what one leaves behind (the ingress run records ~40,000 events and
        # queues them with no worker running) must not be the next one's backlog.
        with contextlib.ExitStack() as stack:
            infra = (
                stack.enter_context(bench_infrastructure(keep=args.keep, pg_options=args.pg_option))
                if name != "campaign"
                else None
            )  # the campaign runs build their own
            results[name] = RUNNERS[name](infra, args)  # type: ignore[arg-type]
        say(f"{name}: " + json.dumps({k: v for k, v in results[name].items() if not isinstance(v, dict)}))
    print(_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    measure.stop_cleanly_on_sigterm()
    sys.exit(main())
