"""The whole service, assembled for tests the way production assembles it.

- the real Starlette app served by uvicorn over HTTP (in a thread, or a subprocess);
- real Dramatiq workers on the real Redis broker (in-process threads, or subprocesses);
- real Postgres; the composition root built from settings — only the outside
  boundary is faked: Twilio and OpenAI are local HTTP fakes driven through the
  official SDKs, and the clock can be frozen.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text

from db.engine import Database
from medspa.devstack import free_port
from medspa.services import Infrastructure
from medspa.settings import REPO_ROOT, Settings
from tests.fakes.openai_api import FakeOpenAIApi
from tests.fakes.twilio_api import FakeTwilioApi, twilio_signature
from tests.support.infra import wait_for

TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "test-twilio-auth-token"
STRIPE_WEBHOOK_SECRET = "whsec_test_secret"
CHAT_SECRET = "test-chat-secret"
OPENAI_KEY = "sk-test-key"

GLOW_NUMBER = "+14155550123"
GLOW_CLINIC_ID = 1


class FrozenClock:
    """A controllable clock (the Clock port's test adapter)."""

    def __init__(self, moment: datetime | None = None) -> None:
        self._moment = moment
        self._lock = threading.Lock()

    def set(self, moment: datetime | None) -> None:
        with self._lock:
            self._moment = moment.astimezone(UTC) if moment else None

    def now(self) -> datetime:
        with self._lock:
            return self._moment or datetime.now(UTC)


_MARKER = re.compile(r"\[(c\d+-m\d+)\]")


def echo_responder(body: dict[str, Any]) -> dict[str, Any]:
    """A scripted model for pipeline tests: first step calls a tool, second step answers with the markers of
    every patient message the turn saw — so tests can check each message was answered exactly once, in order."""
    messages = body["messages"]
    last = messages[-1]
    if last["role"] == "user" or (last["role"] != "tool" and not any(m["role"] == "tool" for m in messages[-3:])):
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_" + uuid.uuid4().hex[:12],
                    "type": "function",
                    "function": {"name": "get_my_appointments", "arguments": "{}"},
                }
            ],
        }
    # Markers in the user messages after the last assistant *reply* (the turn's new messages).
    seen: list[str] = []
    for message in reversed(messages):
        if message["role"] == "assistant" and message.get("content") and not message.get("tool_calls"):
            break
        if message["role"] == "user":
            seen = _MARKER.findall(message.get("content") or "") + seen
    return {"role": "assistant", "content": "ack " + " ".join(seen) if seen else "ack"}


@dataclass(frozen=True)
class WorkMarks:
    """The last inbox event, message and outbox row ids when a stack started.  Its idle wait is about the work
    recorded after that: rows an earlier test wrote without ever running a worker for them (an unsent campaign
    row, a conversation left leased by a simulated crash) must not hold up a later test's wait — whatever
    order the test files run in."""

    inbox_event: int
    message: int
    outbox: int

    @classmethod
    def now(cls, infra: Infrastructure) -> WorkMarks:
        # Sequences are not row-level-secured, so one read of each gives the mark across every clinic; the owner
        # role owns them (the app role may only use them).
        from db.engine import make_engine

        engine = make_engine(infra.migration_database_url, pool_size=1, max_overflow=0)
        marks: list[int] = []
        try:
            with engine.connect() as conn:
                for table in ("inbox_events", "messages", "outbox"):
                    sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar()
                    last = conn.execute(
                        text(f"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {sequence}")
                    ).scalar_one()
                    marks.append(int(last))
        finally:
            engine.dispose()
        return cls(*marks)


# Work recorded after the marks and not finished: an event not attached, a conversation with a message of the
# stack's time unanswered, a due reply or text not yet sent (the sweeper's rules, scoped to the stack's time).
_UNFINISHED = """
    (SELECT count(*) FROM inbox_events WHERE status = 'received' AND id > :inbox_mark) AS inbox_received,
    (SELECT count(*) FROM conversations c WHERE c.last_inbound_seq > c.answered_seq
       AND EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.inbound_seq > c.answered_seq
                   AND m.id > :message_mark)) AS pending_convs,
    (SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending', 'unknown') AND id > :outbox_mark
       AND (not_before IS NULL OR not_before <= now())) AS outbox_unsent"""


@dataclass
class Stack:
    infra: Infrastructure
    settings: Settings
    database: Database
    twilio: FakeTwilioApi
    openai: FakeOpenAIApi
    base_url: str
    clock: FrozenClock
    http: httpx.Client
    _stoppers: list[Any] = field(default_factory=list)
    marks: WorkMarks | None = None  # set when the stack starts (None: every unfinished row counts)

    # ------------------------------------------------------------ driving it like Twilio would
    def sms_form(self, to: str, from_: str, body: str, sid: str | None = None) -> dict[str, str]:
        return {
            "MessageSid": sid or "SM" + uuid.uuid4().hex,
            "AccountSid": TWILIO_SID,
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
        }

    def post_twilio(self, path: str, form: dict[str, str], *, signature: str | None = None) -> httpx.Response:
        url = self.base_url + path
        sig = signature if signature is not None else twilio_signature(TWILIO_TOKEN, url, form)
        return self.http.post(url, data=form, headers={"X-Twilio-Signature": sig})

    def send_sms(self, clinic_number: str, from_phone: str, body: str, *, sid: str | None = None) -> httpx.Response:
        response = self.post_twilio("/webhooks/twilio/sms", self.sms_form(clinic_number, from_phone, body, sid))
        assert response.status_code == 200, response.text
        return response

    @contextlib.contextmanager
    def burst(self, clinic_id: int, phone: str) -> Iterator[None]:
        """Post a burst of texts inside this block: it is answered by one turn, deterministically.

        The patient's conversation row is held locked (as a running turn's commit holds it) until the block
        ends, so every text of the burst is recorded before any worker can attach one; the first worker in
        then attaches the whole backlog.  Without it the outcome depends on timing: a fast worker answers the
        first text alone and the rest in a second turn (both correct, but not what a burst test checks)."""
        with self.database.tenant_scope(clinic_id) as session:  # committed first, so workers find the row
            session.execute(
                text("""INSERT INTO conversations (clinic_id, client_id, channel)
                        SELECT :c, id, 'sms' FROM clients WHERE clinic_id = :c AND phone_e164 = :p
                        ON CONFLICT (clinic_id, client_id, channel) DO NOTHING"""),
                {"c": clinic_id, "p": phone},
            )
        with self.database.tenant_scope(clinic_id) as session:
            session.execute(
                text("""SELECT cv.id FROM conversations cv JOIN clients cl ON cl.id = cv.client_id
                        WHERE cv.clinic_id = :c AND cl.phone_e164 = :p AND cv.channel = 'sms' FOR UPDATE OF cv"""),
                {"c": clinic_id, "p": phone},
            )
            yield

    def replies_to(self, phone: str) -> list[str]:
        return [m.body for m in list(self.twilio.messages) if m.to == phone]

    def wait_replies(self, to_phone: str, count: int, timeout: float = 30) -> list[str]:
        # Every scenario turn waits here: polled every 10 ms at first (an in-memory check), slowing to 100 ms.
        wait_for(
            lambda: len(self.replies_to(to_phone)) >= count,
            timeout,
            interval=0.01,
            max_interval=0.1,
            what=f"{count} replies to a test phone",
        )
        return self.replies_to(to_phone)

    def tool_calls(self, phone: str, clinic_id: int = GLOW_CLINIC_ID) -> list[dict[str, Any]]:
        with self.database.tenant_scope(clinic_id) as session:
            rows = (
                session.execute(
                    text(
                        """SELECT e.t->>'name' AS name, e.t->'arguments' AS arguments, (e.t->>'ok')::boolean AS ok,
                              e.t->'result' AS result
                       FROM turns u CROSS JOIN LATERAL jsonb_array_elements(u.tool_calls) WITH ORDINALITY AS e(t, n)
                       JOIN conversations c ON c.id = u.conversation_id JOIN clients cl ON cl.id = c.client_id
                       WHERE cl.phone_e164 = :phone ORDER BY u.id, e.n"""
                    ),
                    {"phone": phone},
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def wait_idle(self, clinic_id: int = GLOW_CLINIC_ID, timeout: float = 60) -> None:
        """Every inbound event recorded since the stack started processed, every conversation answered, every
        due reply sent (``WorkMarks``: an earlier test's unfinished rows are not this stack's work)."""
        marks = self.marks or WorkMarks(0, 0, 0)
        params = {"inbox_mark": marks.inbox_event, "message_mark": marks.message, "outbox_mark": marks.outbox}

        def idle() -> bool:
            with self.database.tenant_scope(clinic_id) as session:
                counts = session.execute(text(f"SELECT {_UNFINISHED}"), params).one()
            return not any(counts)

        try:
            # Every scenario turn waits here, usually for milliseconds (its reply reaches the fake Twilio just
            # before its outbox row is marked sent): polled every 10 ms at first, slowing to 100 ms.
            wait_for(idle, timeout, interval=0.01, max_interval=0.1, what="the pipeline to go idle")
        except AssertionError as exc:
            with self.database.tenant_scope(clinic_id) as session:
                unfinished = dict(session.execute(text(f"SELECT {_UNFINISHED}"), params).mappings().one())
            raise AssertionError(
                f"{exc}; this stack's unfinished work: {unfinished}; the whole clinic: {self.pipeline_state(clinic_id)}"
            ) from None

    def pipeline_state(self, clinic_id: int = GLOW_CLINIC_ID) -> dict[str, Any]:
        with self.database.tenant_scope(clinic_id) as session:
            return dict(
                session.execute(
                    text(
                        """SELECT (SELECT count(*) FROM inbox_events WHERE status = 'received') AS inbox_received,
                          (SELECT count(*) FROM inbox_events WHERE status = 'quarantined') AS inbox_quarantined,
                          (SELECT count(*) FROM conversations WHERE last_inbound_seq > answered_seq) AS pending_convs,
                          (SELECT count(*) FROM conversations WHERE lease_owner IS NOT NULL) AS leased_convs,
                          (SELECT json_object_agg(status, n) FROM (SELECT status, count(*) n FROM outbox
                                                                    GROUP BY status) s) AS outbox"""
                    )
                )
                .mappings()
                .one()
            )

    def close(self) -> None:
        for stop in reversed(self._stoppers):
            with contextlib.suppress(Exception):
                stop()
        self.http.close()


# Recovery timings for tests that crash a worker or lose Redis and wait for the sweeper to recover: a dead
# worker's conversations are free again after 5 s, unfinished work is swept after 5-6 s, and the sweep runs every
# 2 s — instead of the harness's 15-20 s and the scheduler's 10 s (stack_settings) — so recovery takes seconds,
# checked the same way.  (The drills' small scale, scripts/drills/environment.py, uses the same.)
FAST_RECOVERY: dict[str, Any] = {
    "lease_seconds": 5,
    "inbox_sweep_after_s": 5,
    "outbox_sweep_after_s": 6,
    "sms_send_timeout_s": 4.0,  # below outbox_sweep_after_s: a send's claim outlives its provider call
    "sweep_every_s": 2,
}


def stack_settings(
    infra: Infrastructure,
    *,
    base_url: str,
    twilio: FakeTwilioApi,
    openai: FakeOpenAIApi,
    data_dir: Path,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {
        "database_url": infra.database_url,
        "migration_database_url": infra.migration_database_url,
        "redis_url": infra.redis_url,
        "data_dir": data_dir,
        "public_base_url": base_url,
        "environment": "test",
        "log_json": True,
        "log_level": "INFO",
        "twilio_account_sid": TWILIO_SID,
        "twilio_auth_token": TWILIO_TOKEN,
        "twilio_api_base": twilio.base_url,
        "stripe_webhook_secret": STRIPE_WEBHOOK_SECRET,
        "chat_token_secret": CHAT_SECRET,
        "openai_api_key": OPENAI_KEY,
        "openai_base_url": openai.base_url + "/v1",
        "model_provider": "offline",
        "sms_rate_per_number_per_s": 0,
        "rate_limit_per_sender_per_min": 10_000,
        "rate_limit_per_session_per_min": 10_000,
        "rate_limit_chat_sessions_per_ip_per_min": 10_000,
        "rate_limit_chat_sessions_per_clinic_per_min": 10_000,
        "rate_limit_chat_messages_per_ip_per_min": 10_000,
        "rate_limit_chat_messages_per_clinic_per_min": 10_000,
        "webhook_metrics_port": 0,  # stacks that read the app's metrics ask for a free port
        "local_embeddings": False,
        "worker_metrics_port": 0,
        "inbox_sweep_after_s": 20,
        "outbox_sweep_after_s": 15,
        "lease_seconds": 15,
    }
    values.update(overrides)
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as environment variables, for subprocesses."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name.upper()] = str(value) if not isinstance(value, bool) else ("true" if value else "false")
    return env


class _ThreadedUvicorn(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own handlers
        pass


def serve_app_in_thread(settings: Settings, port: int) -> Any:
    from webhooks.app import create_app

    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False
    )
    server = _ThreadedUvicorn(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, what="uvicorn to start")

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return stop


def start_inprocess_worker(settings: Settings, clock: FrozenClock, *, threads: int = 4) -> Any:
    """A real Dramatiq worker (RedisBroker) running in this process with a test-built container."""
    import dramatiq

    saved_env = os.environ.copy()
    os.environ.update(settings_env(settings))
    from medspa.settings import get_settings

    get_settings.cache_clear()
    from worker import runtime
    from worker.container import build_container

    broker = runtime.start_broker(str(settings.redis_url))
    container = build_container(settings, clock=clock)
    runtime.install_container(container)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()

    def stop() -> None:
        worker.stop(timeout=10_000)
        broker.close()
        container.close()
        os.environ.clear()  # later stacks must not inherit this one's settings
        os.environ.update(saved_env)
        get_settings.cache_clear()

    return stop, container


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int | None = None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        # SIGTERM the main process only (as `docker stop` does); it shuts its own workers down cleanly.
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.wait(5)

    def request_stop(self) -> None:
        """SIGTERM to the main process, without waiting (``terminate`` waits)."""
        with contextlib.suppress(ProcessLookupError):
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)

    def pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-g", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]


def stop_processes(processes: list[WorkerProcess], *, timeout: float) -> None:
    """Stop them all gracefully, at once: each takes a second or two to finish what it runs, so one after
    another would add those up.  Whatever has not exited by ``timeout`` is killed."""
    for process in processes:
        process.request_stop()
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def start_worker_process(
    settings: Settings, *, processes: int = 1, threads: int = 4, log_dir: Path, name: str = "worker"
) -> WorkerProcess:
    env = os.environ.copy() | settings_env(settings)
    if settings.worker_metrics_port:
        from worker.metrics_setup import worker_metrics_env

        env |= worker_metrics_env(settings, port=free_port())  # each worker group serves its own metrics
    log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
    handle = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [
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
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    port = int(env["WORKER_METRICS_PORT"]) if settings.worker_metrics_port else None
    return WorkerProcess(process, log_path, port)


def start_app_process(settings: Settings, port: int, *, log_dir: Path, workers: int = 1) -> WorkerProcess:
    env = os.environ.copy() | settings_env(settings)
    log_path = log_dir / f"webhooks-{port}.log"
    handle = open(log_path, "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "webhooks.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), 30, what="webhook app to be ready")
    return WorkerProcess(process, log_path)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running_stack(
    infra: Infrastructure, tmp_dir: Path, *, inprocess_worker: bool = True, **overrides: Any
) -> Iterator[tuple[Stack, Any]]:
    twilio = FakeTwilioApi(TWILIO_SID, TWILIO_TOKEN).start()
    openai = FakeOpenAIApi(OPENAI_KEY).start()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = stack_settings(infra, base_url=base_url, twilio=twilio, openai=openai, data_dir=tmp_dir, **overrides)
    clock = FrozenClock()
    from db.engine import make_engine

    database = Database(make_engine(infra.database_url, pool_size=4))
    stack = Stack(infra, settings, database, twilio, openai, base_url, clock, httpx.Client(timeout=10))
    stack.marks = WorkMarks.now(infra)
    stack._stoppers += [twilio.stop, openai.stop, database.dispose]
    container = None
    try:
        stack._stoppers.append(serve_app_in_thread(settings, port))
        if inprocess_worker:
            stop_worker, container = start_inprocess_worker(settings, clock)
            stack._stoppers.append(stop_worker)
        yield stack, container
    finally:
        stack.close()


def dump_json(value: Any) -> str:
    return json.dumps(value, default=str)


@dataclass
class ProcessStack:
    """App, workers and scheduler as separate OS processes (for load, crash and recovery tests)."""

    stack: Stack
    app: WorkerProcess
    workers: list[WorkerProcess]
    scheduler: WorkerProcess | None
    log_dir: Path

    def add_worker(self, *, processes: int = 1, threads: int = 4) -> WorkerProcess:
        worker = start_worker_process(self.stack.settings, processes=processes, threads=threads, log_dir=self.log_dir)
        self.workers.append(worker)
        return worker

    def start_scheduler(self) -> WorkerProcess:
        self.scheduler = start_scheduler_process(self.stack.settings, log_dir=self.log_dir)
        return self.scheduler

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.log_dir.glob("*.log"))


def start_scheduler_process(settings: Settings, *, log_dir: Path) -> WorkerProcess:
    env = os.environ.copy() | settings_env(settings)
    log_path = log_dir / f"scheduler-{uuid.uuid4().hex[:6]}.log"
    handle = open(log_path, "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.scheduler"],
        cwd=REPO_ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return WorkerProcess(process, log_path)


@contextlib.contextmanager
def running_process_stack(
    infra: Infrastructure,
    tmp_dir: Path,
    *,
    workers: tuple[tuple[int, int], ...] = ((2, 4),),
    scheduler: bool = True,
    **overrides: Any,
) -> Iterator[ProcessStack]:
    twilio = FakeTwilioApi(TWILIO_SID, TWILIO_TOKEN).start()
    openai = FakeOpenAIApi(OPENAI_KEY).start()
    openai.responder = echo_responder
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    overrides.setdefault("model_provider", "openai")
    overrides.setdefault("worker_metrics_port", free_port())
    overrides.setdefault("webhook_metrics_port", free_port())
    settings = stack_settings(infra, base_url=base_url, twilio=twilio, openai=openai, data_dir=tmp_dir, **overrides)
    from db.engine import make_engine

    database = Database(make_engine(infra.database_url, pool_size=4))
    stack = Stack(
        infra,
        settings,
        database,
        twilio,
        openai,
        base_url,
        FrozenClock(),
        httpx.Client(timeout=10, limits=httpx.Limits(max_connections=64)),
    )
    stack.marks = WorkMarks.now(infra)
    log_dir = tmp_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    procs: ProcessStack | None = None
    try:
        app = start_app_process(settings, port, log_dir=log_dir)
        procs = ProcessStack(stack, app, [], None, log_dir)
        for processes, threads in workers:
            procs.add_worker(processes=processes, threads=threads)
        if scheduler:
            procs.start_scheduler()
        yield procs
    finally:
        running = [p for p in ([procs.app, *procs.workers, procs.scheduler] if procs else []) if p is not None]
        stop_processes(running, timeout=20)
        stack.close()
        twilio.stop()
        openai.stop()
        database.dispose()
