"""A small HTTP/1.1 load generator for the benchmark: N keep-alive connections,
pre-built requests, per-request latency.  Raw asyncio streams keep its own CPU
cost low, since it shares the machine with the server it measures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
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


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (status line, headers, body); returns the status code."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length = 0
    chunked = False
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
    if chunked:
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _connection(
    host: str,
    port: int,
    requests: Sequence[bytes],
    cursor: list[int],
    deadline: float,
    warmup_until: float,
    result: LoadResult,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            now = time.perf_counter()
            if now >= deadline or cursor[0] >= len(requests):
                return
            request = requests[cursor[0]]
            cursor[0] += 1
            started = time.perf_counter()
            writer.write(request)
            try:
                status = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            finished = time.perf_counter()
            if started >= warmup_until:
                result.requests += 1
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.latencies_s.append(finished - started)
                if status >= 400:
                    result.errors += 1
    finally:
        writer.close()


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
