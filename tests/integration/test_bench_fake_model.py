"""The benchmarks' fake model endpoint (``scripts/bench_fake_model.py``) as ``llm_bound --model-client openai``
uses it: under uvicorn in a process of its own, answering the worker's real OpenAI adapter after its latency."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import httpx

from domain.ports import ChatMessage, TurnContext
from scripts.bench import Processes, start_fake_model
from worker.integrations.openai_model import OpenAIChatModel

CONTEXT = TurnContext(clinic_timezone="America/New_York", now=datetime(2031, 1, 1, tzinfo=UTC), agent_state="idle")
TOOL = {
    "type": "function",
    "function": {"name": "get_my_appointments", "description": "d", "parameters": {"type": "object", "properties": {}}},
}


def test_the_fake_model_answers_the_real_adapter_after_its_latency(tmp_path: Path) -> None:
    procs = Processes()
    try:
        url, server = start_fake_model(procs, SimpleNamespace(data_dir=tmp_path), latency_ms=1000)  # type: ignore[arg-type]
        assert server.poll() is None
        model = OpenAIChatModel("sk-bench-not-a-secret", url + "/v1", "bench-model", threads=4)
        started = time.monotonic()
        reply = model.complete([ChatMessage(role="user", content="What are your hours?")], [TOOL], CONTEXT)
        elapsed = time.monotonic() - started
        model.close()
        assert reply.content and "open" in reply.content
        assert reply.tool_calls == ()
        assert reply.model == "bench-model"
        assert reply.usage.prompt_tokens > 0
        assert 1.0 <= elapsed < 5.0  # the latency it was started with, not more than a little on top

        # A caller's header overrides the latency; a request that is not a chat completion is refused.
        fast = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": "Bearer k", "x-bench-latency-ms": "0"},
            timeout=5,
        )
        assert fast.status_code == 200 and fast.elapsed.total_seconds() < 0.9
        assert httpx.post(url + "/v1/chat/completions", json={"model": "m"}, timeout=5).status_code == 401
        refused = httpx.post(url + "/v1/chat/completions", json={"model": "m"}, headers={"authorization": "Bearer k"})
        assert refused.status_code == 400
    finally:
        procs.stop_all()
