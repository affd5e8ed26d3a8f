"""The faults: kill or stop a worker, restart or freeze Redis, restart Postgres, a poisoned batch, a model
429 storm, SMS 500s.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from scripts.drills.environment import DrillEnvironment, DrillResult, Scale
from scripts.drills.measure import _LOAD_RUNS

if TYPE_CHECKING:
    from tests.support.stack import ProcessStack


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

    from medspa import devstack

    # SIGSTOP, not a restart: the port stays open and every connection hangs unanswered (as a stuck server or a
    # dropped network does) — no RST for a client's retry to act on.  Webhooks must still record and answer 2xx.
    # At least 6 s: longer than a Redis client's default 5 s socket timeout, so a request that waits on Redis
    # fails (5xx) instead of merely being slow.
    frozen_s = max(scale.storm_s, 6.0)
    pid = devstack.redis_pid(env.data_dir)
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
