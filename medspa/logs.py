"""Structured JSON logs with a trace id that follows one inbound message.

Only ids, counts, states and timings go into log records: never names, phone
numbers or message bodies (PHI).  ``trace_id`` is a contextvar set by the
webhook and by each actor from the message it handles.

Error paths are where PHI slips in: a psycopg error carries ``DETAIL: Key (phone_e164)=(+1…)`` or
``Failing row contains (…)``, an SDK error echoes a phone number, a pydantic error its ``input_value``.
``PhiScrubber`` is the one filter that removes phone numbers, email addresses, message bodies and DETAIL
values from every record's message, exception text, stack and extras; ``configure_logging`` installs it on
every handler in the process (root, which Dramatiq's loggers propagate to, and uvicorn's own), and routes
uncaught exceptions (threads included) through logging so they are scrubbed too.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
import traceback
from types import TracebackType
from typing import Any

from medspa.ids import fast_hex

trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def new_trace_id() -> str:
    return fast_hex()


_REDACTED = "[redacted]"
_SCRUB = re.compile(
    r"""
    (?P<detail_key>DETAIL:\s+Key\s\([^)\n]*\)=)\(.*\)          # DETAIL: Key (cols)=(values) …
  | (?P<detail_row>Failing\srow\scontains\s)\(.*\)             # DETAIL: Failing row contains (…)
  | (?P<detail>DETAIL:)[^\n]*                                  # any other DETAIL line: whole
  | (?P<param>\$\d+\s=\s)'(?:[^'\\]|''|\\.)*'                  # CONTEXT: … parameter $1 = '…'
  | (?P<params>\[parameters:)[^\n]*                          # SQLAlchemy's bound parameters
  | (?P<field>(?i:\b(?:body|text|content|input_value|to|from)\b)["']?\s*[:=]\s*)
        (?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')                 # body='…', "text": "…", input_value='…'
  | (?P<form>\b(?i:body|from|to)=)[^&\s]*                      # form-encoded Body=…&From=…
  | (?P<email>[\w.%+-]+@[\w-]+(?:\.[\w-]+)+)
  | (?P<e164>(?:\+|%2[Bb])\d[\d\s().-]{6,18}\d)                 # +1 415 555 0123, +14155550123, %2B1…
  | (?P<nanp>(?<![\w.+-])(?:1[\s.-]?)?\(?[2-9]\d{2}\)?[\s.-]?\d{3}[\s.-]?\d{4}(?![\w-]|\.\d))
  | (?P<national>(?<![\w.+-])0\d{2,4}[\s-]?\d{3,4}[\s-]?\d{3,4}(?![\w-]|\.\d))
    """,
    re.VERBOSE,
)


def _replacement(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind in ("detail_key", "detail_row"):
        return match.group(kind) + "(" + _REDACTED + ")"
    if kind == "params":
        return "[parameters: " + _REDACTED + "]"
    if kind in ("detail", "param", "field", "form"):
        return match.group(kind) + (" " if kind == "detail" else "") + _REDACTED
    if kind == "email":
        return "[email]"
    return "[phone]"


def scrub(text: str) -> str:
    """``text`` without phone numbers, email addresses, message bodies or database DETAIL values.

    Over-redaction is the safe failure: a 10-digit number that is not a phone number is scrubbed too."""
    return _SCRUB.sub(_replacement, text)


class PhiScrubber(logging.Filter):
    """Scrubs a record before any handler formats it: message and arguments, exception text (pre-rendered into
    ``exc_text``, the cache every ``logging.Formatter`` uses), stack and string extras.  Idempotent: a record
    that passes several handlers is scrubbed once."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_phi_scrubbed", False):
            return True
        record._phi_scrubbed = True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not hide the record
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_type = record.exc_info[0].__name__
            record.exc_text = scrub(record.exc_text or "".join(traceback.format_exception(*record.exc_info)))
            # Formatters re-render from exc_info when exc_text is empty; drop it so only the scrubbed text exists.
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and not key.startswith("_"):
                setattr(record, key, _scrub_value(value))
        return True


def _scrub_value(value: Any) -> Any:
    """Extras keep their JSON shape; anything that would be rendered with ``str`` (an exception, an object) is
    rendered and scrubbed here."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(v) for v in value]
    return scrub(str(value))


PHI_SCRUBBER = PhiScrubber()


def install_phi_scrubber() -> None:
    """Put the scrubber on every handler that exists now: the root's (every propagating logger, Dramatiq's
    included) and those of loggers that do not propagate (uvicorn's)."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if PHI_SCRUBBER not in handler.filters:
                handler.addFilter(PHI_SCRUBBER)


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("medspa.uncaught").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("medspa.uncaught").critical(
        "uncaught exception in a thread",
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
        extra={"thread_name": args.thread.name if args.thread else None},
    )


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
        if record.exc_info:  # a record the scrubber did not see (it renders exc_info into exc_text)
            payload["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            payload["exc"] = record.exc_text or self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exc"] = record.exc_text
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
    install_phi_scrubber()
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
