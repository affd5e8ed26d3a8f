"""The benchmarks' model endpoint: an OpenAI-compatible ``POST /v1/chat/completions`` that answers after the
latency the caller asks for (header ``x-bench-latency-ms``, else ``BENCH_FAKE_MODEL_LATENCY_MS``), for any number of
calls in flight at once.  ``scripts/bench.py --only llm_bound --model-client openai`` points the worker's real
OpenAI adapter at it (one text answer per call, as ``BenchModel`` answers with a latency).

``scripts/bench_concurrency.py --model openai`` runs it under uvicorn in a process of its own, so a mode's CPU
per turn includes the OpenAI SDK's work (building the request, the HTTP exchange, parsing the completion) and
not the server's.  It checks the little a benchmark relies on (a bearer key, a model, a non-empty message list)
and answers 400 otherwise, so a broken client shows up as errors, not as speed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_ids = itertools.count(1)
_DEFAULT_LATENCY_MS = os.environ.get("BENCH_FAKE_MODEL_LATENCY_MS", "0")


async def chat_completions(request: Request) -> Response:
    if not request.headers.get("authorization", "").startswith("Bearer "):
        return JSONResponse({"error": {"message": "missing bearer key", "type": "invalid_request_error"}}, 401)
    try:
        body = json.loads(await request.body())
    except ValueError:
        return JSONResponse({"error": {"message": "body is not JSON", "type": "invalid_request_error"}}, 400)
    if not isinstance(body, dict) or not body.get("model") or not body.get("messages"):
        return JSONResponse({"error": {"message": "model and messages required", "type": "invalid_request_error"}}, 400)
    await asyncio.sleep(int(request.headers.get("x-bench-latency-ms", _DEFAULT_LATENCY_MS)) / 1000)
    return JSONResponse(
        {
            "id": f"chatcmpl-bench{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "We are open 9 to 6, Monday to Saturday."},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 42, "completion_tokens": 11, "total_tokens": 53},
        }
    )


app = Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])])
