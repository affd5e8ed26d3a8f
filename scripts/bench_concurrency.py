"""Threads or asyncio for hundreds of turns in flight: ``python scripts/bench_concurrency.py``.

The same turn-shaped work — a short transaction (lock the conversation, read its recent messages), a model call
that only waits (``--latency-ms``), a second transaction (two message rows, the conversation updated) — run by
``--in-flight`` patients in a closed loop, once with one OS thread per turn in flight (sync psycopg, a
``psycopg_pool.ConnectionPool``: how the worker runs turns) and once with one asyncio task per turn (async psycopg,
an ``AsyncConnectionPool``, uvloop: what an asyncio actor path would be).  Each mode runs in a process of its own
so its memory and CPU are its own: RSS after start-up and under load, CPU per turn (the process and Postgres),
turns/s against the bound (in flight / latency) and p99 minus the model time.

``--model openai`` makes the model call a real one through the OpenAI SDK — the sync ``OpenAI`` client shared by
the threads, the ``AsyncOpenAI`` client by the tasks, each with a keep-alive pool of one connection per turn in
flight (``worker/integrations/http_pools.py``) — against ``scripts/bench_fake_model.py`` (uvicorn, in a process
of its own), which answers after the latency; ``--model sleep`` (the default) only waits.

It isolates the concurrency model from the rest of the service (no Dramatiq, no webhook, no ORM): what it shows is
what the choice between them costs or saves, not the service's throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from scripts.bench_closed_loop import cycle_throughput  # noqa: E402
from worker.integrations.http_pools import THREADS_PER_CLIENT  # noqa: E402

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_conv (id int PRIMARY KEY, seq bigint NOT NULL DEFAULT 0, state text NOT NULL
    DEFAULT 'idle', leased_at timestamptz);
CREATE TABLE IF NOT EXISTS bench_msg (id bigserial PRIMARY KEY, conv_id int NOT NULL, role text NOT NULL,
    body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS bench_msg_conv ON bench_msg (conv_id, id);
"""
ATTACH = "UPDATE bench_conv SET leased_at = now() WHERE id = %s RETURNING seq, state"
HISTORY = "SELECT role, body FROM bench_msg WHERE conv_id = %s ORDER BY id DESC LIMIT 12"
MESSAGE = "INSERT INTO bench_msg (conv_id, role, body) VALUES (%s, %s, %s)"
COMMIT = "UPDATE bench_conv SET seq = seq + 1, state = 'answered', leased_at = NULL WHERE id = %s"
POOL_SIZE = 32  # as the worker's capped database pool


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Window:
    """Counts the turns that end inside the measured window (after the warm-up)."""

    def __init__(self, warmup_s: float, duration_s: float) -> None:
        now = time.monotonic()
        self.start, self.stop = now + warmup_s, now + warmup_s + duration_s
        self.latencies_ms: list[float] = []
        self.ends: dict[int, list[float]] = {}  # each patient's turn ends in the window, for ``cycle_throughput``
        self.errors = 0
        self.cpu_start = self.rss_loaded = 0.0
        self.cpu_end = 0.0

    def record(self, patient: int, started: float, ended: float) -> None:
        if self.start <= ended <= self.stop:  # every turn that ends inside the window (see scripts/bench.py)
            self.latencies_ms.append((ended - started) * 1000)
            self.ends.setdefault(patient, []).append(ended)

    def turns_per_s(self, patients: int) -> float:
        """By the patients' cycles (``scripts/bench_closed_loop.cycle_throughput``); the count when some patient had
        less than a whole cycle in the window."""
        by_cycles = cycle_throughput([self.ends.get(patient, []) for patient in range(patients)])
        return by_cycles if by_cycles is not None else len(self.latencies_ms) / (self.stop - self.start)


MODEL_KEY = "bench-not-a-secret"
# One short message through the typed ``create`` in both modes: the SDK's parameter transform is negligible at this
# size (the service posts its much larger request as built, ``worker/integrations/openai_model.py``).
QUESTION = [{"role": "user", "content": "What are your hours?"}]


def run_threads(
    dsn: str,
    in_flight: int,
    latency_s: float,
    window: Window,
    model_url: str | None = None,
    threads_per_client: int = 32,
) -> None:
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(dsn, min_size=4, max_size=POOL_SIZE, open=True)
    wait_for_model = _sync_model(model_url, in_flight, latency_s, threads_per_client)

    def patient(conv_id: int) -> None:
        while time.monotonic() < window.stop:
            started = time.monotonic()
            try:
                with pool.connection() as conn, conn.pipeline():
                    conn.execute(ATTACH, (conv_id,))
                    conn.execute(HISTORY, (conv_id,)).fetchall()
                wait_for_model()
                with pool.connection() as conn, conn.pipeline():
                    conn.execute(MESSAGE, (conv_id, "user", "What are your hours?"))
                    conn.execute(MESSAGE, (conv_id, "assistant", "We are open 9 to 6, Monday to Saturday."))
                    conn.execute(COMMIT, (conv_id,))
            except Exception:  # noqa: BLE001 - counted
                window.errors += 1
                continue
            window.record(conv_id, started, time.monotonic())

    threads = [threading.Thread(target=patient, args=(i,), daemon=True) for i in range(in_flight)]
    for thread in threads:
        thread.start()
    _sample(window)
    for thread in threads:
        thread.join()
    pool.close()


def _sync_model(model_url: str | None, in_flight: int, latency_s: float, threads_per_client: int) -> Any:
    """The model call of a thread: a sleep, or a chat completion through the sync OpenAI client."""
    if model_url is None:
        return lambda: time.sleep(latency_s)
    import openai

    from worker.integrations.http_pools import OpenAIClients

    # As the worker's model adapter holds them: one client per group of threads (``--threads-per-client``; as many
    # as there are threads in flight: one client for all, to compare).
    clients = OpenAIClients(
        lambda http_client: openai.OpenAI(
            api_key=MODEL_KEY,
            base_url=model_url,
            max_retries=0,
            timeout=latency_s + 30,
            http_client=http_client,
            default_headers={"x-bench-latency-ms": str(round(latency_s * 1000))},
        ),
        in_flight,
        threads_per_client=threads_per_client,
    )
    return lambda: clients.for_this_thread().chat.completions.create(model="bench", messages=QUESTION)  # type: ignore[arg-type]


def _async_model(model_url: str | None, in_flight: int, latency_s: float) -> Any:
    """The model call of a task: ``asyncio.sleep``, or a chat completion through the AsyncOpenAI client."""
    import asyncio

    if model_url is None:
        return lambda: asyncio.sleep(latency_s)
    import openai

    from worker.integrations.http_pools import keepalive_connections, openai_limits

    client = openai.AsyncOpenAI(
        api_key=MODEL_KEY,
        base_url=model_url,
        max_retries=0,
        timeout=latency_s + 30,
        http_client=openai.DefaultAsyncHttpxClient(limits=openai_limits(keepalive_connections(in_flight))),
        default_headers={"x-bench-latency-ms": str(round(latency_s * 1000))},
    )
    return lambda: client.chat.completions.create(model="bench", messages=QUESTION)  # type: ignore[arg-type]


def run_asyncio(
    dsn: str,
    in_flight: int,
    latency_s: float,
    window: Window,
    model_url: str | None = None,
    threads_per_client: int = 0,
) -> None:
    import asyncio

    from psycopg_pool import AsyncConnectionPool

    async def main() -> None:
        pool = AsyncConnectionPool(dsn, min_size=4, max_size=POOL_SIZE, open=False)
        await pool.open()
        wait_for_model = _async_model(model_url, in_flight, latency_s)  # inside the loop: the client binds to it

        async def patient(conv_id: int) -> None:
            while time.monotonic() < window.stop:
                started = time.monotonic()
                try:
                    async with pool.connection() as conn, conn.pipeline():
                        await conn.execute(ATTACH, (conv_id,))
                        await (await conn.execute(HISTORY, (conv_id,))).fetchall()
                    await wait_for_model()
                    async with pool.connection() as conn, conn.pipeline():
                        await conn.execute(MESSAGE, (conv_id, "user", "What are your hours?"))
                        await conn.execute(MESSAGE, (conv_id, "assistant", "We are open 9 to 6, Monday to Saturday."))
                        await conn.execute(COMMIT, (conv_id,))
                except Exception:  # noqa: BLE001 - counted
                    window.errors += 1
                    continue
                window.record(conv_id, started, time.monotonic())

        sampler = threading.Thread(target=_sample, args=(window,), daemon=True)
        sampler.start()
        await asyncio.gather(*(patient(i) for i in range(in_flight)))
        sampler.join()
        await pool.close()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def _sample(window: Window) -> None:
    time.sleep(max(0.0, window.start - time.monotonic()))
    window.cpu_start = time.process_time()
    time.sleep(max(0.0, window.stop - time.monotonic()))
    window.cpu_end = time.process_time()
    window.rss_loaded = _rss_mb()


def child(args: argparse.Namespace) -> None:
    """One mode, in this process; prints one JSON line."""
    from scripts import bench_measure as measure

    if args.model_url:
        import openai  # noqa: F401 - loaded before the baseline: the SDK's size is not memory per turn in flight

    rss_start = _rss_mb()
    window = Window(args.warmup, args.duration)
    postmaster = args.postmaster
    pg_cpu: list[float] = []
    model_cpu: list[float] = []  # the fake model server's (--model openai): it shares the machine's cores

    def pg_sampler() -> None:
        time.sleep(max(0.0, window.start - time.monotonic()))
        pg_cpu.append(measure.tree_cpu_ms(postmaster))
        if args.model_pid:
            model_cpu.append(measure.tree_cpu_ms(args.model_pid))
        time.sleep(max(0.0, window.stop - time.monotonic()))
        pg_cpu.append(measure.tree_cpu_ms(postmaster))
        if args.model_pid:
            model_cpu.append(measure.tree_cpu_ms(args.model_pid))

    threading.Thread(target=pg_sampler, daemon=True).start()
    runner = run_threads if args.mode == "threads" else run_asyncio
    runner(args.dsn, args.in_flight, args.latency_ms / 1000, window, args.model_url, args.threads_per_client)
    turns = len(window.latencies_ms)
    latencies = sorted(window.latencies_ms)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else 0.0
    bound = args.in_flight / (args.latency_ms / 1000)
    turns_per_s = window.turns_per_s(args.in_flight)
    print(
        json.dumps(
            {
                "mode": args.mode,
                "model": "openai" if args.model_url else "sleep",
                "threads_per_client": args.threads_per_client if args.model_url and args.mode == "threads" else None,
                "in_flight": args.in_flight,
                "latency_ms": args.latency_ms,
                "turns_per_s": round(turns_per_s, 1),
                "fraction_of_bound": round(turns_per_s / bound, 3),
                "p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else 0.0,
                "p99_minus_model_ms": round(p99 - args.latency_ms, 1),
                "errors": window.errors,
                "rss_start_mb": round(rss_start, 1),
                "rss_loaded_mb": round(window.rss_loaded, 1),
                "rss_kb_per_in_flight": round((window.rss_loaded - rss_start) * 1024 / args.in_flight, 1),
                "cpu_ms_per_turn": round((window.cpu_end - window.cpu_start) * 1000 / turns, 3) if turns else None,
                "postgres_cpu_ms_per_turn": round((pg_cpu[1] - pg_cpu[0]) / turns, 3)
                if turns and len(pg_cpu) == 2
                else None,
                "model_server_cpu_ms_per_turn": round((model_cpu[1] - model_cpu[0]) / turns, 3)
                if turns and len(model_cpu) == 2
                else None,
            }
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[500, 2000], help="one per --in-flight value")
    parser.add_argument("--modes", default="threads,asyncio")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--model",
        choices=("sleep", "openai"),
        default="sleep",
        help="the model call: a sleep, or a chat completion through the OpenAI SDK against a local fake model",
    )
    parser.add_argument(
        "--threads-per-client",
        type=int,
        default=THREADS_PER_CLIENT,
        help="threads mode with --model openai: threads sharing one OpenAI client (the worker's default; a number as "
        "large as --in-flight gives all threads one client)",
    )
    parser.add_argument("--json", type=Path)
    # Internal: the child process running one mode.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--postmaster", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-url", help=argparse.SUPPRESS)
    parser.add_argument("--model-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.in_flight, args.latency_ms = args.in_flight[0], args.latency_ms[0]
        child(args)
        return 0
    if len(args.latency_ms) != len(args.in_flight):
        parser.error("give one --latency-ms per --in-flight value")

    import psycopg

    from scripts import bench_measure as measure
    from scripts.bench import Processes, bench_infrastructure, say, start_fake_model

    results: list[dict[str, Any]] = []
    procs = Processes()
    with bench_infrastructure() as infra, contextlib.ExitStack() as cleanup:
        cleanup.callback(procs.stop_all)
        model_argv = []
        if args.model == "openai":
            url, server = start_fake_model(procs, infra, latency_ms=0)  # each call asks for its latency (a header)
            model_argv = ["--model-url", url + "/v1", "--model-pid", str(server.pid)]
        dsn = measure.libpq_url(infra.owner_url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
            conn.execute(
                "INSERT INTO bench_conv (id) SELECT g FROM generate_series(0, %s) g ON CONFLICT DO NOTHING",
                (max(args.in_flight),),
            )
        postmaster = measure.postmaster_pid(infra.data_dir)
        for in_flight, latency_ms in zip(args.in_flight, args.latency_ms, strict=True):
            for mode in args.modes.split(","):
                say(f"concurrency: {mode}, {in_flight} in flight, {latency_ms} ms model")
                output = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        "--mode",
                        mode,
                        "--dsn",
                        dsn,
                        "--postmaster",
                        str(postmaster),
                        "--in-flight",
                        str(in_flight),
                        "--latency-ms",
                        str(latency_ms),
                        "--warmup",
                        str(args.warmup),
                        "--duration",
                        str(args.duration),
                        *model_argv,
                        "--threads-per-client",
                        str(args.threads_per_client),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=os.environ.copy(),
                    cwd=REPO_ROOT,
                ).stdout
                results.append(json.loads(output.strip().splitlines()[-1]))
                say(json.dumps(results[-1]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
