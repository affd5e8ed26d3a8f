"""The benchmark's load generator survives transport events: a keep-alive connection the server closed is reopened
and its request sent again (counted, not an error); a refused connection or a response cut off midway is an error
and the run goes on.  The peer is a small real HTTP/1.1 server on a socket, misbehaving on purpose."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from medspa import devstack
from scripts.loadgen import build_post, run_load

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


@dataclass
class Behaviour:
    close_after: int = 0  # close each connection silently after this many responses (0: keep it open)
    cut_request: int = 0  # the n-th request (1-based, over the whole server) gets half a response, then a close
    bodies: list[bytes] = field(default_factory=list)  # the request bodies the server read, in order
    connections: int = 0  # connections the server accepted


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return await reader.readexactly(length)


@contextmanager
def http_server(behaviour: Behaviour) -> Iterator[int]:
    port = devstack.free_port()
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        behaviour.connections += 1
        try:
            while True:
                try:
                    body = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                behaviour.bodies.append(body or b"")
                if len(behaviour.bodies) == behaviour.cut_request:
                    writer.write(OK[: len(OK) - 1])  # the last byte of the body never comes
                    await writer.drain()
                    return
                writer.write(OK)
                await writer.drain()
                served += 1
                if served == behaviour.close_after:
                    return  # no "Connection: close": like a keep-alive timeout racing the client's next request
        finally:
            writer.close()

    stop = asyncio.Event()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        await stop.wait()
        server.close()
        await server.wait_closed()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    assert ready.wait(10), "test server did not start"
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def _requests(port: int, count: int) -> list[bytes]:
    return [build_post("127.0.0.1", port, "/hook", f"n={i}".encode(), {}) for i in range(count)]


def test_a_closed_keep_alive_connection_is_reopened_and_its_request_sent_again_once() -> None:
    behaviour = Behaviour(close_after=3)
    with http_server(behaviour) as port:
        result = run_load("127.0.0.1", port, _requests(port, 60), connections=4, duration_s=30, warmup_s=0)
    assert result.errors == 0
    assert result.requests == 60 and result.statuses == {200: 60}
    # Each of the 4 client connections was opened once; every further connection replaced one the server closed.
    assert behaviour.connections >= 60 // 3
    assert result.reconnects == behaviour.connections - 4
    # every request reached the server exactly once: a request is sent again only when it was never answered
    assert sorted(behaviour.bodies) == sorted(f"n={i}".encode() for i in range(60))


def test_a_response_cut_off_midway_is_an_error_not_sent_again_and_the_run_goes_on() -> None:
    behaviour = Behaviour(cut_request=5)
    with http_server(behaviour) as port:
        result = run_load("127.0.0.1", port, _requests(port, 20), connections=2, duration_s=30, warmup_s=0)
    assert result.errors == 1
    assert result.requests == 19 and result.statuses == {200: 19}
    assert len(behaviour.bodies) == 20 and len(set(behaviour.bodies)) == 20  # the cut one was not sent twice


def test_a_refused_connection_is_counted_and_does_not_end_the_run() -> None:
    port = devstack.free_port()  # nothing listens there
    result = run_load("127.0.0.1", port, _requests(port, 6), connections=2, duration_s=30, warmup_s=0)
    assert (result.requests, result.errors, result.reconnects) == (0, 6, 0)
