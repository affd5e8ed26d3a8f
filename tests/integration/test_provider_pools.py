"""The providers' keep-alive pools are sized from the worker's threads (``worker/integrations/http_pools.py``).

Each case puts N calls in flight at once from N threads, through the official SDK, against the local fake, twice;
the fake holds its replies until all N arrived and counts the TCP connections it accepted.  With a pool of one
connection per thread the second round reuses the first round's N connections; with the SDK's default pool (100
for OpenAI's httpx client, at most 32 for Twilio's requests adapter) the calls past it open a new connection every
round, which is what a worker with hundreds of threads paid on every model call and SMS send.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import openai
import pytest

from domain.ports import ChatMessage, OutboundSms, TurnContext
from tests.fakes.http import FakeHttpServer
from tests.fakes.openai_api import FakeOpenAIApi
from tests.fakes.twilio_api import FakeTwilioApi
from worker.integrations.embedders import build_embedder
from worker.integrations.http_pools import THREADS_PER_CLIENT, OpenAIClients, keepalive_connections
from worker.integrations.openai_model import OpenAIChatModel
from worker.integrations.twilio_sms import TwilioSmsSender

OPENAI_KEY = "sk-test-not-a-secret"
TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "test-auth-token-not-a-secret"


def _two_rounds(fake: FakeHttpServer, threads: int, call: Callable[[int], Any]) -> tuple[int, int]:
    """Run ``threads`` concurrent calls twice; the connections the fake had accepted after each round."""
    accepted = []
    with ThreadPoolExecutor(threads) as pool:
        for round_ in (1, 2):
            fake.hold_replies_until(threads * round_)
            list(pool.map(call, range(threads)))
            accepted.append(fake.connections)
    fake.assert_clean()
    return accepted[0], accepted[1]


@pytest.mark.parametrize("sized", [True, False], ids=["sized", "sdk-default"])
def test_model_calls_keep_one_connection_per_thread(sized: bool) -> None:
    threads = 120  # more than the SDK's default keep-alive pool (100)
    with FakeOpenAIApi(OPENAI_KEY) as fake:
        fake.responder = lambda _body: {"role": "assistant", "content": "We open at 9."}
        model = OpenAIChatModel(OPENAI_KEY, fake.base_url + "/v1", "gpt-4o-mini", threads=threads if sized else None)
        context = TurnContext(
            clinic_timezone="America/New_York", now=datetime(2031, 1, 1, tzinfo=UTC), agent_state="idle"
        )

        def call(i: int) -> str:
            return model.complete([ChatMessage(role="user", content=f"hours? {i}")], [], context).content or ""

        first, second = _two_rounds(fake, threads, call)
        model.close()
    assert first == threads
    if sized:
        assert second == threads  # every call of the second round found a kept connection
    else:
        assert second > threads  # the calls past the default pool reconnected


def test_embedding_calls_keep_one_connection_per_thread() -> None:
    threads = 110
    with FakeOpenAIApi(OPENAI_KEY) as fake:
        embedder = build_embedder(OPENAI_KEY, openai_base_url=fake.base_url + "/v1", threads=threads)
        assert embedder is not None
        first, second = _two_rounds(fake, threads, lambda i: embedder.embed([f"botox price {i}"]))
    assert (first, second) == (threads, threads)


@pytest.mark.parametrize("sized", [True, False], ids=["sized", "sdk-default"])
def test_sms_sends_keep_one_connection_per_thread(sized: bool, caplog: pytest.LogCaptureFixture) -> None:
    threads = 40  # more than the SDK's pool on any machine (min(32, cores + 4); requests' 10 for http://)
    with FakeTwilioApi(TWILIO_SID, TWILIO_TOKEN) as fake:
        sender = TwilioSmsSender(
            TWILIO_SID,
            TWILIO_TOKEN,
            base_url_override=fake.base_url,
            connections=keepalive_connections(threads) if sized else None,
        )

        def send(i: int) -> str:
            sms = OutboundSms(outbox_id=i, clinic_id=1, to=f"+1555123{i:04d}", from_="+15559870000", body="See you!")
            return sender.send(sms).provider_message_id

        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            first, second = _two_rounds(fake, threads, send)
    assert first == threads
    pool_full = [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
    if sized:
        assert second == threads
        assert not pool_full
    else:
        assert second > threads
        assert pool_full  # urllib3 warned for every connection it had no room to keep


def test_each_group_of_threads_gets_a_client_of_its_own_and_keeps_it() -> None:
    threads = 3 * THREADS_PER_CLIENT + 5
    built: list[openai.OpenAI] = []

    def build(http_client: Any) -> openai.OpenAI:
        built.append(openai.OpenAI(api_key=OPENAI_KEY, base_url="http://127.0.0.1:9/v1", http_client=http_client))
        return built[-1]

    clients = OpenAIClients(build, threads)
    assert len(clients) == 4 == len(built)

    def first_and_again(_: int) -> tuple[int, int]:
        return id(clients.for_this_thread()), id(clients.for_this_thread())

    with ThreadPoolExecutor(threads) as pool:
        # Every task waits for all the others, so each runs on a thread of its own.
        barrier = threading.Barrier(threads, timeout=10)
        pairs = list(pool.map(lambda i: (barrier.wait(), first_and_again(i))[1], range(threads)))
    clients.close()
    assert all(first == again for first, again in pairs)  # a thread keeps its client
    per_client = Counter(first for first, _ in pairs)
    assert sorted(per_client.values()) == [25, 25, 25, 26]  # round robin: no client serves more than its pool keeps
