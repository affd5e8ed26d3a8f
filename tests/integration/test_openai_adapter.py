"""OpenAIChatModel through the real openai SDK against the local Chat Completions fake."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from domain.ports import ChatMessage, ModelUnavailable, ToolCall, TurnContext
from tests.fakes.openai_api import FakeOpenAIApi, openai_error, text_reply, tool_calls_reply
from worker.integrations.openai_model import OpenAIChatModel, from_openai_message, to_openai_message

KEY = "sk-test-local-fake"
CONTEXT = TurnContext(clinic_timezone="America/New_York", now=datetime(2031, 1, 1, tzinfo=UTC), agent_state="idle")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_availability",
            "description": "Find open slots",
            "parameters": {
                "type": "object",
                "properties": {"service": {"type": "string"}, "date": {"type": "string"}},
                "required": ["service"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "answer_question",
            "description": "Search the knowledge base",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        },
    },
]
MESSAGES = [
    ChatMessage(role="system", content="You are the clinic's assistant."),
    ChatMessage(role="user", content="Can I book Botox next Tuesday?"),
]


@pytest.fixture
def fake() -> Iterator[FakeOpenAIApi]:
    with FakeOpenAIApi(KEY) as server:
        yield server


def _model(fake: FakeOpenAIApi, **kwargs: object) -> OpenAIChatModel:
    options: dict[str, object] = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    options.update(kwargs)
    return OpenAIChatModel(KEY, fake.base_url + "/v1", "gpt-4o-mini", **options)  # type: ignore[arg-type]


def test_text_reply_and_request_shape(fake: FakeOpenAIApi) -> None:
    fake.reply_with(text_reply("Sure — which time suits you?"))
    reply = _model(fake).complete(MESSAGES, TOOLS, CONTEXT)

    assert reply.content == "Sure — which time suits you?"
    assert reply.tool_calls == ()
    assert reply.model == "gpt-4o-mini-2024-07-18"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    body = fake.requests[0].json()
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [
        {"role": "system", "content": "You are the clinic's assistant."},
        {"role": "user", "content": "Can I book Botox next Tuesday?"},
    ]
    assert body["tools"] == TOOLS
    assert set(body) == {"model", "messages", "tools"}  # the request as built, nothing added (no tool_choice)
    assert fake.requests[0].header("Authorization") == f"Bearer {KEY}"
    fake.assert_clean()


def test_no_tools_means_no_tools_field(fake: FakeOpenAIApi) -> None:
    fake.reply_with(text_reply("Hello"))
    _model(fake).complete(MESSAGES, [], CONTEXT)
    assert "tools" not in fake.requests[0].json()


def test_single_and_parallel_tool_calls(fake: FakeOpenAIApi) -> None:
    fake.reply_with(
        tool_calls_reply(("search_availability", '{"service": "botox", "date": "2031-01-07"}')),
        tool_calls_reply(("search_availability", '{"service": "botox"}'), ("answer_question", '{"query": "price"}')),
    )
    model = _model(fake)
    single = model.complete(MESSAGES, TOOLS, CONTEXT)
    parallel = model.complete(MESSAGES, TOOLS, CONTEXT)

    assert [c.name for c in single.tool_calls] == ["search_availability"]
    assert json.loads(single.tool_calls[0].arguments) == {"service": "botox", "date": "2031-01-07"}
    assert single.tool_calls[0].id.startswith("call_")
    assert [c.name for c in parallel.tool_calls] == ["search_availability", "answer_question"]
    assert len({c.id for c in parallel.tool_calls}) == 2


def test_malformed_arguments_and_unknown_tools_pass_through_raw(fake: FakeOpenAIApi) -> None:
    fake.reply_with(tool_calls_reply(("search_availability", '{"service": "botox"'), ("launch_rockets", "{}")))
    reply = _model(fake).complete(MESSAGES, TOOLS, CONTEXT)
    assert reply.tool_calls[0].arguments == '{"service": "botox"'  # the domain decides what to do with it
    assert reply.tool_calls[1].name == "launch_rockets"


def test_tool_round_trip_is_well_formed_on_the_wire(fake: FakeOpenAIApi) -> None:
    call = ToolCall(id="call_abc", name="search_availability", arguments='{"service":"botox"}')
    history = [
        *MESSAGES,
        ChatMessage(role="assistant", content=None, tool_calls=(call,)),
        ChatMessage(role="tool", tool_call_id="call_abc", content='{"slots": ["10:00", "11:30"]}'),
    ]
    fake.reply_with(text_reply("I have 10:00 or 11:30."))
    reply = _model(fake).complete(history, TOOLS, CONTEXT)

    assert reply.content == "I have 10:00 or 11:30."
    sent = fake.requests[0].json()["messages"]
    assert sent[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "search_availability", "arguments": '{"service":"botox"}'},
            }
        ],
    }
    assert sent[3] == {"role": "tool", "tool_call_id": "call_abc", "content": '{"slots": ["10:00", "11:30"]}'}
    assert [from_openai_message(m) for m in sent] == history
    fake.assert_clean()


def test_unanswered_tool_call_is_rejected_by_the_fake_and_not_retried(fake: FakeOpenAIApi) -> None:
    call = ToolCall(id="call_x", name="search_availability", arguments="{}")
    broken = [*MESSAGES, ChatMessage(role="assistant", tool_calls=(call,))]
    with pytest.raises(ModelUnavailable):
        _model(fake).complete(broken, TOOLS, CONTEXT)
    assert len(fake.requests) == 1  # 400 is not retryable
    assert fake.violations


def test_429_honours_retry_after_then_succeeds(fake: FakeOpenAIApi) -> None:
    fake.rate_limit_next(1, retry_after_ms=200)
    fake.reply_with(text_reply("ok"))
    reply = _model(fake).complete(MESSAGES, TOOLS, CONTEXT)

    assert reply.content == "ok"
    first, second = fake.wait_for_requests(2)
    assert second.received_at - first.received_at >= 0.2
    assert fake.statuses() == [429, 200]


def test_retry_after_beyond_the_deadline_gives_up_at_once(fake: FakeOpenAIApi) -> None:
    fake.rate_limit_next(1, retry_after_ms=60_000)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable):
        _model(fake, deadline_s=5).complete(MESSAGES, TOOLS, CONTEXT)
    assert time.monotonic() - started < 2
    assert len(fake.requests) == 1


def test_server_errors_forever_exhaust_attempts(fake: FakeOpenAIApi) -> None:
    fake.server_error_forever()
    with pytest.raises(ModelUnavailable):
        _model(fake, max_attempts=4).complete(MESSAGES, TOOLS, CONTEXT)
    assert fake.statuses() == [500, 500, 500, 500]


def test_server_errors_stop_at_the_deadline(fake: FakeOpenAIApi) -> None:
    fake.server_error_forever(503)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable):
        _model(fake, max_attempts=1000, deadline_s=0.6, backoff_initial_s=0.1, backoff_max_s=0.2).complete(
            MESSAGES, TOOLS, CONTEXT
        )
    elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert 2 <= len(fake.requests) < 1000


def test_timeout_is_retried(fake: FakeOpenAIApi) -> None:
    fake.delay_next(5.0)
    fake.reply_with(text_reply("after the timeout"))
    reply = _model(fake, timeout=0.3).complete(MESSAGES, TOOLS, CONTEXT)
    assert reply.content == "after the timeout"
    assert len(fake.wait_for_requests(2)) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_fail_immediately(fake: FakeOpenAIApi, status: int) -> None:
    fake.script(openai_error(status, "no", "invalid_request_error"))
    with pytest.raises(ModelUnavailable):
        _model(fake).complete(MESSAGES, TOOLS, CONTEXT)
    assert len(fake.requests) == 1


def test_unreachable_server_is_unavailable() -> None:
    with FakeOpenAIApi(KEY) as gone:
        url = gone.base_url
    model = OpenAIChatModel(KEY, url + "/v1", "m", deadline_s=1, backoff_initial_s=0.01, backoff_max_s=0.05)
    with pytest.raises(ModelUnavailable):
        model.complete(MESSAGES, TOOLS, CONTEXT)


def test_logs_carry_no_message_content(fake: FakeOpenAIApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="worker.integrations")
    fake.server_error_next(2)
    fake.reply_with(text_reply("fine"))
    _model(fake).complete(MESSAGES, TOOLS, CONTEXT)
    assert "attempt=1" in caplog.text and "attempt=2" in caplog.text
    assert "Botox" not in caplog.text


def test_message_conversion_rules() -> None:
    assert to_openai_message(ChatMessage(role="user", content=None)) == {"role": "user", "content": ""}
    assert to_openai_message(ChatMessage(role="tool", tool_call_id="c1", content=None)) == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "",
    }
    with pytest.raises(ValueError):
        to_openai_message(ChatMessage(role="tool", content="x"))
