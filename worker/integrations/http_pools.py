"""Keep-alive pools of the providers' HTTP clients, sized from the process's threads.

A worker process runs one thread per turn in flight (``threads ≈ in-flight / processes + 8``: 136 or 264 threads
at 256 or 512 in flight) and shares one client per provider between them.  The SDKs' defaults assume a handful of
concurrent callers: the OpenAI client keeps at most 100 idle connections (httpx2), Twilio's at most
``min(32, cores + 4)`` (a requests adapter: 6 on two cores).  Every call that finds the pool's idle connections
all in use opens a new one, and when it ends the pool has no room to keep it, so it is closed — past the pool's
size, each model call or SMS send paid a fresh TCP + TLS handshake to the provider (CPU and a round trip), and
urllib3 warned "Connection pool is full, discarding connection" each time.  Sized from the thread count, every
thread's call finds or returns a kept connection.  Neither pool limits how many connections may be open at once
(httpx2: ``max_connections``; requests never blocks), so sizing never makes a caller wait; idle connections
expire on their own (httpx2 after 5 s, the provider closes requests' ones).
"""

from __future__ import annotations

import httpx2  # the openai SDK's HTTP library (its clients take its Limits)
import openai
import requests
from requests.adapters import HTTPAdapter

# Connections on top of one per worker thread: the Dramatiq-side helpers (the sweeper, reconciliations).
HEADROOM = 4
# httpx2's bound on open connections (the SDK's default); never below the keep-alive pool.
OPENAI_MAX_CONNECTIONS = 1000


def keepalive_connections(threads: int) -> int:
    """Idle connections a process of ``threads`` threads keeps per provider."""
    return max(1, threads) + HEADROOM


def openai_http_client(connections: int) -> httpx2.Client:
    """The OpenAI SDK's own HTTP client (its default timeouts and redirect policy; the SDK client's ``timeout``
    still applies per request) with a keep-alive pool of ``connections``."""
    limits = httpx2.Limits(
        max_connections=max(OPENAI_MAX_CONNECTIONS, connections), max_keepalive_connections=connections
    )
    return openai.DefaultHttpxClient(limits=limits)


def size_session(session: requests.Session, connections: int) -> None:
    """Mount adapters on ``session`` that keep ``connections`` idle connections per host (``https://`` and
    ``http://``, the latter for a local fake or a proxy), without retries (the callers retry themselves)."""
    adapter = HTTPAdapter(pool_maxsize=connections)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
