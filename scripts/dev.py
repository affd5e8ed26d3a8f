"""Developer and service commands: ``dev up``, ``db …``, ``chat``, ``worker``, ``webhooks``, ``scheduler``."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

from medspa.secrets import startup_settings
from medspa.settings import REPO_ROOT, get_settings
from scripts.common import CommandError


def register(subparsers: Any) -> None:
    dev = subparsers.add_parser("dev", help="run the whole service locally on embedded defaults")
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="SUBCOMMAND", required=True)
    up = dev_sub.add_parser("up", help="start Postgres, Redis, migrations, seed, webhooks, worker and scheduler")
    up.add_argument("--port", type=int, default=None, help="webhook port (default: WEBHOOK_PORT or 8000)")
    up.add_argument("--processes", type=int, default=None, help="worker processes (default: WORKER_PROCESSES)")
    up.add_argument("--threads", type=int, default=None, help="threads per worker process (default: WORKER_THREADS)")
    up.add_argument("--no-seed", action="store_true", help="skip loading seed_data.sql")
    up.set_defaults(handler=dev_up)
    down = dev_sub.add_parser("down", help="stop the embedded Postgres and Redis")
    down.set_defaults(handler=dev_down)

    db = subparsers.add_parser("db", help="database migrations and seed data")
    db_sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    db_sub.add_parser("migrate", help="upgrade the schema to head").set_defaults(handler=db_migrate)
    db_sub.add_parser("seed", help="load seed_data.sql (safe to repeat)").set_defaults(handler=db_seed)
    db_sub.add_parser("setup", help="migrate, seed and index the knowledge base").set_defaults(handler=db_setup)
    db_sub.add_parser(
        "check", help="exit 0 when the schema is at this code's head (or past it), 1 otherwise (app role)"
    ).set_defaults(handler=db_check)
    wait = db_sub.add_parser("wait", help="wait until the schema is at this code's head (Kubernetes init container)")
    wait.add_argument("--timeout", type=float, default=600, help="give up after this many seconds (exit 2)")
    wait.add_argument("--interval", type=float, default=2, help="seconds between checks")
    wait.set_defaults(handler=db_wait)

    chat = subparsers.add_parser("chat", help="text the clinic from your terminal (signed Twilio-format webhooks)")
    chat.add_argument("--url", default=None, help="webhook base URL (default: PUBLIC_BASE_URL)")
    chat.add_argument("--to", default="+14155550123", help="clinic SMS number (default: Glow MedSpa's)")
    chat.add_argument("--from", dest="from_", default="+14155559876", help="your (pretend) phone number")
    chat.add_argument("--message", "-m", action="append", help="send this message and wait for replies (repeatable)")
    chat.add_argument("--timeout", type=float, default=20, help="seconds to wait for a reply")
    chat.set_defaults(handler=chat_simulator)

    for name, handler, help_text in (
        ("webhooks", run_webhooks, "run the webhook app (uvicorn)"),
        ("console", run_console, "run the staff console: web pages and the JSON API (uvicorn)"),
        ("worker", run_worker, "run Dramatiq worker processes"),
        ("scheduler", run_scheduler, "run the scheduler (safe to run more than one)"),
    ):
        cmd = subparsers.add_parser(name, help=help_text)
        if name == "worker":
            cmd.add_argument("--processes", type=int, default=None)
            cmd.add_argument("--threads", type=int, default=None)
        if name in ("webhooks", "console"):
            cmd.add_argument("--port", type=int, default=None)
            cmd.add_argument("--workers", type=int, default=None)
        cmd.set_defaults(handler=handler)


# ------------------------------------------------------------------ database
def db_migrate(_: argparse.Namespace) -> int:
    from medspa.services import migrate
    from scripts.common import infrastructure

    migrate(infrastructure().migration_database_url)
    print("schema at head")
    return 0


def db_seed(_: argparse.Namespace) -> int:
    from medspa.services import load_seed
    from scripts.common import infrastructure

    load_seed(infrastructure().migration_database_url)
    print("seed data loaded")
    return 0


def db_setup(args: argparse.Namespace) -> int:
    db_migrate(args)
    db_seed(args)
    _index_knowledge()
    return 0


def db_check(_: argparse.Namespace) -> int:
    from medspa.services import schema_status
    from scripts.common import infrastructure

    status = schema_status(infrastructure().database_url)
    print(status.describe())
    return 0 if status.ready else 1


def db_wait(args: argparse.Namespace) -> int:
    """Poll until the schema is at head: the app pods' init container, so they start only after the migration
    Job (an older schema would fail their queries; a newer one is what a rolling update runs on anyway)."""
    from medspa.services import schema_status
    from scripts.common import infrastructure

    url = infrastructure().database_url
    deadline = time.monotonic() + args.timeout
    said = ""
    while True:
        status = schema_status(url)
        if status.describe() != said:  # one line per change, not per poll
            said = status.describe()
            print(said, flush=True)
        if status.ready:
            return 0
        if time.monotonic() >= deadline:
            raise CommandError(f"gave up after {args.timeout:.0f}s: {said}")
        time.sleep(args.interval)


def _index_knowledge() -> None:
    """Fill missing knowledge-base embeddings (no-op when no embedder is available)."""

    from scripts.common import app_database
    from worker.integrations.embedders import embedder_for
    from worker.knowledge import reindex_missing_embeddings

    settings = get_settings()
    embedder = embedder_for(settings)
    if embedder is None:
        print("knowledge base: full-text search only (no embedder installed)")
        return
    database = app_database()
    total = 0
    for clinic_id in database.clinic_ids():
        total += int(reindex_missing_embeddings(database, clinic_id, embedder) or 0)
    print(f"knowledge base: {total} chunk embeddings computed with {embedder.name}")


# ------------------------------------------------------------------ services
def _service_env() -> dict[str, str]:
    from scripts.common import infrastructure

    return os.environ.copy() | infrastructure().as_env()


def _uvicorn_argv(factory: str, host: str, port: int, workers: int | None = None) -> list[str]:
    """An ASGI app of ours (``factory``: ``module:create_app``) under uvicorn; ``workers``: its worker processes
    (else one)."""
    argv = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", host, "--port", str(port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    return [*argv, "--no-access-log"]


def run_webhooks(args: argparse.Namespace) -> int:
    # Checked here, in the process compose runs, before the environment is resolved or uvicorn is exec'd (the
    # app checks again in each uvicorn worker).
    settings = startup_settings("webhooks")
    env = _service_env()
    port = args.port or settings.webhook_port
    workers = args.workers or settings.webhook_workers
    os.execvpe(sys.executable, _uvicorn_argv("webhooks.app:create_app", settings.webhook_host, port, workers), env)
    return 0  # pragma: no cover


def run_console(args: argparse.Namespace) -> int:
    # The same process model as the webhook app, on its own port; checked here first (its production secrets and
    # OIDC configuration), then again in each uvicorn worker.
    settings = startup_settings("console")
    env = _service_env()
    os.execvpe(
        sys.executable,
        _uvicorn_argv(
            "console.app:create_app",
            settings.console_host,
            args.port or settings.console_port,
            args.workers or settings.console_workers,
        ),
        env,
    )
    return 0  # pragma: no cover


def _worker_argv(processes: int, threads: int) -> list[str]:
    # Stop within 50 s of SIGTERM (running turns finish first): inside docker-compose's 60 s stop_grace_period.
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "worker.actors",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--worker-shutdown-timeout",
        "50000",
        "--queues",
        "inbound",
        "turns",
        "outbox",
        "bulk",
        "scheduled",
    ]


def run_worker(args: argparse.Namespace) -> int:
    from worker.metrics_setup import worker_metrics_env

    settings = startup_settings("worker")
    env = _service_env() | worker_metrics_env(settings)
    os.execvpe(
        sys.executable,
        _worker_argv(args.processes or settings.worker_processes, args.threads or settings.worker_threads),
        env,
    )
    return 0  # pragma: no cover


def run_scheduler(_: argparse.Namespace) -> int:
    startup_settings("scheduler")
    env = _service_env()
    os.execvpe(sys.executable, [sys.executable, "-m", "worker.scheduler"], env)
    return 0  # pragma: no cover


def dev_up(args: argparse.Namespace) -> int:
    from scripts.common import infrastructure

    settings = startup_settings("dev up")
    print("Starting MedSpa Agent on embedded defaults ...", flush=True)
    infra = infrastructure()
    print(
        f"  postgres: {'embedded' if infra.embedded_postgres else 'DATABASE_URL'}   "
        f"redis: {'embedded' if infra.embedded_redis else 'REDIS_URL'}",
        flush=True,
    )
    from medspa.services import load_seed, migrate

    migrate(infra.migration_database_url)
    if not args.no_seed:
        load_seed(infra.migration_database_url)
        print("  seed data loaded (Glow MedSpa demo clinic)", flush=True)
    _index_knowledge()
    from worker.container import integration_modes

    modes = integration_modes(settings)
    print("  integrations: " + ", ".join(f"{k}={v}" for k, v in modes.items()), flush=True)
    from worker.metrics_setup import worker_metrics_env

    env = _service_env()
    port = args.port or settings.webhook_port
    env["PUBLIC_BASE_URL"] = os.environ.get("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")

    # Each service in a session of its own, so a Ctrl-C (SIGINT to the terminal's foreground group) reaches only
    # this process, which then stops each service with one SIGTERM (``_stop_services``).  Had the services shared
    # the group, Dramatiq's parent would forward the SIGINT to its workers as a SIGTERM and our SIGTERM after it
    # would be their second signal, on which they exit at once: running turns cut off, exit status 1.
    def start(argv: list[str], service_env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=service_env, start_new_session=True)

    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(start(_uvicorn_argv("webhooks.app:create_app", settings.webhook_host, port), env))
        processes.append(
            start(
                _worker_argv(args.processes or settings.worker_processes, args.threads or settings.worker_threads),
                env | worker_metrics_env(settings),
            )
        )
        processes.append(start([sys.executable, "-m", "worker.scheduler"], env))
        # The staff console on its own port (create the first owner with `medspa staff-users add`).
        processes.append(
            start(_uvicorn_argv("console.app:create_app", settings.console_host, settings.console_port), env)
        )
        _wait_ready(f"{env['PUBLIC_BASE_URL']}/readyz", processes)
    except BaseException:  # a start-up failure or a Ctrl-C while starting: leave nothing running behind us
        _stop_services(processes)
        raise
    base = env["PUBLIC_BASE_URL"]
    print(
        f"""
MedSpa Agent is running.
  Demo clinic website with chat widget:  {base}/demo
  Webhooks:  {base}/webhooks/twilio/sms   {base}/webhooks/chat/...   {base}/webhooks/stripe
  Health:    {base}/healthz   {base}/readyz
  Staff console: {settings.console_public_url}  (first owner: .venv/bin/medspa staff-users add EMAIL --clinic glow-medspa --role owner)
Text the clinic from another terminal:   .venv/bin/medspa chat
Press Ctrl-C to stop.
""",
        flush=True,
    )
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    # A closed terminal: the services, in sessions of their own, would not hear of it.
    signal.signal(signal.SIGHUP, _stop)
    try:
        while not stop and all(p.poll() is None for p in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    with contextlib.suppress(OSError):  # a closed terminal cannot be written to; the services stop all the same
        print("stopping (running turns finish first; Ctrl-C again to kill) ...", flush=True)
    _stop_services(processes)
    failed = [
        p.args[2] if isinstance(p.args, list) else p.args for p in processes if p.returncode not in (0, -15, None)
    ]
    if failed:
        print(f"stopped; a service exited with an error: {failed}", file=sys.stderr)
        return 1
    print("stopped.")
    return 0


# Past the worker's own shutdown timeout (50 s, ``_worker_argv``), then whatever still runs is killed.
STOP_GRACE_S = 55.0


def _stop_services(processes: list[subprocess.Popen[bytes]], grace_s: float = STOP_GRACE_S) -> None:
    """One SIGTERM to each service still running, then wait for all of them; kill what is left after
    ``grace_s``, or at once on a second Ctrl-C."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    try:
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        print("killing the services ...", file=sys.stderr, flush=True)
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


def _wait_ready(url: str, processes: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise CommandError("a service exited during start-up; see the output above")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.3)
    raise CommandError(f"the webhook app did not become ready at {url} within {timeout:.0f}s")


def dev_down(_: argparse.Namespace) -> int:
    from medspa import devstack

    data_dir = get_settings().data_dir
    devstack.stop_redis(data_dir)
    try:
        devstack.stop_postgres(data_dir)
    except RuntimeError as exc:
        raise CommandError(str(exc)) from exc
    print("embedded Postgres and Redis stopped")
    return 0


# ------------------------------------------------------------------ chat simulator
def chat_simulator(args: argparse.Namespace) -> int:
    """Sends properly signed Twilio-format webhooks and prints the replies the agent sends back."""
    import httpx
    from sqlalchemy import text
    from twilio.request_validator import RequestValidator

    from medspa.secrets import load_webhook_secrets
    from scripts.common import app_database

    settings = get_settings()
    base = (args.url or settings.public_base_url).rstrip("/")
    url = f"{base}/webhooks/twilio/sms"
    validator = RequestValidator(load_webhook_secrets(settings).twilio_auth_token)
    database = app_database()
    with database.directory_scope() as session:
        clinic = session.execute(
            text(
                "SELECT c.id, c.name FROM clinic_phone_numbers n JOIN clinics c ON c.id = n.clinic_id "
                "WHERE n.e164 = :to"
            ),
            {"to": args.to},
        ).one_or_none()
    if clinic is None:
        raise CommandError(f"no clinic owns {args.to}; pass --to with a clinic's SMS number")
    clinic_id, clinic_name = int(clinic[0]), clinic[1]
    last_seen = _last_outbox_id(database, clinic_id, args.from_)

    def send(body: str) -> None:
        nonlocal last_seen
        form = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": "AC" + "0" * 32,
            "From": args.from_,
            "To": args.to,
            "Body": body,
            "NumMedia": "0",
        }
        try:
            response = httpx.post(
                url, data=form, headers={"X-Twilio-Signature": validator.compute_signature(url, form)}, timeout=10
            )
        except httpx.HTTPError as exc:
            raise CommandError(f"could not reach {url} ({type(exc).__name__}); is `medspa dev up` running?") from exc
        if response.status_code != 200:
            print(f"  [webhook answered {response.status_code}: {response.text[:200]}]")
            return
        deadline = time.monotonic() + args.timeout
        got_any = False
        while time.monotonic() < deadline:
            rows = _replies_since(database, clinic_id, args.from_, last_seen)
            for outbox_id, reply in rows:
                # System texts (STOP/HELP replies, the safety reply) already open with the clinic's name.
                print(reply if reply.startswith(f"{clinic_name}:") else f"{clinic_name}: {reply}")
                last_seen = max(last_seen, outbox_id)
                got_any = True
            if got_any and not rows:
                return
            time.sleep(0.4 if got_any else 0.2)
        if not got_any:
            print("  [no reply yet; it may still arrive]")

    if args.message:
        for body in args.message:
            print(f"you: {body}")
            send(body)
        return 0
    print(f"Texting {clinic_name} at {args.to} as {args.from_}. Type a message; Ctrl-D to quit.")
    for line in sys.stdin:
        if line.strip():
            send(line.rstrip("\n"))
    return 0


def _last_outbox_id(database: Any, clinic_id: int, phone: str) -> int:
    from sqlalchemy import text

    with database.tenant_scope(clinic_id) as session:
        return int(
            session.execute(
                text("SELECT COALESCE(max(id), 0) FROM outbox WHERE to_address = :p"), {"p": phone}
            ).scalar_one()
        )


def _replies_since(database: Any, clinic_id: int, phone: str, after: int) -> list[tuple[int, str]]:
    from sqlalchemy import text

    with database.tenant_scope(clinic_id) as session:
        return [
            (int(r[0]), r[1])
            for r in session.execute(
                text("""SELECT id, body FROM outbox WHERE to_address = :p AND id > :after
                    AND status IN ('sent', 'delivered') ORDER BY id"""),
                {"p": phone, "after": after},
            )
        ]
