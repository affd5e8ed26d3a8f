"""A small HTTP/1.1 load generator for the benchmark: N keep-alive connections,
pre-built requests, per-request latency.  Raw asyncio streams keep its own CPU
cost low, since it shares the machine with the server it measures.

A transport event never ends a run.  A keep-alive connection the server closed
(its idle timeout, a restart, ``Connection: close``) is reopened and the request
sent again when no byte of a response had arrived — the server never answered
it — and counted in ``reconnects``.  What can't be delivered that way (no
connection, a response cut off midway, no response in time) counts in
``errors``, next to HTTP error statuses, and the run goes on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

RESPONSE_TIMEOUT_S = 30.0
CONNECT_RETRY_PAUSE_S = 0.05  # after a refused connection: don't spin while the server is down


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0  # HTTP statuses >= 400 and requests that could not be delivered or answered
    reconnects: int = 0  # closed keep-alive connections reopened (their request sent again): not errors
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def build_post(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Content-Length: {len(body)}",
        "Content-Type: application/x-www-form-urlencoded",
        "Connection: keep-alive",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the first byte of a response: it did not answer the request."""


class TransportError(Exception):
    """A request that could not be delivered or whose response was lost (counted as an error by callers)."""


@dataclass(frozen=True)
class Response:
    status: int
    keep_alive: bool  # False when the server said ``Connection: close``


async def read_response(reader: asyncio.StreamReader) -> Response:
    """Read one HTTP/1.1 response (status line, headers, body)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionClosed("connection closed before a response")
    parts = status_line.split()
    if not status_line.endswith(b"\n") or len(parts) < 2 or not parts[1].isdigit():
        raise TransportError(f"not an HTTP status line: {status_line[:40]!r}")
    status = int(parts[1])
    length = 0
    chunked = False
    keep_alive = True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and "close" in value.lower():
            keep_alive = False
    if chunked:
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return Response(status, keep_alive)


class HttpConnection:
    """One keep-alive connection that reopens itself.  ``request`` returns the status or raises TransportError;
    ``reconnects`` counts the closed connections it reopened to send a request again."""

    def __init__(self, host: str, port: int, *, response_timeout_s: float = RESPONSE_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.response_timeout_s = response_timeout_s
        self.reconnects = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            try:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:  # refused, reset, no route: the server is down or its backlog is full
                await asyncio.sleep(CONNECT_RETRY_PAUSE_S)
                raise TransportError(f"connect: {exc}") from exc
        return self._reader, self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(self, data: bytes) -> int:
        # A connection that was open before this request may have been closed by the server meanwhile (keep-alive
        # timeout, restart): then it never answered, and the request goes again, once, on a fresh connection.
        reused = self._writer is not None
        for attempt in (1, 2):
            reader, writer = await self._open()
            try:
                writer.write(data)
                response = await asyncio.wait_for(read_response(reader), self.response_timeout_s)
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if attempt == 1 and reused:
                    self.reconnects += 1
                    continue
                raise TransportError(f"connection closed: {exc}") from exc
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, TransportError) as exc:
                # Cut off mid-response or no response in time: the server may have acted on it; not sent again.
                self.close()
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            if not response.keep_alive:
                self.close()
            return response.status
        raise AssertionError("unreachable")


async def _connection(
    host: str,
    port: int,
    requests: Sequence[bytes],
    cursor: list[int],
    deadline: float,
    warmup_until: float,
    result: LoadResult,
) -> None:
    connection = HttpConnection(host, port)
    try:
        while True:
            now = time.perf_counter()
            if now >= deadline or cursor[0] >= len(requests):
                return
            request = requests[cursor[0]]
            cursor[0] += 1
            started = time.perf_counter()
            try:
                status = await connection.request(request)
            except TransportError:
                result.errors += 1
                continue
            finished = time.perf_counter()
            if started >= warmup_until:
                result.requests += 1
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.latencies_s.append(finished - started)
                if status >= 400:
                    result.errors += 1
    finally:
        result.reconnects += connection.reconnects
        connection.close()


async def _run(
    host: str, port: int, requests: Sequence[bytes], connections: int, duration_s: float, warmup_s: float
) -> LoadResult:
    result = LoadResult()
    start = time.perf_counter()
    warmup_until = start + warmup_s
    deadline = warmup_until + duration_s
    cursor = [0]
    await asyncio.gather(
        *(_connection(host, port, requests, cursor, deadline, warmup_until, result) for _ in range(connections))
    )
    result.elapsed_s = min(time.perf_counter(), deadline) - warmup_until
    return result


def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int = 64,
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
) -> LoadResult:
    """Send ``requests`` (each used at most once) over ``connections`` connections until ``duration_s`` after
    the warm-up, or until they run out."""
    try:
        import uvloop

        return uvloop.run(_run(host, port, requests, connections, duration_s, warmup_s))
    except ImportError:
        return asyncio.run(_run(host, port, requests, connections, duration_s, warmup_s))
