"""The README's run command, `medspa dev up` (what `scripts/run.sh` execs), started as a newcomer starts it and
stopped as they stop it: Ctrl-C in its terminal, which is SIGINT to the whole foreground process group.

It brings up its own embedded Postgres and Redis in a throwaway data directory (as on a fresh machine), answers a
text, and on Ctrl-C stops every service with one SIGTERM each: the workers finish and exit 0, nothing is killed,
nothing keeps running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from medspa.devstack import free_port
from medspa.settings import REPO_ROOT
from tests.support.infra import wait_for


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _services_of(data_dir: Path) -> list[str]:
    """Processes still running that belong to this dev up: their command line or environment names its data dir
    (the services inherit DATA_DIR)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if str(data_dir).encode() in cmdline or f"DATA_DIR={data_dir}".encode() in environ:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace")[:120])
    return found


def _start_dev_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`medspa dev up`, its output in ``log``; in a session of its own, so its process group stands for the
    terminal's foreground job."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "scripts.cli", "dev", "up"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def dev_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    data_dir = tmp_path / "data"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "MIGRATION_DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL"}
    }
    env |= {
        "DATA_DIR": str(data_dir),
        "WEBHOOK_PORT": str(free_port()),
        "CONSOLE_PORT": str(free_port()),
        "WORKER_PROCESSES": "1",
        "WORKER_THREADS": "2",
        "EMBEDDINGS_PROVIDER": "none",  # full-text search: no model to load for this check
    }
    yield env, data_dir
    # The embedded Postgres and Redis outlive dev up by design: `medspa dev down` stops them.
    down = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "dev", "down"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    wait_for(lambda: not _services_of(data_dir), 30, interval=0.2, what="the embedded servers to exit")


def test_ctrl_c_stops_every_service_gracefully(dev_env: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, data_dir = dev_env
    log = tmp_path / "dev-up.log"
    dev_up = _start_dev_up(env, log)
    try:
        try:
            wait_for(lambda: b"Press Ctrl-C to stop." in log.read_bytes(), 240, interval=0.2, what="dev up running")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; dev up said:\n{log.read_text()[-4000:]}") from None
        base = f"http://127.0.0.1:{env['WEBHOOK_PORT']}"
        assert _ready(f"{base}/readyz")
        chat = subprocess.run(
            [sys.executable, "-m", "scripts.cli", "chat", "-m", "what are your hours?", "-m", "HELP"],
            cwd=REPO_ROOT,
            env=env | {"PUBLIC_BASE_URL": base},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert chat.returncode == 0, chat.stdout + chat.stderr
        assert "Glow MedSpa:" in chat.stdout, chat.stdout  # the clinic answered
        assert "appointment texts" in chat.stdout and "Glow MedSpa: Glow MedSpa:" not in chat.stdout, chat.stdout

        os.killpg(dev_up.pid, signal.SIGINT)  # Ctrl-C
        assert dev_up.wait(90) == 0, log.read_text()[-4000:]
    finally:
        if dev_up.poll() is None:
            os.killpg(dev_up.pid, signal.SIGKILL)
    said = log.read_text()
    assert said.rstrip().endswith("stopped."), said[-2000:]
    assert "Killing worker process" not in said, said[-4000:]  # the workers had one SIGTERM, not two
    assert "exited with an error" not in said
    # Nothing of this dev up runs on but the embedded Postgres and Redis (left for `medspa dev down`).
    left = [cmd for cmd in _services_of(data_dir) if "postgres" not in cmd and "redis-server" not in cmd]
    assert left == [], left
    assert not _ready(f"http://127.0.0.1:{env['WEBHOOK_PORT']}/readyz")


def test_a_service_that_cannot_start_stops_the_others(dev_env: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, data_dir = dev_env
    taken = socket.socket()
    taken.bind(("127.0.0.1", int(env["WEBHOOK_PORT"])))  # something else holds the webhook app's port
    taken.listen()
    log = tmp_path / "dev-up.log"
    try:
        returncode = _start_dev_up(env, log).wait(240)
    finally:
        taken.close()
    said = log.read_text()
    assert returncode == 2, said[-4000:]
    assert "medspa: error: a service exited during start-up" in said
    # The worker, scheduler and console it had started are stopped, not left holding their ports.
    left = [cmd for cmd in _services_of(data_dir) if "postgres" not in cmd and "redis-server" not in cmd]
    assert left == [], left
