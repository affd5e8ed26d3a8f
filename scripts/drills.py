"""``medspa drills run``: fault drills against a throwaway copy of the whole service.

Each drill starts its own stack — the webhook app, two worker process groups and the scheduler as separate
OS processes over an embedded Postgres and Redis in a temporary folder, with local fakes for Twilio and
OpenAI (a scripted model that echoes a marker of every patient message it answers) — puts it under load,
breaks something mid-load, and measures what the patients experienced:

- messages in: patient messages the webhook acknowledged (2xx) — the load generator retries a rejected
  webhook with the same MessageSid, as a provider would;
- turns: turns committed for the drill's conversations;
- replies sent: SMS the fake Twilio accepted for the drill's patients;
- duplicates: reply markers Twilio received more than once (or more sends than outbox rows);
- lost: acknowledged messages that never got a turn (a turn that apologised and handed off counts as handled);
- recovery time: from the fault clearing (the kill, the service back up, the storm over) until every
  acknowledged message had its turn and every reply was sent.

Two drills slow a provider down instead of breaking something: ``slow_sms_provider`` (Twilio takes 2 s per
call while a campaign sends, so a chunk of claimed campaign rows outlives the sweeper's deadline; its campaign
texts count in every column: each recipient one text, none twice) and ``slow_model_beyond_lease`` (the model
takes longer than the conversation lease for some patients; one turn per conversation at a time: no model call
of a conversation starts while another of the same conversation is in flight).

Targets: 0 lost, 0 duplicates, recovery ≤ 90 s; in the drills where the fault is not the database's
(``restart_redis``, ``freeze_redis``, ``poisoned_batch``), also every text acknowledged 2xx at its first attempt
within 2 s (neither Redis nor another request is ever in the way of recording a message), and in
``poisoned_batch`` every poisoned request answered 400.  The command exits 1 when a drill misses one.  The drills are
a developer tool: they reuse the test harness (tests/support, tests/fakes) and need the repository checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import shutil
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medspa.settings import REPO_ROOT
from scripts.common import CommandError

if TYPE_CHECKING:
    from medspa.services import Infrastructure
    from tests.support.stack import ProcessStack

RECOVERY_TARGET_S = 90.0
ACK_TARGET_S = 2.0  # drills that must acknowledge every text at once (FIRST_TRY_ACK): the slowest 2xx allowed
ARTIFACTS = REPO_ROOT / "test-artifacts" / "drills"  # git-ignored: process logs of drills that failed
COLUMNS = ["drill", "messages in", "turns", "replies sent", "duplicates", "lost", "recovery time (s)", "verdict"]


@dataclass(frozen=True)
class Scale:
    conversations: int
    per_conversation: int
    load_s: float  # each conversation's messages are spread over this long, so the fault lands mid-load
    storm_s: float  # how long a provider storm (429s, 500s) or an outage lasts
    model_ms: int  # the scripted model's think time per call: keeps turns in flight when the fault lands


SCALES = {
    "small": Scale(conversations=8, per_conversation=3, load_s=4.0, storm_s=4.0, model_ms=250),
    "full": Scale(conversations=40, per_conversation=5, load_s=10.0, storm_s=10.0, model_ms=200),
}


@dataclass
class DrillResult:
    drill: str
    messages_in: int = 0
    turns: int = 0
    replies_sent: int = 0
    duplicates: int = 0
    lost: int = 0
    recovery_s: float | None = None
    passed: bool = False
    notes: list[str] = field(default_factory=list)
    parallel_turns: int | None = None  # slow_model_beyond_lease: model calls started while one of the same ran
    violations: list[str] = field(default_factory=list)  # what a fault's own checks found wrong (fails the drill)

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def row(self) -> dict[str, Any]:
        return {
            "drill": self.drill,
            "messages in": self.messages_in,
            "turns": self.turns,
            "replies sent": self.replies_sent,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "recovery time (s)": "-" if self.recovery_s is None else f"{self.recovery_s:.1f}",
            "verdict": self.verdict,
        }

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass
class DrillEnvironment:
    """The throwaway Postgres + Redis every drill's stack runs on (``data_dir`` holds their files)."""

    infra: Infrastructure
    data_dir: Path
    work_dir: Path


def _progress(message: str) -> None:
    print(f"[drills {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ environment
def _ensure_repo_on_path() -> None:
    # The harness lives in tests/ (not an installed package): importable from the checkout.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


@contextlib.contextmanager
def drill_environment() -> Iterator[DrillEnvironment]:
    _ensure_repo_on_path()
    import tempfile

    from tests.support.infra import start_test_infrastructure, stop_test_infrastructure

    infra, data_dir = start_test_infrastructure()
    work_dir = Path(tempfile.mkdtemp(prefix="medspa-drills-"))
    try:
        yield DrillEnvironment(infra, data_dir, work_dir)
    finally:
        stop_test_infrastructure(data_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


# ------------------------------------------------------------------ load
_LOAD_RUNS = itertools.count(uuid.uuid4().int % 400 + 100)


class Load:
    """Patients texting the clinic: ``conversations`` phones, each sending ``per_conversation`` marked messages
    spread over ``load_s``.  A webhook that does not answer 2xx is retried with the same MessageSid (the
    platform's dedupe makes that safe) until ``ack_deadline_s`` passes."""

    def __init__(self, procs: ProcessStack, scale: Scale, *, ack_deadline_s: float = 120.0) -> None:
        self.procs = procs
        self.scale = scale
        self.ack_deadline_s = ack_deadline_s
        run = next(_LOAD_RUNS)  # distinct numbers per load: drills share one database
        self.phones = {f"+1415{run:03d}{i:04d}": i for i in range(scale.conversations)}
        self.acknowledged: dict[str, list[str]] = {p: [] for p in self.phones}
        self.rejected = 0
        self.first_try_failures = 0  # webhook attempts that were not 2xx (or timed out) the first time
        self.slowest_ack_s = 0.0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(min(32, scale.conversations), thread_name_prefix="patient")
        self._futures: list[Any] = []

    def start(self) -> Load:
        self._futures = [self._pool.submit(self._patient, phone, index) for phone, index in self.phones.items()]
        return self

    def join(self) -> None:
        for future in self._futures:
            future.result()
        self._pool.shutdown()

    @property
    def done(self) -> bool:
        return all(f.done() for f in self._futures)

    def _patient(self, phone: str, index: int) -> None:
        import httpx

        from tests.fakes.twilio_api import twilio_signature
        from tests.support.stack import GLOW_NUMBER, TWILIO_TOKEN

        stack = self.procs.stack
        url = stack.base_url + "/webhooks/twilio/sms"
        gap = self.scale.load_s / self.scale.per_conversation
        # Stagger the conversations so messages arrive continuously, not in waves.
        time.sleep(gap * index / max(1, self.scale.conversations))
        with httpx.Client(timeout=10) as client:
            for m in range(1, self.scale.per_conversation + 1):
                marker = f"c{index}-m{m}"
                form = stack.sms_form(GLOW_NUMBER, phone, f"drill message [{marker}]")
                headers = {"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, form)}
                if self._deliver(client, url, form, headers):
                    with self._lock:
                        self.acknowledged[phone].append(marker)
                else:
                    with self._lock:
                        self.rejected += 1
                time.sleep(gap)

    def _deliver(self, client: Any, url: str, form: dict[str, str], headers: dict[str, str]) -> bool:
        import httpx

        deadline = time.monotonic() + self.ack_deadline_s
        first = True
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                if 200 <= client.post(url, data=form, headers=headers).status_code < 300:
                    with self._lock:
                        self.slowest_ack_s = max(self.slowest_ack_s, time.monotonic() - started)
                    return True
            except httpx.HTTPError:
                pass
            if first:
                with self._lock:
                    self.first_try_failures += 1
                first = False
            time.sleep(0.5)  # a provider's retry backoff: the webhook is down or refusing
        return False

    def replies(self) -> list[tuple[str, str]]:
        return [(m.to, m.body) for m in list(self.procs.stack.twilio.messages) if m.to in self.phones]

    def wait_under_way(self, fraction: float = 0.2, timeout: float = 60) -> None:
        """Until some turns have answered (the fault should land with turns in flight)."""
        from tests.support.infra import wait_for

        expected = self.scale.conversations * self.scale.per_conversation
        wait_for(
            lambda: len(self.replies()) >= max(2, int(expected * fraction)) or self.done,
            timeout,
            what="the load to get under way",
        )


# ------------------------------------------------------------------ measuring
def _wait_recovered(
    procs: ProcessStack, load: Load, timeout: float, settled: Callable[[ProcessStack], bool] | None = None
) -> float | None:
    """Wait for the load to finish and the pipeline to drain (and the drill's own work to settle, e.g. its
    campaign to complete); returns the monotonic time it did, or None."""
    from tests.support.infra import wait_for

    load.join()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if settled is not None:
                wait_for(lambda: settled(procs), max(1.0, deadline - time.monotonic()), what="the drill's work")
            procs.stack.wait_idle(timeout=max(1.0, deadline - time.monotonic()))
            return time.monotonic()
        except AssertionError:
            return None
        except Exception:  # noqa: BLE001 - the database may still be coming back: keep waiting
            time.sleep(0.5)
    return None


def _measure(procs: ProcessStack, load: Load, result: DrillResult) -> None:
    from sqlalchemy import text

    phones = list(load.phones)
    acknowledged = {(p, m) for p, markers in load.acknowledged.items() for m in markers}
    result.messages_in = len(acknowledged)
    with procs.stack.database.tenant_scope(1) as session:
        result.turns = int(
            session.execute(
                text(
                    """SELECT count(*) FROM turns t JOIN conversations c ON c.id = t.conversation_id
               JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = ANY(:phones)"""
                ),
                {"phones": phones},
            ).scalar_one()
        )
        # A message got a turn when some turn of its conversation covered its sequence number.
        handled = session.execute(
            text(
                """SELECT cl.phone_e164, substring(m.body from '\\[(c\\d+-m\\d+)\\]') FROM messages m
               JOIN conversations c ON c.id = m.conversation_id JOIN clients cl ON cl.id = c.client_id
               WHERE cl.phone_e164 = ANY(:phones) AND m.role = 'user'
                 AND EXISTS (SELECT 1 FROM turns t WHERE t.conversation_id = m.conversation_id
                             AND m.inbound_seq BETWEEN t.first_seq AND t.last_seq)"""
            ),
            {"phones": phones},
        ).all()
        outbox = session.execute(
            text(
                """SELECT o.status, count(*) FROM outbox o JOIN conversations c ON c.id = o.conversation_id
               JOIN clients cl ON cl.id = c.client_id
               WHERE cl.phone_e164 = ANY(:phones) AND o.to_address = cl.phone_e164 GROUP BY o.status"""
            ),
            {"phones": phones},
        ).all()
        outcomes = {
            str(o): int(n)
            for o, n in session.execute(
                text(
                    """SELECT t.outcome, count(*) FROM turns t JOIN conversations c ON c.id = t.conversation_id
               JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = ANY(:phones) GROUP BY t.outcome"""
                ),
                {"phones": phones},
            )
        }
        quarantined = int(
            session.execute(
                text(
                    "SELECT count(*) FROM inbox_events WHERE status = 'quarantined' AND payload->>'from' = ANY(:phones)"
                ),
                {"phones": phones},
            ).scalar_one()
        )
    result.lost = len(acknowledged - {(p, m) for p, m in handled})
    replies = load.replies()
    result.replies_sent = len(replies)
    from tests.support.stack import _MARKER

    markers = Counter((to, marker) for to, body in replies for marker in _MARKER.findall(body))
    marker_duplicates = sum(n - 1 for n in markers.values() if n > 1)
    if outcomes != {"replied": result.turns}:
        result.notes.append("turn outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    statuses = {str(s): int(n) for s, n in outbox}
    sent_rows = statuses.get("sent", 0) + statuses.get("delivered", 0)
    result.duplicates = max(marker_duplicates, len(replies) - sent_rows)
    unsent = sum(n for s, n in statuses.items() if s not in ("sent", "delivered"))
    if unsent:
        result.notes.append(f"outbox rows not sent: {statuses}")
    if quarantined:
        result.notes.append(f"{quarantined} inbound messages quarantined")
    if load.rejected:
        result.notes.append(f"{load.rejected} messages never acknowledged by the webhook")
    if load.first_try_failures:
        result.notes.append(f"{load.first_try_failures} webhook attempts not 2xx the first time")
    result.notes.append(f"slowest acknowledgement {load.slowest_ack_s * 1000:.0f} ms")
    result.notes.extend(result.violations)
    strict = result.drill in FIRST_TRY_ACK
    if strict and load.slowest_ack_s > ACK_TARGET_S:
        result.notes.append(f"an acknowledgement took longer than {ACK_TARGET_S:.0f}s")
    result.passed = (
        (not strict or (load.first_try_failures == 0 and load.slowest_ack_s <= ACK_TARGET_S))
        and not result.violations
        and result.lost == 0
        and result.duplicates == 0
        and not unsent
        and result.recovery_s is not None
        and result.recovery_s <= RECOVERY_TARGET_S
        and result.messages_in > 0
    )


# ------------------------------------------------------------------ the drills
Fault = Callable[["ProcessStack", DrillEnvironment, Scale, DrillResult], float]
"""Injects the fault mid-load; returns the monotonic time the fault cleared."""


def _sigkill_worker(procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
    victim = procs.workers[0]
    victim.kill()  # SIGKILL to the whole process group: main process and its worker processes
    result.notes.append("SIGKILLed worker group 1 of 2")
    return time.monotonic()


def _sigterm_worker(procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
    import os
    import signal

    victim = procs.workers[0]
    started = time.monotonic()
    # To the Dramatiq main process only, as `docker stop` (through tini) or systemd would: it forwards one
    # SIGTERM to its worker processes, which stop fetching and finish the actors they are running.
    os.kill(victim.process.pid, signal.SIGTERM)
    code = victim.process.wait(90)
    result.notes.append(f"SIGTERMed worker group 1 of 2: exited {code} after {time.monotonic() - started:.1f}s")
    return started


def _restart_redis(procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
    from medspa import devstack
    from tests.support.infra import wait_for

    port = int((env.data_dir / "redis.port").read_text().strip())
    devstack.stop_redis(env.data_dir)
    wait_for(lambda: not devstack._port_open(port), 30, what="redis-server to stop")
    time.sleep(scale.storm_s)  # the outage itself (what is being drilled), not synchronisation
    devstack.start_redis(env.data_dir, port=port, appendonly=False)
    result.notes.append(f"redis down {scale.storm_s:.0f}s, restarted empty (appendonly=no)")
    return time.monotonic()


def _freeze_redis(procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
    import os
    import signal

    # SIGSTOP, not a restart: the port stays open and every connection hangs unanswered (as a stuck server or a
    # dropped network does) — no RST for a client's retry to act on.  Webhooks must still record and answer 2xx.
    # At least 6 s: longer than a Redis client's default 5 s socket timeout, so a request that waits on Redis
    # fails (5xx) instead of merely being slow.
    frozen_s = max(scale.storm_s, 6.0)
    pid = int((env.data_dir / "redis" / "redis.pid").read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(frozen_s)  # the outage itself (what is being drilled), not synchronisation
    finally:
        os.kill(pid, signal.SIGCONT)
    result.notes.append(f"redis frozen (SIGSTOP) for {frozen_s:.0f}s")
    return time.monotonic()


def _poisoned_batch(procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
    """Requests Postgres would refuse (NUL, an unpaired surrogate, an id longer than its column), fired at the
    same moment as good texts from other patients ("bystanders"), so they share insert batches: each poisoned
    request must get 400 and nothing else; every bystander 2xx at its first attempt, and recorded."""
    import httpx
    from sqlalchemy import text

    from tests.fakes.twilio_api import twilio_signature
    from tests.support.stack import GLOW_NUMBER, TWILIO_TOKEN

    stack = procs.stack
    sms_url = stack.base_url + "/webhooks/twilio/sms"
    chat_url = stack.base_url + "/webhooks/chat"
    origin = {"Origin": "http://127.0.0.1:8000"}  # on the demo clinic's chat allow-list
    run = next(_LOAD_RUNS)
    bystanders = itertools.count()
    statuses: Counter[str] = Counter()
    bystander_sids: list[str] = []
    bad_bystanders = 0
    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=32)) as client:
        session = client.post(chat_url + "/session", json={"clinic_key": "glow-medspa-public"}, headers=origin)
        token = session.json()["session_token"]
        chat_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **origin}

        def sms(form: dict[str, str]) -> int:
            headers = {"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, sms_url, form)}
            return client.post(sms_url, data=form, headers=headers).status_code

        def chat(raw: bytes) -> int:
            return client.post(chat_url + "/messages", content=raw, headers=chat_headers).status_code

        def poisoned(n: int) -> list[tuple[str, Callable[[], int]]]:
            phone = f"+1416{run:03d}{n % 10_000:04d}"
            return [
                ("sms body NUL", lambda: sms(stack.sms_form(GLOW_NUMBER, phone, "nul \x00 here"))),
                ("sms sid too long", lambda: sms(stack.sms_form(GLOW_NUMBER, phone, "hi", sid="SM" + "f" * 300))),
                ("chat text NUL", lambda: chat(b'{"text": "a \\u0000 b", "client_message_id": "poison-%d"}' % n)),
                ("chat id NUL", lambda: chat(b'{"text": "hi", "client_message_id": "poison\\u0000%d"}' % n)),
                ("chat surrogate", lambda: chat(b'{"text": "\\ud800", "client_message_id": "poison-s%d"}' % n)),
            ]

        def bystander() -> tuple[str, int]:
            phone = f"+1417{run:03d}{next(bystanders) % 8:04d}"  # a few patients texting often: few extra turns
            form = stack.sms_form(GLOW_NUMBER, phone, "bystander text")
            return form["MessageSid"], sms(form)

        until = time.monotonic() + scale.storm_s
        with ThreadPoolExecutor(16, thread_name_prefix="poison") as pool:
            burst = 0
            while time.monotonic() < until:
                burst += 1
                bad = [(kind, pool.submit(call)) for kind, call in poisoned(burst)]
                good = [pool.submit(bystander) for _ in range(4)]
                for kind, rejected in bad:
                    statuses[f"{kind}: {rejected.result()}"] += 1
                for accepted in good:
                    sid, status = accepted.result()
                    bystander_sids.append(sid)
                    bad_bystanders += not 200 <= status < 300
                time.sleep(0.2)  # a burst five times a second for the fault's duration (not synchronisation)
    with stack.database.tenant_scope(1) as db:
        recorded = int(
            db.execute(
                text("SELECT count(*) FROM inbox_events WHERE provider_event_id = ANY(:sids)"), {"sids": bystander_sids}
            ).scalar_one()
        )
    poisoned_total = sum(statuses.values())
    not_400 = {k: n for k, n in statuses.items() if not k.endswith(": 400")}
    result.notes.append(
        f"{poisoned_total} poisoned requests alongside {len(bystander_sids)} bystander texts; "
        f"bystanders recorded: {recorded}"
    )
    if not_400:
        result.violations.append(f"poisoned requests not answered 400: {not_400}")
    if bad_bystanders or recorded != len(bystander_sids):
        result.violations.append(
            f"{bad_bystanders} bystander texts not 2xx; {len(bystander_sids) - recorded} not recorded"
        )
    return time.monotonic()


def _restart_postgres(procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
    from medspa import devstack

    started = time.monotonic()
    devstack.stop_postgres(env.data_dir)  # pg_ctl stop -m fast: open connections are terminated
    devstack.start_postgres(env.data_dir, fsync=False)
    result.notes.append(f"postgres restarted (fast) in {time.monotonic() - started:.1f}s")
    return time.monotonic()


def _model_429_storm(procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
    from tests.fakes.openai_api import openai_error

    until = time.monotonic() + scale.storm_s
    procs.stack.openai.script(
        openai_error(429, "Rate limit reached for requests", "requests"),
        times=None,
        when=lambda r: r.path == "/v1/chat/completions" and time.monotonic() < until,
    )
    time.sleep(scale.storm_s)  # the storm's duration
    procs.stack.openai.clear_script()
    failed = sum(1 for _, status in procs.stack.openai.exchanges if status == 429)
    result.notes.append(f"model answered 429 for {scale.storm_s:.0f}s ({failed} requests)")
    return time.monotonic()


def _sms_500s(procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
    from tests.fakes.http import Reply

    until = time.monotonic() + scale.storm_s
    procs.stack.twilio.script(
        Reply(500, {"code": 20500, "message": "Internal Server Error", "status": 500}),
        times=None,
        when=lambda r: time.monotonic() < until,
    )
    time.sleep(scale.storm_s)  # the outage's duration
    procs.stack.twilio.clear_script()
    failed = sum(1 for _, status in procs.stack.twilio.exchanges if status == 500)
    result.notes.append(f"Twilio answered 500 for {scale.storm_s:.0f}s ({failed} requests)")
    return time.monotonic()


SLOW_SMS_CALL_S = 2.0  # a Twilio brown-out: every API call takes this long
CAMPAIGN_PER_CONVERSATION = 5  # campaign recipients per patient conversation of the scale


class _SlowSmsProvider:
    """Twilio slows to 2 s per call and a campaign starts sending into the brown-out.  Before claims were
    re-verified before each provider call, a chunk of 50 claimed rows (100 s of calls) outlived the sweeper's
    deadline: the rest of the chunk was marked ``unknown``, other workers reconciled (Twilio had nothing yet) and
    sent, and the first worker sent them again."""

    def __init__(self) -> None:
        self.campaign_id: int | None = None
        self.phones: list[str] = []

    def __call__(self, procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
        from tests.support.infra import wait_for
        from worker.schedule import SCHEDULE

        twilio = procs.stack.twilio
        twilio.latency_s = SLOW_SMS_CALL_S
        started = time.monotonic()
        self.campaign_id, self.phones = _start_campaign(procs, scale.conversations * CAMPAIGN_PER_CONVERSATION)
        wait_for(lambda: self._claimed(procs), 60, interval=0.1, what="the campaign's first claimed rows")
        # The brown-out lasts until the sweeper has surely seen the first claimed chunk past its deadline (it
        # sweeps every 10 s) and other workers have had time to pick swept rows up.
        sweep_every = next(job.every_s for job in SCHEDULE if job.name == "sweep")
        slow_for = procs.stack.settings.outbox_sweep_after_s + sweep_every + 3 * SLOW_SMS_CALL_S
        time.sleep(slow_for)  # the brown-out's duration (what is being drilled), not synchronisation
        twilio.latency_s = 0.0
        result.notes.append(
            f"Twilio took {SLOW_SMS_CALL_S:.0f}s per call for {time.monotonic() - started:.0f}s; a campaign of "
            f"{len(self.phones)} recipients started into it"
        )
        return time.monotonic()

    def _claimed(self, procs: ProcessStack) -> bool:
        from sqlalchemy import text

        with procs.stack.database.tenant_scope(1) as session:
            return bool(
                session.execute(
                    text("SELECT EXISTS (SELECT 1 FROM outbox WHERE campaign_id = :id AND status <> 'queued')"),
                    {"id": self.campaign_id},
                ).scalar_one()
            )

    def settled(self, procs: ProcessStack) -> bool:
        from worker.campaigns.lifecycle import campaign_status

        return self.campaign_id is None or campaign_status(procs.stack.database, 1, self.campaign_id) == "completed"

    def measure(self, procs: ProcessStack, result: DrillResult) -> None:
        texts = Counter(m.to for m in list(procs.stack.twilio.messages) if m.to in set(self.phones))
        twice = sum(n - 1 for n in texts.values() if n > 1)
        never = sum(1 for phone in self.phones if texts[phone] == 0)
        result.messages_in += len(self.phones)
        result.replies_sent += sum(texts.values())
        result.duplicates += twice
        result.lost += never
        result.notes.append(f"campaign: {len(self.phones)} recipients, {never} never texted, {twice} texted twice")
        result.passed = result.passed and twice == 0 and never == 0


def _noon_zone() -> str:
    """A time zone where it is about 13:00 now: campaign recipients inside 08:00-21:00, whatever the hour."""
    offset = 13 - datetime.now(UTC).hour
    offset = offset + 24 if offset < -12 else offset - 24 if offset > 14 else offset
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3


def _start_campaign(procs: ProcessStack, recipients: int) -> tuple[int, list[str]]:
    """Campaign recipients (clients with a marketing grant, at local midday), the campaign sent now, its runner
    enqueued."""
    from sqlalchemy import text

    from domain.audience import SegmentFilter
    from medspa.broker import BULK_QUEUE, LowLatencyRedisBroker, message_for
    from worker.campaigns.lifecycle import create_campaign, schedule_campaign

    run = next(_LOAD_RUNS)
    tag = f"drill-{uuid.uuid4().hex[:8]}"
    phones = [f"+1628{run:03d}{i:04d}" for i in range(recipients)]
    now = datetime.now(UTC)
    with procs.stack.database.tenant_scope(1) as session:
        session.execute(
            text(
                """INSERT INTO clients (clinic_id, phone_e164, name, consent_state, marketing_consent, timezone, tags)
                   SELECT 1, phone, 'Drill Recipient', 'opted_in', 'granted', :tz, ARRAY[CAST(:tag AS text)]
                   FROM unnest(CAST(:phones AS text[])) AS phone"""
            ),
            {"phones": phones, "tz": _noon_zone(), "tag": tag},
        )
        campaign_id = create_campaign(
            session,
            1,
            name="Drill: slow SMS provider",
            template="Hi {first_name}, spring offers at {clinic_name} this week.",
            segment=SegmentFilter.from_dict({"tags": [tag]}),
            created_by="drills",
        )
        schedule_campaign(session, 1, campaign_id, now, now)
    broker = LowLatencyRedisBroker(url=procs.stack.settings.redis_url)  # not the global broker: just enqueue
    try:
        broker.enqueue(message_for("run_campaign_slice", BULK_QUEUE, 1, campaign_id))
    finally:
        broker.close()
    return campaign_id, phones


SLOW_MODEL_EVERY = 8  # every 8th conversation's model is slower than the lease
SLOW_MODEL_LEASE_S = 5  # this drill's LEASE_SECONDS: short, so a turn outlives it by far
SLOW_MODEL_CALL_S = SLOW_MODEL_LEASE_S + 5.0  # per model call; a turn makes two


class _SlowModelBeyondLease:
    """Every 8th patient's model takes longer per call than the conversation lease (a turn makes two calls:
    4 leases long).  Without a heartbeat the lease expired mid-turn and the patient's next text — or the
    sweeper — handed the conversation to another worker, which ran a second turn in parallel.  Counted in the
    fake model: a model call that starts while another call of the same conversation is in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self.calls = 0
        self.parallel = 0
        self.load: Load | None = None  # set by run_drill

    def think_s(self, conversation: str | None, default_s: float) -> float:
        if conversation is not None and int(conversation[1:]) % SLOW_MODEL_EVERY == 0:
            return SLOW_MODEL_CALL_S
        return default_s

    @contextlib.contextmanager
    def call(self, conversation: str | None) -> Iterator[None]:
        with self._lock:
            self.calls += 1
            if conversation is not None:
                self.parallel += self._in_flight[conversation] > 0
                self._in_flight[conversation] += 1
        try:
            yield
        finally:
            if conversation is not None:
                with self._lock:
                    self._in_flight[conversation] -= 1

    def __call__(self, procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
        if self.load is not None:
            self.load.join()  # the slow model runs from the start; the fault "clears" when the patients stop
        result.notes.append(
            f"model took {SLOW_MODEL_CALL_S:.0f}s per call for every {SLOW_MODEL_EVERY}th conversation "
            f"(lease {SLOW_MODEL_LEASE_S}s)"
        )
        return time.monotonic()

    def settled(self, procs: ProcessStack) -> bool:
        return True

    def measure(self, procs: ProcessStack, result: DrillResult) -> None:
        result.parallel_turns = self.parallel
        result.notes.append(f"{self.calls} model calls, {self.parallel} started while a call of the same ran")
        result.passed = result.passed and self.parallel == 0


def _conversation_of(body: dict[str, Any]) -> str | None:
    """The drill conversation a model request belongs to (``c7`` from its patients' ``[c7-m2]`` markers)."""
    from tests.support.stack import _MARKER

    for message in body.get("messages", []):
        if message.get("role") == "user":
            found = _MARKER.search(str(message.get("content") or ""))
            if found:
                return found.group(1).split("-")[0]
    return None


FAULTS: dict[str, Fault] = {
    "sigkill_worker": _sigkill_worker,
    "sigterm_worker": _sigterm_worker,
    "restart_redis": _restart_redis,
    "freeze_redis": _freeze_redis,
    "poisoned_batch": _poisoned_batch,
    "restart_postgres": _restart_postgres,
    "model_429_storm": _model_429_storm,
    "sms_500s": _sms_500s,
    "slow_sms_provider": _SlowSmsProvider(),
    "slow_model_beyond_lease": _SlowModelBeyondLease(),
}
DRILLS = tuple(FAULTS)
# Drills in which no webhook may answer anything but 2xx, even once: the fault is not the database's (Redis is
# only ever best effort on the request path), so a patient's text must be recorded at its first attempt.
FIRST_TRY_ACK = frozenset({"restart_redis", "freeze_redis", "poisoned_batch"})


# Per-drill settings: the model's overall deadline is shorter than the 429 storm in that drill, so both paths
# run — turns that outlast the storm within the deadline, and turns that apologise and hand off.
def _overrides(name: str, scale: Scale) -> dict[str, Any]:
    if name == "model_429_storm":
        return {"model_deadline_s": round(scale.storm_s * 0.6, 1)}
    if name == "slow_model_beyond_lease":
        return {"lease_seconds": SLOW_MODEL_LEASE_S}
    return {}


# Drills whose fault lives longer than one call (a campaign to follow, a model to watch): a fresh one per run.
_STATEFUL: dict[str, Callable[[], Fault]] = {
    "slow_sms_provider": _SlowSmsProvider,
    "slow_model_beyond_lease": _SlowModelBeyondLease,
}


def run_drill(env: DrillEnvironment, name: str, scale: Scale | str = "small") -> DrillResult:
    """Run one drill on a fresh stack over ``env``; never raises for a missed target (see ``passed``)."""
    _ensure_repo_on_path()
    from tests.support.stack import echo_responder, running_process_stack

    if name not in FAULTS:
        raise CommandError(f"unknown drill {name!r} (drills: {', '.join(DRILLS)})")
    scale = SCALES[scale] if isinstance(scale, str) else scale
    result = DrillResult(name)
    work = env.work_dir / f"{name}-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    think_s = scale.model_ms / 1000
    fault: Fault = _STATEFUL[name]() if name in _STATEFUL else FAULTS[name]
    model = fault if isinstance(fault, _SlowModelBeyondLease) else None

    def slow_echo(body: dict[str, Any]) -> dict[str, Any]:
        if model is None:
            time.sleep(think_s)  # the scripted model's think time
            return echo_responder(body)
        conversation = _conversation_of(body)
        with model.call(conversation):
            time.sleep(model.think_s(conversation, think_s))  # the scripted model's think time
            return echo_responder(body)

    _progress(f"{name}: starting a stack (app, 2 worker groups, scheduler)")
    with running_process_stack(
        env.infra, work, workers=((1, 4), (1, 4)), scheduler=True, **_overrides(name, scale)
    ) as procs:
        procs.stack.openai.responder = slow_echo
        load = Load(procs, scale).start()
        try:
            load.wait_under_way()
            victim = procs.workers[0].pids() if name in ("sigkill_worker", "sigterm_worker") else None
            in_flight = _wait_in_flight(procs, victim)
            result.notes.append(
                f"at the fault: {in_flight} turns in flight" + (" on the victim" if victim is not None else "")
            )
            _progress(f"{name}: load under way, injecting the fault")
            if model is not None:
                model.load = load
            cleared = fault(procs, env, scale, result)
            _progress(f"{name}: fault cleared, waiting for recovery")
            recovered = _wait_recovered(
                procs, load, timeout=RECOVERY_TARGET_S + 60, settled=getattr(fault, "settled", None)
            )
        except BaseException:
            with contextlib.suppress(Exception):
                load.join()
            raise
        if recovered is not None:
            result.recovery_s = max(0.0, recovered - cleared)
        else:
            result.notes.append(f"not recovered: {_state(procs)}")
        _measure(procs, load, result)
        if hasattr(fault, "measure"):
            fault.measure(procs, result)
        if not result.passed:
            kept = ARTIFACTS / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
            shutil.copytree(procs.log_dir, kept, dirs_exist_ok=True)
            result.notes.append(f"process logs kept in {kept}")
    _progress(f"{name}: {result.verdict} {result.row()} {'; '.join(result.notes)}")
    return result


def _wait_in_flight(procs: ProcessStack, pids: list[int] | None, timeout: float = 15) -> int:
    """Best effort: until some conversation's lease is held (by one of ``pids`` when given), so the fault
    lands on turns in flight.  Returns how many were; 0 when the load never got there within ``timeout``."""
    from sqlalchemy import text

    owners = [f"%:{pid}" for pid in pids] if pids is not None else ["%"]
    deadline = time.monotonic() + timeout
    while True:
        with procs.stack.database.tenant_scope(1) as session:
            count = int(
                session.execute(
                    text(
                        """SELECT count(*) FROM conversations WHERE lease_owner LIKE ANY(:owners)
                   AND lease_expires_at > now()"""
                    ),
                    {"owners": owners},
                ).scalar_one()
            )
        if count or time.monotonic() >= deadline:
            return count
        time.sleep(0.01)  # polling a condition with a deadline


def _state(procs: ProcessStack) -> Any:
    with contextlib.suppress(Exception):
        return procs.stack.pipeline_state()
    return "unavailable"


def run_drills(names: list[str], scale: str) -> list[DrillResult]:
    results: list[DrillResult] = []
    with drill_environment() as env:
        for name in names:
            results.append(run_drill(env, name, scale))
    return results


# ------------------------------------------------------------------ CLI
def register(subparsers: Any) -> None:
    drills = subparsers.add_parser(
        "drills",
        help="fault drills against a throwaway copy of the service",
        description="Fault drills: each starts its own stack (embedded Postgres and Redis in a temporary "
        "folder, the app, two worker process groups, the scheduler, fake Twilio and OpenAI), breaks "
        "something mid-load and reports what patients saw.",
    )
    sub = drills.add_subparsers(dest="drills_command", metavar="SUBCOMMAND", required=True)
    run = sub.add_parser(
        "run",
        help="run the drills and print a table (exit 1 if a target is missed)",
        description=f"Drills: {', '.join(DRILLS)}. Targets: 0 lost, 0 duplicate replies, recovery <= "
        f"{RECOVERY_TARGET_S:.0f} s; exits 1 when any drill misses one.",
    )
    run.add_argument("--only", metavar="NAME,...", help="run only these drills (comma-separated)")
    run.add_argument(
        "--scale", choices=sorted(SCALES), default="full", help="load size: small (the test suite's) or full (default)"
    )
    run.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    run.set_defaults(handler=drills_run)


def drills_run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(DRILLS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise CommandError(f"unknown drill(s) {', '.join(unknown)} (drills: {', '.join(DRILLS)})")
    scale = SCALES[args.scale]
    started = datetime.now(UTC)
    results = run_drills(names, args.scale)
    from scripts.common import print_table

    print(
        f"Fault drills, {started:%Y-%m-%d %H:%M} UTC, scale {args.scale}: {scale.conversations} conversations x "
        f"{scale.per_conversation} messages over {scale.load_s:.0f}s; 2 worker groups x 1 process x 4 threads; "
        f"targets: 0 lost, 0 duplicates, recovery <= {RECOVERY_TARGET_S:.0f}s"
    )
    print_table([r.row() for r in results], COLUMNS)
    for result in results:
        if result.notes:
            print(f"  {result.drill}: {'; '.join(result.notes)}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "started_at": started.isoformat(),
                    "scale": args.scale,
                    "scale_params": asdict(scale),
                    "results": [r.as_json() for r in results],
                },
                indent=2,
            )
        )
    return 0 if all(r.passed for r in results) else 1
