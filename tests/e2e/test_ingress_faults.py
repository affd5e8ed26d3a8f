"""Ingress under faults: a 2xx means recorded whatever Redis does, and one bad request fails only itself.

Real app over HTTP, real Postgres, a real Redis of the test's own (so it can be frozen with SIGSTOP: its port
stays open and connections hang, as a stuck server or a dropped network does — no RST, no quick error).
"""

from __future__ import annotations

import dataclasses
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import text

from tests.fakes.twilio_api import twilio_signature
from tests.support.infra import private_redis
from tests.support.stack import GLOW_NUMBER, TWILIO_TOKEN, echo_responder, running_process_stack

ACK_WITHIN_S = 1.0  # Twilio waits 15 s; a patient's text must be acknowledged long before that


def _phone() -> str:
    return "+1415777" + str(random.randint(0, 9999)).zfill(4)


def _recorded(database, sids: list[str]) -> int:
    with database.tenant_scope(1) as session:
        return int(
            session.execute(
                text("SELECT count(*) FROM inbox_events WHERE source = 'sms' AND provider_event_id = ANY(:sids)"),
                {"sids": sids},
            ).scalar_one()
        )


def _post_signed(base_url: str, form: dict[str, str]) -> tuple[int, float]:
    url = base_url + "/webhooks/twilio/sms"
    headers = {"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, form)}
    # The client is built before the clock starts: building one (its TLS context) costs the test ~30 ms of CPU,
    # eight at once contend for this process's GIL, and on a busy CI machine that alone neared the bound.
    with httpx.Client(timeout=15) as client:
        started = time.monotonic()
        response = client.post(url, data=form, headers=headers)
        return response.status_code, time.monotonic() - started


def test_sms_is_acknowledged_and_recorded_while_redis_is_frozen_and_answered_once_after(infra, tmp_path):
    with private_redis() as redis_server:
        own = dataclasses.replace(infra, redis_url=redis_server.url)
        # Worker and app as processes of their own: they connect to this test's Redis, not the session's.
        # No scheduler (no sweeper): the app's enqueue thread itself must deliver what it recorded during the freeze.
        with running_process_stack(own, tmp_path, workers=((1, 4),), scheduler=False) as procs:
            stack = procs.stack
            stack.openai.responder = echo_responder
            warm = _phone()  # connections to Redis are established before the freeze
            stack.send_sms(GLOW_NUMBER, warm, "hello [c0-m1]")
            assert stack.wait_replies(warm, 1) == ["ack c0-m1"]

            phones = [_phone() for _ in range(8)]
            forms = [stack.sms_form(GLOW_NUMBER, p, f"are you open today? [c{i}-m1]") for i, p in enumerate(phones)]
            with redis_server.frozen():
                with ThreadPoolExecutor(len(forms)) as pool:  # concurrent: they share rate-limit and insert batches
                    first = list(pool.map(lambda f: _post_signed(stack.base_url, f), forms))
                # then one after another for a few seconds: past the fail-open cool-down (the guard probes the hung
                # Redis again) and past the enqueue thread's socket timeout (it retries while Redis is away)
                later = []
                for index, phone in enumerate(phones[:6]):
                    time.sleep(0.5)  # the outage's duration, not synchronisation
                    later.append(_post_signed(stack.base_url, stack.sms_form(GLOW_NUMBER, phone, f"ok [c{index}-m2]")))
                results = first + later
                assert [status for status, _ in results] == [200] * len(results), results
                assert max(elapsed for _, elapsed in results) < ACK_WITHIN_S, results
                # recorded while Redis is still frozen: the 200 meant "in Postgres"
                assert _recorded(stack.database, [f["MessageSid"] for f in forms]) == len(forms)
                # and the app stays in the load balancer's rotation: it can still record texts
                ready = httpx.get(stack.base_url + "/readyz", timeout=5)
                assert ready.status_code == 200 and ready.json()["checks"]["redis"] != "ok", ready.text

            stack.wait_idle(timeout=90)  # every recorded message processed once Redis is back
            for index, phone in enumerate(phones):
                expected = [f"c{index}-m1"] + ([f"c{index}-m2"] if index < 6 else [])
                replies = stack.replies_to(phone)
                markers = [m for reply in replies for m in reply.removeprefix("ack ").split()]
                assert sorted(markers) == expected, (phone, replies)  # every message answered, exactly once


def test_a_poisoned_request_gets_400_and_the_good_requests_batched_with_it_are_recorded(stack):
    chat = stack.base_url + "/webhooks/chat"
    origin = {"Origin": "http://127.0.0.1:8000"}
    session = stack.http.post(chat + "/session", json={"clinic_key": "glow-medspa-public"}, headers=origin).json()
    auth = {"Authorization": f"Bearer {session['session_token']}", "Content-Type": "application/json", **origin}
    good_forms = [stack.sms_form(GLOW_NUMBER, _phone(), f"good {n}") for n in range(16)]
    sms_url = stack.base_url + "/webhooks/twilio/sms"

    def sms(form: dict[str, str]) -> int:
        headers = {"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, sms_url, form)}
        with httpx.Client(timeout=15) as client:
            return client.post(sms_url, data=form, headers=headers).status_code

    def chat_raw(body: bytes) -> int:
        with httpx.Client(timeout=15) as client:
            return client.post(chat + "/messages", content=body, headers=auth).status_code

    poisoned = [
        lambda: chat_raw(b'{"text": "hi \\u0000 there", "client_message_id": "poison-0001"}'),
        lambda: chat_raw(b'{"text": "hi", "client_message_id": "poison\\u0000002"}'),
        lambda: chat_raw(b'{"text": "lone \\ud800 surrogate", "client_message_id": "poison-0003"}'),
        lambda: sms(stack.sms_form(GLOW_NUMBER, _phone(), "nul \x00 in an sms")),
        lambda: sms(stack.sms_form(GLOW_NUMBER, _phone(), "a sid too long", sid="SM" + "a" * 300)),
    ]
    with ThreadPoolExecutor(len(good_forms) + len(poisoned)) as pool:
        bad = [pool.submit(call) for call in poisoned]
        good = [pool.submit(sms, form) for form in good_forms]
        bad_statuses = [f.result() for f in bad]
        good_statuses = [f.result() for f in good]
    assert bad_statuses == [400] * len(poisoned)
    assert good_statuses == [200] * len(good_forms)
    assert _recorded(stack.database, [f["MessageSid"] for f in good_forms]) == len(good_forms)
    with stack.database.tenant_scope(1) as session_:
        poisoned_rows = session_.execute(
            text("SELECT count(*) FROM inbox_events WHERE source = 'chat' AND payload->>'conversation_id' = :c"),
            {"c": str(session["conversation_id"])},
        ).scalar_one()
    assert poisoned_rows == 0
    stack.wait_idle()
