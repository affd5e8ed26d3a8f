"""Structured JSON logs with a trace id that follows one inbound message.

Only ids, counts, states and timings go into log records: never names, phone
numbers or message bodies (PHI).  ``trace_id`` is a contextvar set by the
webhook and by each actor from the message it handles.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from medspa.ids import fast_hex

trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def new_trace_id() -> str:
    return fast_hex()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace = trace_id_var.get()
        if trace:
            payload["trace_id"] = trace
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO", *, json_output: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_output else logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party loggers that would echo request URLs/bodies (phone numbers) at INFO.
    for noisy in (
        "httpx",
        "httpcore",
        "twilio.http_client",
        "stripe",
        "openai",
        "urllib3",
        "googleapiclient",
        "uvicorn.access",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
