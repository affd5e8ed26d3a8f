"""ChatModel over any OpenAI-compatible Chat Completions endpoint (OpenAI, Azure, vLLM, Ollama, llama.cpp).

The SDK's built-in retries are off; retries happen here with tenacity —
exponential backoff with jitter, honouring ``retry-after`` — on 408/409/429,
5xx, timeouts and connection errors, all inside one overall deadline so a
turn can't hang.  When the deadline or the attempts run out, or the error
can't be fixed by retrying (400/401/403/404/422), the adapter raises
:class:`domain.ports.ModelUnavailable` and the turn takes its failure path.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Sequence
from typing import Any

import openai
from openai.types.chat import ChatCompletion
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from domain.ports import ChatMessage, ModelReply, ModelUnavailable, ModelUsage, ToolCall, TurnContext
from worker.integrations.http_pools import OpenAIClients

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = {408, 409, 429}


class OpenAIChatModel:
    """One ``complete`` call = one model reply, with bounded retries (see module docstring)."""

    def __init__(
        self,
        api_key: str,
        base_url: str | None,
        model: str,
        *,
        timeout: float = 20,
        deadline_s: float = 30,
        max_attempts: int = 5,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 8.0,
        threads: int | None = None,
    ) -> None:
        """``threads``: the threads that call the model — one client per group of them, keeping a connection per
        thread (``worker/integrations/http_pools.py``); None: one client with the SDK's default pool."""
        self.name = f"openai:{model}"
        self.model = model
        self._timeout = timeout
        self._deadline_s = deadline_s
        self._max_attempts = max_attempts
        self._backoff = wait_random_exponential(multiplier=backoff_initial_s, max=backoff_max_s)
        self._backoff_max_s = backoff_max_s
        self._clients = OpenAIClients(
            lambda http_client: openai.OpenAI(
                api_key=api_key, base_url=base_url or None, max_retries=0, timeout=timeout, http_client=http_client
            ),
            threads,
        )

    @property
    def client(self) -> openai.OpenAI:
        """The SDK client this thread calls the model with."""
        return self._clients.for_this_thread()

    def close(self) -> None:
        self._clients.close()

    def complete(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[dict[str, Any]],
        context: TurnContext,
    ) -> ModelReply:
        request: dict[str, Any] = {"model": self.model, "messages": [to_openai_message(m) for m in messages]}
        if tools:
            request["tools"] = list(tools)
        deadline = time.monotonic() + self._deadline_s

        def attempt() -> ModelReply:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModelUnavailable("model deadline passed")
            # Posted as is, not through ``chat.completions.create``: the typed method runs every message and tool
            # schema through the SDK's TypedDict transform (``openai/_utils/_transform.py``), which for the agent's
            # request (every tool's JSON schema, the history) was half the worker's CPU with a real model — 12.5 ms
            # of worker CPU per turn against 4.4 with the bench model (``scripts/bench.py --only llm_bound
            # --model-client openai``).  The request is already in wire form (``to_openai_message``, the tools'
            # JSON schemas; chat parameters have no aliases to rename), and the SDK still does the rest: base URL,
            # auth, the timeout, errors as ``openai`` exceptions, the response as a ``ChatCompletion``.
            response = self.client.post(
                "/chat/completions",
                cast_to=ChatCompletion,
                body=request,
                options={"timeout": min(self._timeout, remaining)},
            )
            return _to_reply(response)

        retrying = Retrying(
            retry=retry_if_exception(is_retryable_openai_error),
            wait=self._wait,
            stop=stop_after_attempt(self._max_attempts) | _deadline_stop(deadline),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except ModelUnavailable:
            raise
        except openai.OpenAIError as exc:
            status = getattr(exc, "status_code", None)
            log.warning("openai gave up model=%s status=%s kind=%s", self.model, status, type(exc).__name__)
            raise ModelUnavailable(f"model unavailable: {type(exc).__name__} (HTTP {status})") from exc

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = _retry_after_s(exc) if exc is not None else None
        if hinted is not None:
            return max(0.0, hinted)  # the server's word, even above backoff_max_s; the deadline still caps it
        return float(self._backoff(state))


def _deadline_stop(deadline: float) -> Any:
    """Stop when the next sleep would end past the deadline (no point waking up just to time out)."""

    def stop(state: RetryCallState) -> bool:
        return time.monotonic() + state.upcoming_sleep >= deadline

    return stop


def is_retryable_openai_error(exc: BaseException) -> bool:
    """408/409/429, 5xx, timeouts and connection errors: worth another attempt."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRYABLE_STATUS or exc.status_code >= 500
    return False


def _retry_after_s(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if name == "retry-after" else None
            if parsed is not None:
                return parsed.timestamp() - time.time()
    return None


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "openai attempt=%d failed status=%s kind=%s retry_in=%.2fs",
        state.attempt_number,
        getattr(exc, "status_code", None),
        type(exc).__name__,
        state.upcoming_sleep,
    )


# ---------------------------------------------------------------- message shapes
def to_openai_message(message: ChatMessage) -> dict[str, Any]:
    """Domain ChatMessage → Chat Completions message dict."""
    if message.role == "tool":
        if not message.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content or ""}
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        out["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    elif out["content"] is None:
        out["content"] = ""
    if message.name and message.role in ("user", "system"):
        out["name"] = message.name
    if message.role == "user" and message.images:  # a vision model: text and images as content parts
        out["content"] = [
            {"type": "text", "text": message.content or ""},
            *({"type": "image_url", "image_url": {"url": url}} for url in message.images),
        ]
    return out


def from_openai_message(message: dict[str, Any]) -> ChatMessage:
    """Chat Completions message dict → domain ChatMessage (for stored transcripts)."""
    calls = tuple(
        ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"].get("arguments") or "")
        for c in message.get("tool_calls") or ()
        if c.get("type", "function") == "function"
    )
    return ChatMessage(
        role=message["role"],
        content=message.get("content"),
        tool_calls=calls,
        tool_call_id=message.get("tool_call_id"),
        name=message.get("name"),
    )


def _to_reply(response: Any) -> ModelReply:
    if not getattr(response, "choices", None):
        raise ModelUnavailable("model returned no choices")
    message = response.choices[0].message
    calls: list[ToolCall] = []
    for call in message.tool_calls or ():
        function = getattr(call, "function", None)
        if function is None:  # custom (non-function) tool calls are not ours
            continue
        calls.append(ToolCall(id=call.id, name=function.name or "", arguments=function.arguments or ""))
    usage = response.usage
    return ModelReply(
        content=message.content,
        tool_calls=tuple(calls),
        usage=ModelUsage(
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        ),
        model=str(response.model or ""),
    )
