"""Benchmark adapters: a scripted model with a fixed latency and an SMS sink.

``MODEL_PROVIDER=bench`` and ``SMS_PROVIDER=sink`` select them; they exist so
``scripts/bench.py`` can measure the pipeline itself (zero-latency model) and
how many turns a worker keeps in flight against a slow model (e.g. 500 ms),
without any network.  Never used by default.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.ports import (
    ChatMessage,
    ModelReply,
    ModelUsage,
    OutboundSms,
    SmsSendResult,
    ToolCall,
    TurnContext,
)
from medspa.ids import fast_hex

if TYPE_CHECKING:
    import redis


class BenchModel:
    """Zero latency: calls one tool, then answers (two steps).  With a latency: answers in one step that
    takes ``latency_ms`` (a slow model's turn)."""

    def __init__(self, *, latency_ms: int = 0) -> None:
        self.latency_s = latency_ms / 1000
        self.name = f"bench:{latency_ms}ms"

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]], context: TurnContext
    ) -> ModelReply:
        usage = ModelUsage(prompt_tokens=sum(len(m.content or "") // 4 for m in messages), completion_tokens=8)
        if self.latency_s:
            time.sleep(self.latency_s)  # simulated model time (this adapter's whole purpose)
            return ModelReply(content="Thanks! We got your message.", usage=usage, model=self.name)
        if messages and messages[-1].role != "tool":
            call = ToolCall(id="call_" + fast_hex()[:10], name="get_my_appointments", arguments=json.dumps({}))
            return ModelReply(content=None, tool_calls=(call,), usage=usage, model=self.name)
        return ModelReply(content="Thanks! We got your message.", usage=usage, model=self.name)


SINK_CHANNEL = "bench:sms-sent"


class SinkSmsSender:
    """Accepts every message instantly (a zero-latency SMS provider for benchmarks) and announces each send
    on the Redis channel ``SINK_CHANNEL`` (the recipient's number), so a closed-loop benchmark learns that
    its reply went out without an HTTP provider fake of its own competing for the same two cores."""

    def __init__(self, redis_client: redis.Redis | None = None) -> None:
        self.redis = redis_client

    def send(self, message: OutboundSms) -> SmsSendResult:
        if self.redis is not None:
            self.redis.publish(SINK_CHANNEL, message.to)
        return SmsSendResult(provider_message_id="SINK" + fast_hex(), status="sent", segments=1)

    def find_sent(self, message: OutboundSms, since: datetime) -> str | None:
        return None
