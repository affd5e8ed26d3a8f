"""A small threaded HTTP server that provider fakes build on.

Why a real server rather than mocks: the adapters under test go through the
official SDKs (twilio, stripe, googleapiclient, openai), and the point of the
fakes is to check what those SDKs actually put on the wire — form encoding,
auth headers, idempotency keys, JSON shapes.  The server listens on
127.0.0.1 on a free port, records every request, lets a test script the next
responses (errors, delays), and collects wire-format violations so a test can
assert there were none.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str  # without the query string, still percent-encoded
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: float  # time.monotonic()

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def form(self) -> dict[str, list[str]]:
        """The body parsed as application/x-www-form-urlencoded."""
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def form_pairs(self) -> list[tuple[str, str]]:
        from urllib.parse import parse_qsl

        return parse_qsl(self.body.decode("utf-8"), keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class Reply:
    """A response the fake sends.  ``delay_s`` holds the response back (for client timeout tests)."""

    status: int = 200
    body: Any = None  # dict/list → JSON, str/bytes → as is, None → empty
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.body is None:
            return b"", headers
        if isinstance(self.body, bytes):
            return self.body, headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode("utf-8"), headers
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body).encode("utf-8"), headers


@dataclass
class _Scripted:
    reply: Reply
    remaining: int | None  # None = forever
    matches: Callable[[RecordedRequest], bool] | None


class WireViolation(AssertionError):
    """Raised inside a handler when a request breaks the provider's wire format."""


class FakeHttpServer:
    """Base class: subclasses implement :meth:`handle` (the provider's happy path).

    Scripted replies (``script``) take precedence over ``handle`` and are used
    for failures: 429s, 5xx, provider error codes, slow responses.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.exchanges: list[tuple[RecordedRequest, int]] = []  # (request, status the fake answered)
        self._scripted: deque[_Scripted] = deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.connections = 0  # TCP connections accepted (keep-alive reuse shows as fewer than requests)
        self._hold_until: int | None = None
        self._hold_timeout_s = 0.0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
            timeout = 10  # idle keep-alive connections end on their own

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake.connections += 1

            def _serve(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return  # keep test output quiet

        class Server(ThreadingHTTPServer):
            # socketserver's listen backlog is 5: a burst of concurrent connects (a test putting dozens of calls
            # in flight at once) overflowed it, and the dropped handshakes stalled for seconds.
            request_queue_size = 256

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that drops a kept-alive connection (a pool with no room to keep it) resets it under
                # the handler's next read: that is the client's business, not a traceback in the test output.
                if isinstance(sys.exc_info()[1], ConnectionError):
                    return
                super().handle_error(request, client_address)

        server = Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ------------------------------------------------------------ scripting
    def script(
        self,
        reply: Reply,
        *,
        times: int | None = 1,
        when: Callable[[RecordedRequest], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``reply`` (``times=None``: forever)."""
        with self._lock:
            self._scripted.append(_Scripted(reply, times, when))

    def hold_replies_until(self, requests: int | None, *, timeout: float = 10.0) -> None:
        """Answer nothing until ``requests`` requests in all have arrived (None: stop holding), so that many
        calls are in flight at once — how a test makes N threads hold N connections.  A hold that times out
        is a violation."""
        with self._changed:
            self._hold_until, self._hold_timeout_s = requests, timeout
            self._changed.notify_all()

    def clear_script(self) -> None:
        with self._lock:
            self._scripted.clear()

    def _take_scripted(self, request: RecordedRequest) -> Reply | None:
        with self._lock:
            for item in self._scripted:
                if item.matches is not None and not item.matches(request):
                    continue
                if item.remaining is not None:
                    item.remaining -= 1
                    if item.remaining <= 0:
                        self._scripted.remove(item)
                return item.reply
        return None

    # ------------------------------------------------------------ inspection
    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests arrived (a condition with a deadline, not a sleep)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
                self._changed.wait(remaining)
            return list(self.requests)

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def statuses(self) -> list[int]:
        with self._lock:
            return [status for _, status in self.exchanges]

    def assert_clean(self) -> None:
        assert not self.violations, "wire-format violations:\n" + "\n".join(self.violations)

    # ------------------------------------------------------------ handling
    def handle(self, request: RecordedRequest) -> Reply:
        """The provider's behaviour.  Raise :class:`WireViolation` for a malformed request."""
        return Reply(404, {"error": "not found"})

    def violation_reply(self, message: str) -> Reply:
        """What the fake answers after a wire violation (subclasses use the provider's error shape)."""
        return Reply(400, {"error": {"message": f"fake: {message}"}})

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        request = RecordedRequest(
            method=handler.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            received_at=time.monotonic(),
        )
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

        reply = self._take_scripted(request)
        if reply is None:
            try:
                reply = self.handle(request)
            except WireViolation as exc:
                with self._lock:
                    self.violations.append(f"{request.method} {request.path}: {exc}")
                reply = self.violation_reply(str(exc))
            except Exception as exc:  # a bug in the fake must be visible, not a hang
                with self._lock:
                    self.violations.append(f"{request.method} {request.path}: fake crashed: {exc!r}")
                reply = Reply(500, {"error": {"message": f"fake crashed: {exc!r}"}})

        with self._lock:
            self.exchanges.append((request, reply.status))
        self._wait_for_hold()
        if reply.delay_s and self._stopping.wait(reply.delay_s):
            return
        payload, headers = reply.encoded()
        try:
            handler.send_response(reply.status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            if payload:
                handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def _wait_for_hold(self) -> None:
        with self._changed:
            deadline = time.monotonic() + self._hold_timeout_s
            while self._hold_until is not None and len(self.requests) < self._hold_until:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    self.violations.append(f"held replies: {len(self.requests)} of {self._hold_until} requests came")
                    return
                self._changed.wait(min(remaining, 0.1))


def require(condition: object, message: str) -> None:
    """Wire-format assertion inside a fake handler."""
    if not condition:
        raise WireViolation(message)
