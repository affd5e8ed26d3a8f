"""Keep-alive pools of the providers' HTTP clients, sized from the process's threads.

A worker process runs one thread per turn in flight (``threads ≈ in-flight / processes + 8``: 136 or 264 threads
at 256 or 512 in flight) and shares one client per provider between them.  The SDKs' defaults assume a handful of
concurrent callers: the OpenAI client keeps at most 100 idle connections (httpx2), Twilio's at most
``min(32, cores + 4)`` (a requests adapter: 6 on two cores).  Every call that finds the pool's idle connections
all in use opens a new one, and when it ends the pool has no room to keep it, so it is closed — past the pool's
size, each model call or SMS send paid a fresh TCP + TLS handshake to the provider (CPU and a round trip), and
urllib3 warned "Connection pool is full, discarding connection" each time.  Sized from the thread count, every
thread's call finds or returns a kept connection.  Sizing what is kept never makes a caller wait (httpx2 opens up
to ``OPENAI_MAX_CONNECTIONS`` at once, requests' pool never blocks); idle connections expire on their own (httpx2's
after 5 s; the provider closes requests' ones).

One OpenAI client does not serve hundreds of threads well, whatever its pool: httpcore's connection pool does every
request's bookkeeping under one lock, walking all its connections, so threads queue on that lock
(``ThreadLock.__enter__`` was a fifth of a 256-thread process's samples). ``OpenAIClients`` gives each group of
up to ``THREADS_PER_CLIENT`` threads a client of its own: at 256 threads against a 500 ms fake model, 8 clients
did 462–469 calls/s at 2.0–2.1 ms of CPU per call, one client 379–380 at 2.6 (``scripts/bench_concurrency.py
--model openai``; docs/performance.md, *A real model's client*).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable

import httpx2  # the openai SDK's HTTP library (its clients take its Limits)
import openai
import requests
from requests.adapters import HTTPAdapter

# Connections on top of one per worker thread: the Dramatiq-side helpers (the sweeper, reconciliations).
HEADROOM = 4
# Threads that share one OpenAI client (see the module docstring).
THREADS_PER_CLIENT = 32
# httpx2's bound on open connections (the SDK's default); never below the keep-alive pool.
OPENAI_MAX_CONNECTIONS = 1000


def keepalive_connections(threads: int) -> int:
    """Idle connections a process of ``threads`` threads keeps per provider."""
    return max(1, threads) + HEADROOM


def openai_limits(connections: int) -> httpx2.Limits:
    """An OpenAI client's pool: ``connections`` kept alive, the SDK's bound on open ones."""
    return httpx2.Limits(
        max_connections=max(OPENAI_MAX_CONNECTIONS, connections), max_keepalive_connections=connections
    )


def openai_http_client(connections: int) -> httpx2.Client:
    """The OpenAI SDK's own HTTP client (its default timeouts and redirect policy; the SDK client's ``timeout``
    still applies per request) with a keep-alive pool of ``connections``."""
    return openai.DefaultHttpxClient(limits=openai_limits(connections))


def size_session(session: requests.Session, connections: int) -> None:
    """Mount adapters on ``session`` that keep ``connections`` idle connections per host (``https://`` and
    ``http://``, the latter for a local fake or a proxy), without retries (the callers retry themselves)."""
    adapter = HTTPAdapter(pool_maxsize=connections)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


class OpenAIClients:
    """The OpenAI clients of a process of ``threads`` threads: one per ``threads_per_client`` threads, each keeping
    a connection per thread it serves; a thread keeps the client it was first given (round robin).  ``threads``
    None: one client with the SDK's default pool (scripts and tests)."""

    def __init__(
        self,
        build: Callable[[httpx2.Client | None], openai.OpenAI],
        threads: int | None,
        *,
        threads_per_client: int = THREADS_PER_CLIENT,
    ) -> None:
        if threads is None:
            self._clients = [build(None)]
        else:
            count = math.ceil(max(1, threads) / max(1, threads_per_client))
            per_client = keepalive_connections(math.ceil(max(1, threads) / count))
            self._clients = [build(openai_http_client(per_client)) for _ in range(count)]
        self._local = threading.local()
        self._turns = itertools.count()  # next() on a count is atomic under the GIL

    def __len__(self) -> int:
        return len(self._clients)

    def for_this_thread(self) -> openai.OpenAI:
        client: openai.OpenAI | None = getattr(self._local, "client", None)
        if client is None:
            client = self._clients[next(self._turns) % len(self._clients)]
            self._local.client = client
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
