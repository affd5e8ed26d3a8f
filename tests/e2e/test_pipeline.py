"""The conversation pipeline under duplicates, load, crashes and bad input (real app, Redis, workers, Postgres)."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from sqlalchemy import text

from tests.fakes.twilio_api import twilio_signature
from tests.support.infra import wait_for
from tests.support.stack import (
    FAST_RECOVERY,
    GLOW_NUMBER,
    TWILIO_TOKEN,
    echo_responder,
    running_process_stack,
    running_stack,
)

MARKER = re.compile(r"c\d+-m\d+")


def _phone(prefix: str = "+1415666") -> str:
    return prefix + str(random.randint(0, 9999)).zfill(4)


def _inbox_count(database, clinic_id: int = 1) -> int:
    with database.tenant_scope(clinic_id) as session:
        return int(session.execute(text("SELECT count(*) FROM inbox_events")).scalar_one())


def _queue_lengths(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(int(client.llen(k)) for k in client.keys("dramatiq:*") if client.type(k) == b"list")
    finally:
        client.close()


# ------------------------------------------------------------------ duplicates
def test_five_concurrent_replays_of_one_webhook_make_one_message_and_one_turn(infra, tmp_path):
    with running_stack(infra, tmp_path, model_provider="openai") as (stack, _):
        stack.openai.responder = echo_responder
        phone = _phone()
        form = stack.sms_form(GLOW_NUMBER, phone, "hi there [c1-m1]")
        barrier = threading.Barrier(5)

        def post() -> int:
            barrier.wait()
            return stack.post_twilio("/webhooks/twilio/sms", form).status_code

        with ThreadPoolExecutor(5) as pool:
            statuses = list(pool.map(lambda _: post(), range(5)))
        assert statuses == [200] * 5
        assert stack.wait_replies(phone, 1) == ["ack c1-m1"]
        stack.wait_idle()
        with stack.database.tenant_scope(1) as session:
            counts = session.execute(
                text(
                    """SELECT (SELECT count(*) FROM inbox_events WHERE provider_event_id = :sid),
                          (SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
                           JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = :p AND m.role = 'user'),
                          (SELECT count(*) FROM turns t JOIN conversations c ON c.id = t.conversation_id
                           JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = :p)"""
                ),
                {"sid": form["MessageSid"], "p": phone},
            ).one()
        assert tuple(counts) == (1, 1, 1)
        assert stack.replies_to(phone) == ["ack c1-m1"]


# ------------------------------------------------------------------ bad input
def test_bad_requests_get_the_right_status_and_enqueue_nothing(infra, tmp_path):
    with running_stack(infra, tmp_path, inprocess_worker=False) as (stack, _):
        before_inbox, before_queue = _inbox_count(stack.database), _queue_lengths(infra.redis_url)
        url = stack.base_url + "/webhooks/twilio/sms"
        form = stack.sms_form(GLOW_NUMBER, _phone(), "hello")
        sign = twilio_signature(TWILIO_TOKEN, url, form)
        http = stack.http
        assert http.post(url, data=form, headers={"X-Twilio-Signature": "bogus"}).status_code == 403
        assert http.post(url, data=form).status_code == 403
        wrong_url = twilio_signature(TWILIO_TOKEN, "https://evil.example/webhooks/twilio/sms", form)
        assert http.post(url, data=form, headers={"X-Twilio-Signature": wrong_url}).status_code == 403
        tampered = dict(form, Body="cancel everything")
        assert http.post(url, data=tampered, headers={"X-Twilio-Signature": sign}).status_code == 403
        missing = {k: v for k, v in form.items() if k != "From"}
        response = stack.post_twilio("/webhooks/twilio/sms", missing)
        assert response.status_code == 400 and "From" in response.json()["error"]
        # Longer than any phone number (the column holding the sender's is 20 characters): refused, not a 200 for
        # a text no worker could ever attach.
        response = stack.post_twilio("/webhooks/twilio/sms", dict(form, From="whatsapp:+14155550" + "1" * 6))
        assert response.status_code == 400 and "From" in response.json()["error"]
        big = dict(form, Body="x" * (70 * 1024))
        assert stack.post_twilio("/webhooks/twilio/sms", big).status_code == 413
        unknown = dict(form, To="+15005550000")
        assert stack.post_twilio("/webhooks/twilio/sms", unknown).status_code == 404
        assert http.post(stack.base_url + "/webhooks/stripe", content=b"{}").status_code == 403
        assert (
            http.post(
                stack.base_url + "/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=deadbeef"}
            ).status_code
            == 403
        )
        # web chat: forged and expired tokens, disallowed origin
        chat = stack.base_url + "/webhooks/chat"
        body = {"text": "hi", "client_message_id": "abcdefgh1234"}
        assert (
            http.post(chat + "/messages", json=body, headers={"Authorization": "Bearer v1.e30.forged"}).status_code
            == 401
        )
        assert http.post(chat + "/messages", json=body).status_code == 401
        from webhooks.chat_tokens import ChatClaims, issue_ticket, issue_token

        expired = issue_token("test-chat-secret", ChatClaims("s", 1, 1, 1, int(time.time()) - 5))
        assert (
            http.post(chat + "/messages", json=body, headers={"Authorization": f"Bearer {expired}"}).status_code == 401
        )
        other_secret = issue_token("not-our-secret", ChatClaims("s", 1, 1, 1, int(time.time()) + 600))
        assert http.get(chat + "/stream", headers={"Authorization": f"Bearer {other_secret}"}).status_code == 401
        other_ticket, _ = issue_ticket("not-our-secret", ChatClaims("s", 1, 1, 1, int(time.time()) + 600), 60)
        assert http.get(chat + f"/stream?ticket={other_ticket}").status_code == 401
        refused = http.post(
            chat + "/session", json={"clinic_key": "glow-medspa-public"}, headers={"Origin": "https://evil.example"}
        )
        assert refused.status_code == 403
        assert _inbox_count(stack.database) == before_inbox
        assert _queue_lengths(infra.redis_url) == before_queue


def test_a_chat_session_sees_only_its_own_conversation(stack):
    chat = stack.base_url + "/webhooks/chat"
    origin = {"Origin": "http://127.0.0.1:8000"}
    a = stack.http.post(chat + "/session", json={"clinic_key": "glow-medspa-public"}, headers=origin).json()
    b = stack.http.post(chat + "/session", json={"clinic_key": "glow-medspa-public"}, headers=origin).json()
    assert a["conversation_id"] != b["conversation_id"]
    sent = stack.http.post(
        chat + "/messages",
        headers={"Authorization": f"Bearer {b['session_token']}", **origin},
        json={"text": "what are your hours?", "client_message_id": "b-message-0001"},
    )
    assert sent.status_code == 202
    stack.wait_idle()
    # B's reply is on B's stream; A's token resumes A's (empty) conversation and cannot name B's.
    resumed = stack.http.post(
        chat + "/session",
        headers=origin,
        json={"clinic_key": "glow-medspa-public", "session_token": a["session_token"]},
    ).json()
    assert resumed["conversation_id"] == a["conversation_id"] and resumed["history"] == []
    b_history = stack.http.post(
        chat + "/session",
        headers=origin,
        json={"clinic_key": "glow-medspa-public", "session_token": b["session_token"]},
    ).json()
    assert [m["role"] for m in b_history["history"]][:2] == ["user", "assistant"]
    with stack.http.stream("GET", chat + f"/stream?ticket={resumed['stream_ticket']}&last_event_id=0-0") as response:
        assert response.status_code == 200
        first = next(response.iter_lines())
    assert first.startswith(":")  # only the connect comment: nothing of B's conversation
    with stack.http.stream("GET", chat + f"/stream?ticket={b_history['stream_ticket']}&last_event_id=0-0") as response:
        lines = []
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("event: message"):
                break
    assert any(line.startswith("event: message") for line in lines)


# ------------------------------------------------------------------ compliance
def test_stop_is_confirmed_once_and_the_number_gets_nothing_more(stack):
    phone = _phone()
    stack.send_sms(GLOW_NUMBER, phone, "  Stop. ")
    confirmation = stack.wait_replies(phone, 1)
    assert "opted out" in confirmation[0].lower() or "unsubscribed" in confirmation[0].lower()
    stack.send_sms(GLOW_NUMBER, phone, "hello? what are your hours")
    stack.wait_idle()
    assert len(stack.replies_to(phone)) == 1
    with stack.database.tenant_scope(1) as session:
        consent, ledger = session.execute(
            text(
                """SELECT cl.consent_state, (SELECT count(*) FROM consent_events e WHERE e.client_id = cl.id
                                          AND e.kind = 'opt_out' AND e.source = 'sms_keyword')
               FROM clients cl WHERE phone_e164 = :p"""
            ),
            {"p": phone},
        ).one()
    assert consent == "opted_out" and ledger == 1
    stack.send_sms(GLOW_NUMBER, phone, "START")
    assert len(stack.wait_replies(phone, 2)) == 2


def test_help_answers_with_clinic_name_phone_and_opt_out_instructions(stack):
    phone = _phone()
    stack.send_sms(GLOW_NUMBER, phone, "help")
    (reply,) = stack.wait_replies(phone, 1)
    assert "Glow MedSpa" in reply and "STOP" in reply and ("555-0100" in reply or "5550100" in reply)


def test_cancel_my_appointment_is_not_an_opt_out(stack):
    phone = _phone()
    stack.send_sms(GLOW_NUMBER, phone, "cancel my appointment please")
    stack.wait_replies(phone, 1)
    with stack.database.tenant_scope(1) as session:
        consent = session.execute(
            text("SELECT consent_state FROM clients WHERE phone_e164 = :p"), {"p": phone}
        ).scalar()
    assert consent != "opted_out"


# ------------------------------------------------------------------ long turns
def test_a_model_slower_than_the_lease_runs_one_turn_per_conversation(infra, tmp_path):
    """Issue 13 item 6: a turn outlasting LEASE_SECONDS keeps its lease (heartbeat).  Without renewal the lease
    expires mid-call, the sweeper hands the conversation to another worker thread, and a second turn calls the
    model for the same message (the first turn's commit is then discarded by the fence)."""
    lease_s, model_s = 2, 8.0  # the sweeper re-runs a conversation idle for 5 s whose lease expired
    with running_stack(infra, tmp_path, model_provider="openai", lease_seconds=lease_s) as (stack, _):
        calls: list[float] = []
        in_flight = {"now": 0, "max": 0}
        lock = threading.Lock()

        def slow_model(body):
            with lock:
                calls.append(time.monotonic())
                in_flight["now"] += 1
                in_flight["max"] = max(in_flight["max"], in_flight["now"])
            try:
                time.sleep(model_s)  # the model's think time (slower than the lease), not synchronisation
            finally:
                with lock:
                    in_flight["now"] -= 1
            return {"role": "assistant", "content": "ack " + " ".join(MARKER.findall(body["messages"][-1]["content"]))}

        stack.openai.responder = slow_model
        phone = _phone()
        stack.send_sms(GLOW_NUMBER, phone, "is anyone there? [c1-m1]")
        from worker.sending import enqueue

        swept = {"at": 0.0}

        def replied_while_sweeping() -> list[str]:
            if time.monotonic() - swept["at"] >= 1.0:  # the scheduler's sweep, every second instead of every 10
                enqueue("sweep")
                swept["at"] = time.monotonic()
            return stack.replies_to(phone)

        wait_for(lambda: replied_while_sweeping() or len(calls) > 1, 60, interval=0.1, what="the reply")
        assert len(calls) == 1, f"{len(calls)} model calls for one message: another worker ran a parallel turn"
        stack.wait_idle()
        with stack.database.tenant_scope(1) as session:
            turns = session.execute(
                text(
                    """SELECT count(*) FROM turns t JOIN conversations c ON c.id = t.conversation_id
                       JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = :p"""
                ),
                {"p": phone},
            ).scalar_one()
        replies = stack.replies_to(phone)
    assert len(calls) == 1, f"{len(calls)} model calls for one message: another worker ran a parallel turn"
    assert in_flight["max"] == 1
    assert turns == 1
    assert replies == ["ack c1-m1"]


def _counter(name: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name) or 0.0


def test_a_turn_whose_lease_is_taken_over_stops_before_its_next_step(infra, tmp_path):
    """Another worker takes the conversation over while the model is thinking (here the test does, as that
    worker would).  The heartbeat finds the lease gone: the turn makes no further tool or model call, commits
    nothing and sends nothing."""
    with running_stack(infra, tmp_path, model_provider="openai", lease_seconds=3) as (stack, _):
        phone = _phone()
        calls: list[dict] = []

        def taken_over_while_thinking(body):
            calls.append(body)
            if len(calls) == 1:
                with stack.database.tenant_scope(1) as session:
                    session.execute(
                        text(
                            """UPDATE conversations SET version = version + 1, lease_owner = 'another-worker:1',
                                      lease_expires_at = now() + interval '60 seconds'
                               WHERE client_id = (SELECT id FROM clients WHERE phone_e164 = :p)"""
                        ),
                        {"p": phone},
                    )
                time.sleep(2.5)  # the model's think time: the heartbeat (every second) runs meanwhile
            return echo_responder(body)  # a tool call first: the turn would go on to the tool and a second call

        stopped_before = _counter("medspa_turns_withdrawn_total") + _counter("medspa_stale_turns_total")
        stack.openai.responder = taken_over_while_thinking
        stack.send_sms(GLOW_NUMBER, phone, "what do I have booked? [c1-m1]")
        wait_for(
            lambda: _counter("medspa_turns_withdrawn_total") + _counter("medspa_stale_turns_total") > stopped_before,
            30,
            what="the turn to stop (withdrawn, or discarded at its commit)",
        )
        replies = stack.replies_to(phone)
        with stack.database.tenant_scope(1) as session:
            turns = session.execute(
                text(
                    """SELECT count(*) FROM turns t JOIN conversations c ON c.id = t.conversation_id
                       JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = :p"""
                ),
                {"p": phone},
            ).scalar_one()
    assert len(calls) == 1, f"{len(calls)} model calls: the turn went on after losing its lease"
    assert _counter("medspa_turns_withdrawn_total") > 0
    assert replies == [] and turns == 0


# ------------------------------------------------------------------ load, ordering, coalescing
def _send_conversation(stack, client: httpx.Client, phone: str, index: int, count: int) -> None:
    url = stack.base_url + "/webhooks/twilio/sms"
    for m in range(1, count + 1):
        form = stack.sms_form(GLOW_NUMBER, phone, f"message [c{index}-m{m}]")
        response = client.post(
            url, data=form, headers={"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, form)}
        )
        assert response.status_code == 200


def _check_exactly_once_in_order(stack, phones: dict[str, int], per_conversation: int) -> dict[str, int]:
    stats = {"turns": 0, "messages": 0}
    by_phone = defaultdict(list)
    for message in list(stack.twilio.messages):
        by_phone[message.to].append(message.body)
    for phone, index in phones.items():
        markers = [m for body in by_phone[phone] for m in MARKER.findall(body)]
        expected = [f"c{index}-m{m}" for m in range(1, per_conversation + 1)]
        assert Counter(markers) == Counter(expected), f"conversation {index}: {markers}"
        assert markers == expected, f"conversation {index} answered out of order: {markers}"
    with stack.database.tenant_scope(1) as session:
        rows = session.execute(
            text(
                """SELECT cl.phone_e164, t.first_seq, t.last_seq, t.started_at, t.finished_at
               FROM turns t JOIN conversations c ON c.id = t.conversation_id JOIN clients cl ON cl.id = c.client_id
               WHERE cl.phone_e164 = ANY(:phones) ORDER BY cl.phone_e164, t.first_seq"""
            ),
            {"phones": list(phones)},
        ).all()
        seqs = session.execute(
            text(
                """SELECT cl.phone_e164, m.inbound_seq, m.body FROM messages m
               JOIN conversations c ON c.id = m.conversation_id JOIN clients cl ON cl.id = c.client_id
               WHERE cl.phone_e164 = ANY(:phones) AND m.role = 'user' ORDER BY cl.phone_e164, m.inbound_seq"""
            ),
            {"phones": list(phones)},
        ).all()
    turns = defaultdict(list)
    for phone, first, last, started, finished in rows:
        turns[phone].append((first, last, started, finished))
    for spans in turns.values():
        covered = [s for first, last, _, _ in spans for s in range(first, last + 1)]
        assert covered == list(range(1, per_conversation + 1)), f"turn ranges overlap or skip: {spans}"
        for (_, _, _, prev_end), (_, _, next_start, _) in zip(spans, spans[1:], strict=False):
            assert next_start >= prev_end - _clock_slack(), "two turns of one conversation overlapped"
    inbound = defaultdict(list)
    for phone, _seq, body in seqs:  # already ordered by inbound_seq
        inbound[phone].append(MARKER.search(body).group(0))
    for phone, index in phones.items():
        assert inbound[phone] == [f"c{index}-m{m}" for m in range(1, per_conversation + 1)]
    stats["turns"] = len(rows)
    stats["messages"] = len(seqs)
    return stats


def _clock_slack():
    from datetime import timedelta

    # started_at is the worker's clock, finished_at the database's: same machine, allow a few ms of skew.
    return timedelta(milliseconds=50)


@pytest.mark.slow
def test_200_conversations_of_10_messages_exactly_once_in_order_and_coalesced(infra, tmp_path):
    conversations, per_conversation = 200, 10
    with running_process_stack(infra, tmp_path, workers=((2, 4),)) as procs:
        stack = procs.stack
        phones = {f"+1415{3000000 + i:07d}": i for i in range(conversations)}
        with (
            httpx.Client(timeout=30, limits=httpx.Limits(max_connections=32)) as client,
            ThreadPoolExecutor(32) as pool,
        ):
            list(
                pool.map(
                    lambda item: _send_conversation(stack, client, item[0], item[1], per_conversation), phones.items()
                )
            )
        stack.wait_idle(timeout=240)
        stats = _check_exactly_once_in_order(stack, phones, per_conversation)
    assert stats["messages"] == conversations * per_conversation
    assert stats["turns"] < stats["messages"], "bursts should be coalesced into fewer turns"


@pytest.mark.slow
def test_sigkill_of_a_worker_mid_load_loses_nothing_and_sends_nothing_twice(infra, tmp_path):
    conversations, per_conversation = 60, 5
    with running_process_stack(infra, tmp_path, workers=((1, 4), (1, 4)), **FAST_RECOVERY) as procs:
        stack = procs.stack

        def slow_echo(body):  # a model that takes 50 ms keeps turns in flight when the kill lands
            time.sleep(0.05)
            return echo_responder(body)

        stack.openai.responder = slow_echo
        phones = {f"+1415{4000000 + i:07d}": i for i in range(conversations)}
        with httpx.Client(timeout=30) as client, ThreadPoolExecutor(16) as pool:
            futures = [
                pool.submit(_send_conversation, stack, client, p, i, per_conversation) for p, i in phones.items()
            ]
            wait_for(lambda: len(stack.twilio.messages) >= 20, 60, what="turns under way")
            victim = procs.workers[0]
            victim.kill()
            killed_at = time.monotonic()
            for future in futures:
                future.result()
        stack.wait_idle(timeout=120)
        recovered_in = time.monotonic() - killed_at
        _check_exactly_once_in_order(stack, phones, per_conversation)
    assert recovered_in <= 90, f"recovery took {recovered_in:.0f}s"


@pytest.mark.slow
def test_redis_flushed_after_acknowledgement_the_sweeper_recovers_every_event(infra, tmp_path):
    with running_process_stack(infra, tmp_path, workers=(), scheduler=False, **FAST_RECOVERY) as procs:
        stack = procs.stack
        phones = {f"+1415{5000000 + i:07d}": i for i in range(20)}
        with httpx.Client(timeout=30) as client:
            for phone, index in phones.items():
                _send_conversation(stack, client, phone, index, 2)
        client_redis = redis.Redis.from_url(infra.redis_url)
        wait_for(lambda: client_redis.llen("dramatiq:inbound") >= 40, 10, what="enqueued inbound events")
        client_redis.flushall()  # everything acknowledged is now only in Postgres
        client_redis.close()
        procs.add_worker(processes=1, threads=4)
        procs.start_scheduler()
        stack.wait_idle(timeout=90)
        _check_exactly_once_in_order(stack, phones, 2)
