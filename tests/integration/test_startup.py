"""Start-up matrix: the real entry points, run as processes, fail closed in production.

Each bad secret (empty, placeholder, too short) makes the webhook app (``uvicorn --factory
webhooks.app:create_app``) and the worker (``dramatiq worker.actors``) exit non-zero before they listen or
consume, with one line naming the variable and never its value; the compose commands (``medspa webhooks|
worker|scheduler``) refuse a copied, unfilled deploy/compose.env.example; ``ENVIRONMENT=prod`` is refused.
A complete production configuration starts (without the development routes); development starts with
generated secrets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from medspa.devstack import free_port
from medspa.secrets import EXIT_CONFIGURATION
from medspa.services import Infrastructure
from medspa.settings import REPO_ROOT
from tests.support.infra import wait_for
from tests.support.production_config import DOOR_SECRETS, GOOD

MEDSPA = Path(sys.executable).parent / "medspa"
UNREACHABLE = {
    "DATABASE_URL": "postgresql://medspa_app:Q3v9wLr2pT8xKd4m@127.0.0.1:9/medspa",
    "REDIS_URL": "redis://127.0.0.1:9/0",
}


def webhook_app(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--factory", "webhooks.app:create_app", "--port", str(port)]


WORKER = [sys.executable, "-m", "dramatiq", "worker.actors", "--processes", "1", "--threads", "1"]


def base_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: nothing inherited from the test process's settings; no .env in the working dir."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return keep | {
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DATA_DIR": str(tmp_path / "data"),
        "LOCAL_EMBEDDINGS": "false",
        "WORKER_METRICS_PORT": "0",
    }


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = base_env(tmp_path) | {name.upper(): value for name, value in GOOD.items()} | UNREACHABLE
    return env | overrides


@dataclass
class Run:
    command: list[str]
    env: dict[str, str]
    cwd: Path
    returncode: int = 0
    output: str = ""

    def refusal(self) -> str:
        lines = [line for line in self.output.splitlines() if "refusing to start" in line]
        assert len(lines) == 1, self.output
        return lines[0]


def run_all(runs: list[Run], timeout: float = 60) -> None:
    def one(run: Run) -> None:
        done = subprocess.run(
            run.command, env=run.env, cwd=run.cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
        run.returncode, run.output = done.returncode, done.stdout + done.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, runs))


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "cwd"
    path.mkdir()
    return path


def test_each_bad_secret_stops_the_webhook_app_and_the_worker_before_they_listen_or_consume(tmp_path, workdir):
    runs: dict[tuple[str, str, str], Run] = {}
    for variable, kinds in DOOR_SECRETS.items():
        for kind, value in kinds.items():
            env = production_env(tmp_path, **{variable: value})
            runs[("webhooks", variable, kind)] = Run(webhook_app(free_port()), env, workdir)
            runs[("worker", variable, kind)] = Run(WORKER, env, workdir)
    run_all(list(runs.values()))
    for (process, variable, kind), run in runs.items():
        case = f"{process} with {variable} {kind}"
        assert run.returncode == EXIT_CONFIGURATION, f"{case}: exit {run.returncode}\n{run.output}"
        line = run.refusal()
        assert f"medspa {process}: refusing to start" in line, case
        assert variable in line, f"{case}: {line}"
        value = DOOR_SECRETS[variable][kind]
        if value:
            assert value not in run.output, f"{case}: the value was printed"
        assert "Uvicorn running" not in run.output and "Application startup complete" not in run.output, case
        assert "ready for action" not in run.output, f"{case}: the worker started consuming"


def _compose_env(tmp_path: Path) -> dict[str, str]:
    """What docker compose gives the app services after `cp deploy/compose.env.example .env`: the env_file plus
    the services' own environment, with ${VAR:?...} substituted from the env file."""
    env_file: dict[str, str] = {}
    for line in (REPO_ROOT / "deploy" / "compose.env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            env_file[name] = value
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    environment = compose["services"]["webhooks"]["environment"]

    def substitute(value: str) -> str:
        return re.sub(r"\$\{(\w+)(?::[?-][^}]*)?\}", lambda m: env_file[m.group(1)], str(value))

    services = {name: substitute(value) for name, value in environment.items()}
    services["DATA_DIR"] = str(tmp_path / "data")
    return base_env(tmp_path) | env_file | services


def test_an_unfilled_copy_of_the_compose_example_is_refused_by_every_compose_command(tmp_path, workdir):
    env = _compose_env(tmp_path)
    assert env["ENVIRONMENT"] == "production"
    runs = {
        name: Run(
            [str(MEDSPA), name], env | {"WEBHOOK_PORT": str(free_port()), "CONSOLE_PORT": str(free_port())}, workdir
        )
        for name in ("webhooks", "console", "worker", "scheduler")
    }
    runs["python -m worker.scheduler"] = Run([sys.executable, "-m", "worker.scheduler"], env, workdir)
    run_all(list(runs.values()))
    for name, run in runs.items():
        assert run.returncode == EXIT_CONFIGURATION, f"{name}: exit {run.returncode}\n{run.output}"
        line = run.refusal()
        for variable in (
            "TWILIO_AUTH_TOKEN",
            "TWILIO_ACCOUNT_SID",
            "STRIPE_WEBHOOK_SECRET",
            "CHAT_TOKEN_SECRET",
            "DATABASE_URL's password",
        ):
            assert variable in line, f"{name}: {line}"
        assert "STRIPE_API_KEY" not in line and "OPENAI_API_KEY" not in line, "empty optional keys are unset"
        assert ("CONSOLE_SECRET_KEY" in line) == (name == "console"), f"{name}: {line}"
        assert "CHANGE_ME" not in run.output, "no value is printed"


def test_an_unknown_environment_is_refused(tmp_path, workdir):
    env = base_env(tmp_path) | UNREACHABLE | {"ENVIRONMENT": "prod"}
    runs = [
        Run(webhook_app(free_port()), env, workdir),
        Run(WORKER, env, workdir),
        Run([str(MEDSPA), "webhooks"], env, workdir),
    ]
    run_all(runs)
    for run in runs:
        assert run.returncode != 0, run.output
        assert "ENVIRONMENT: Input should be 'development', 'test' or 'production'" in run.refusal()


@pytest.fixture()
def started(tmp_path: Path, workdir: Path) -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _start(processes: list, command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[str]:
    handle = open(log, "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, text=True)
    processes.append(process)
    return process


def _ok(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def _own_redis_db(url: str) -> str:
    """A Redis database of its own: this worker must not consume what other tests left queued."""
    return url.rsplit("/", 1)[0] + "/14"


def test_a_complete_production_configuration_starts_without_the_development_routes(
    infra: Infrastructure, tmp_path, workdir, started
):
    env = production_env(tmp_path, DATABASE_URL=infra.database_url, REDIS_URL=_own_redis_db(infra.redis_url))
    port = free_port()
    app_log, worker_log = tmp_path / "app.log", tmp_path / "worker.log"
    app = _start(started, webhook_app(port), env, workdir, app_log)
    worker = _start(started, WORKER, env, workdir, worker_log)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ok(base + "/readyz") == 200 or app.poll() is not None, 60, what="the production app")
    assert app.poll() is None, app_log.read_text()
    for path in ("/demo", "/", "/dev/pay/cs_local_x"):
        assert _ok(base + path) == 404, path
    wait_for(lambda: "ready for action" in worker_log.read_text() or worker.poll() is not None, 60, what="the worker")
    assert worker.poll() is None, worker_log.read_text()
    assert not (tmp_path / "data" / "dev-secrets").exists(), "production never generates a secret"


def test_development_starts_with_generated_secrets(infra: Infrastructure, tmp_path, workdir, started):
    env = base_env(tmp_path) | {"DATABASE_URL": infra.database_url, "REDIS_URL": _own_redis_db(infra.redis_url)}
    port = free_port()
    log = tmp_path / "app.log"
    app = _start(started, webhook_app(port), env, workdir, log)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ok(base + "/readyz") == 200 or app.poll() is not None, 60, what="the development app")
    assert app.poll() is None, log.read_text()
    assert _ok(base + "/demo") == 200
    generated = sorted(p.name for p in (tmp_path / "data" / "dev-secrets").iterdir())
    assert generated == ["chat_token_secret", "stripe_webhook_secret", "twilio_auth_token"]
