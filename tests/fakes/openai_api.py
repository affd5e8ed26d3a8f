"""Local stand-in for the OpenAI Chat Completions and Embeddings endpoints.

Checks the request the ``openai`` SDK sends — model, message list with
consistent tool-call / tool-result pairing, tools as ``type: function`` with a
JSON-schema ``parameters`` object, ``tool_choice`` absent or ``auto`` — and
replies with scripted completions in order (text, tool calls, malformed
arguments, unknown tools) or scripted failures (429 with retry-after, 500s).
Embeddings are deterministic pseudo-vectors of the requested dimensions.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tests.fakes.http import FakeHttpServer, RecordedRequest, Reply, require

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ROLES = {"system", "developer", "user", "assistant", "tool"}


def text_reply(content: str) -> dict[str, Any]:
    """A scripted assistant message with text only."""
    return {"role": "assistant", "content": content}


def tool_calls_reply(*calls: tuple[str, str], content: str | None = None) -> dict[str, Any]:
    """A scripted assistant message calling tools; each call is (name, raw JSON arguments — may be malformed)."""
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"id": "call_" + secrets.token_hex(12), "type": "function", "function": {"name": n, "arguments": a}}
            for n, a in calls
        ],
    }


def openai_error(status: int, message: str, type_: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status,
        {"error": {"message": message, "type": type_, "param": None, "code": None}},
        headers=headers or {},
    )


class FakeOpenAIApi(FakeHttpServer):
    """POST /v1/chat/completions and /v1/embeddings."""

    def __init__(self, api_key: str, *, model_name: str = "gpt-4o-mini-2024-07-18") -> None:
        super().__init__()
        self.api_key = api_key
        self.model_name = model_name
        self._replies: deque[dict[str, Any]] = deque()
        self._replies_lock = threading.Lock()
        # Optional: compute each reply from the request (concurrent conversations) instead of a queue.
        self.responder: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    # ------------------------------------------------------------ scripting
    def reply_with(self, *messages: dict[str, Any]) -> None:
        """Queue assistant messages for the next successful completions, in order."""
        with self._replies_lock:
            self._replies.extend(messages)

    def rate_limit_next(self, count: int = 1, *, retry_after_ms: int | None = None) -> None:
        headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
        self.script(
            openai_error(429, "Rate limit reached for requests", "requests", headers),
            times=count,
            when=lambda r: r.path == "/v1/chat/completions",
        )

    def server_error_forever(self, status: int = 500) -> None:
        self.script(openai_error(status, "The server had an error", "server_error"), times=None)

    def server_error_next(self, count: int = 1, status: int = 500) -> None:
        self.script(openai_error(status, "The server had an error", "server_error"), times=count)

    def delay_next(self, seconds: float) -> None:
        """Hold the next response back; the client is expected to time out first."""
        late = openai_error(500, "late", "server_error")
        late.delay_s = seconds
        self.script(late)

    # ------------------------------------------------------------ behaviour
    def violation_reply(self, message: str) -> Reply:
        return openai_error(400, f"fake: {message}", "invalid_request_error")

    def handle(self, request: RecordedRequest) -> Reply:
        if request.header("Authorization") != f"Bearer {self.api_key}":
            return openai_error(401, "Incorrect API key provided", "invalid_request_error")
        require((request.header("Content-Type") or "").startswith("application/json"), "body must be JSON")
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return self._chat(request.json())
        if request.method == "POST" and request.path == "/v1/embeddings":
            return self._embeddings(request.json())
        return openai_error(404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error")

    def _chat(self, body: dict[str, Any]) -> Reply:
        require(isinstance(body.get("model"), str) and body["model"], "model is required")
        messages: Any = body.get("messages")
        require(isinstance(messages, list) and messages, "messages must be a non-empty list")
        open_calls: set[str] = set()
        for i, m in enumerate(messages):
            require(isinstance(m, dict) and m.get("role") in _ROLES, f"messages[{i}].role invalid")
            role = m["role"]
            if role == "tool":
                require(m.get("tool_call_id") in open_calls, f"messages[{i}] answers an unknown tool_call_id")
                require(isinstance(m.get("content"), str), f"messages[{i}].content must be a string")
                open_calls.discard(m["tool_call_id"])
                continue
            require(not open_calls, f"messages[{i}]: tool calls {sorted(open_calls)} were not answered")
            if role == "assistant" and m.get("tool_calls"):
                for call in m["tool_calls"]:
                    require(call.get("type") == "function", "assistant tool_calls[].type must be function")
                    require(isinstance(call.get("id"), str), "tool_calls[].id required")
                    fn = call.get("function") or {}
                    require(
                        isinstance(fn.get("name"), str) and isinstance(fn.get("arguments"), str),
                        "function name/arguments",
                    )
                    open_calls.add(call["id"])
            elif role == "user" and isinstance(m.get("content"), list):
                # Content parts (vision models): text parts and image_url parts with an http(s) or data: URL.
                for part in m["content"]:
                    require(part.get("type") in ("text", "image_url"), f"messages[{i}] content part type")
                    if part["type"] == "text":
                        require(isinstance(part.get("text"), str), f"messages[{i}] text part needs text")
                    else:
                        url = (part.get("image_url") or {}).get("url")
                        require(
                            isinstance(url, str) and url.startswith(("https://", "http://", "data:image/")),
                            f"messages[{i}] image_url part needs a URL",
                        )
            else:
                require(isinstance(m.get("content"), str), f"messages[{i}].content must be a string")
        require(not open_calls, f"tool calls {sorted(open_calls)} were not answered")
        tools: Any = body.get("tools")
        if tools is not None:
            require(isinstance(tools, list) and tools, "tools, when present, is a non-empty list")
            names = set()
            for tool in tools:
                require(tool.get("type") == "function", "tools[].type must be function")
                fn = tool.get("function") or {}
                require(_TOOL_NAME.match(fn.get("name", "")), f"bad tool name {fn.get('name')!r}")
                require(fn["name"] not in names, f"duplicate tool {fn['name']}")
                names.add(fn["name"])
                params = fn.get("parameters")
                require(
                    isinstance(params, dict) and params.get("type") == "object",
                    f"{fn['name']}.parameters must be a JSON schema object",
                )
        require(body.get("tool_choice") in (None, "auto"), "tool_choice must be absent or auto")

        if self.responder is not None:
            message = self.responder(body)
        else:
            with self._replies_lock:
                message = self._replies.popleft() if self._replies else text_reply("(fake: nothing scripted)")
        prompt_tokens = sum(len(str(m.get("content") or "")) // 4 + 4 for m in messages)
        completion_tokens = len(str(message.get("content") or "")) // 4 + 1 + 10 * len(message.get("tool_calls") or [])
        return Reply(
            200,
            {
                "id": "chatcmpl-" + secrets.token_hex(12),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model_name,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"refusal": None, **message},
                        "logprobs": None,
                        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
            headers={"x-request-id": "req_" + secrets.token_hex(8)},
        )

    def _embeddings(self, body: dict[str, Any]) -> Reply:
        require(isinstance(body.get("model"), str), "model is required")
        inputs: Any = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        require(
            isinstance(inputs, list) and inputs and all(isinstance(t, str) and t for t in inputs),
            "input: non-empty strings",
        )
        require(len(inputs) <= 2048, "at most 2048 inputs per request")
        dims = body.get("dimensions", 1536)
        require(isinstance(dims, int) and 1 <= dims <= 3072, "dimensions must be an int")
        fmt = body.get("encoding_format", "float")
        require(fmt in ("float", "base64"), "encoding_format must be float or base64")
        data = []
        for index, text in enumerate(inputs):
            vector = pseudo_embedding(text, dims)
            encoded: Any = vector
            if fmt == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(t) // 4 + 1 for t in inputs)
        return Reply(
            200,
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def pseudo_embedding(text: str, dims: int) -> list[float]:
    """Deterministic unit vector for ``text`` (same text → same vector)."""
    values: list[float] = []
    counter = 0
    while len(values) < dims:
        block = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    values = values[:dims]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
