"""Throwaway Postgres 18 (+pgvector, btree_gist) and Redis for the test session.

Started on free ports under a temporary folder, migrated and seeded once per
session, stopped at the end.  Nothing here depends on services the developer's
own session started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from medspa import devstack
from medspa.services import Infrastructure, load_seed, migrate


def start_test_infrastructure() -> tuple[Infrastructure, Path]:
    data_dir = Path(tempfile.mkdtemp(prefix="medspa-test-"))
    os.chmod(data_dir, 0o755)
    pg_port = devstack.start_postgres(data_dir, fsync=False)
    urls = devstack.bootstrap_database(pg_port)
    redis_port = devstack.start_redis(data_dir, appendonly=False)
    infra = Infrastructure(
        database_url=urls.app_url,
        migration_database_url=urls.owner_url,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        embedded_postgres=True,
        embedded_redis=True,
    )
    migrate(infra.migration_database_url)
    load_seed(infra.migration_database_url)
    return infra, data_dir


def stop_test_infrastructure(data_dir: Path) -> None:
    devstack.stop_redis(data_dir)
    devstack.stop_postgres(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)  # ~60 MB of throwaway database per run


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
    *,
    max_interval: float | None = None,
):
    """Poll ``predicate`` until it returns a truthy value or the deadline passes (no blind sleeps).  With
    ``max_interval`` the polls start every ``interval`` and slow down (x1.5 each) to that: a short wait ends
    within milliseconds of its condition, a long one does not poll at the fast rate throughout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
        if max_interval is not None:
            interval = min(max_interval, interval * 1.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


class PrivateRedis:
    """A redis-server of the test's own (not the session's shared one), so a test can freeze it: SIGSTOP
    leaves its port open and its connections established but unanswered — a hung Redis, not a refused one."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="medspa-redis-"))
        self.port = devstack.start_redis(self.data_dir, appendonly=False)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return devstack.redis_pid(self.data_dir)

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            self.thaw()  # a stopped process does not act on SIGTERM until it runs again
        devstack.stop_redis(self.data_dir)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.stop()
