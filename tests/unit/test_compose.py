"""docker-compose.yml holds the production topology the design promises: pgvector Postgres with the app role
created at init, Redis with AOF and noeviction, a one-shot migration the app services wait for, replicated
workers, a single scheduler, healthchecks, secrets from .env, and a stop grace period for in-flight turns."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from medspa.settings import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "webhooks", "console", "worker", "scheduler")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _seconds(value: str) -> int:
    units = {"s": 1, "m": 60}
    return int(value[:-1]) * units[value[-1]]


def test_every_service_is_there(compose):
    assert set(compose["services"]) == {"postgres", "redis", *APP_SERVICES}


def test_postgres_is_pgvector_and_creates_the_app_login_role_at_init(compose):
    postgres = compose["services"]["postgres"]
    assert postgres["image"] == "pgvector/pgvector:pg17"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    init_mount = next(v for v in postgres["volumes"] if v.split(":")[1] == "/docker-entrypoint-initdb.d")
    init_dir = REPO_ROOT / init_mount.split(":")[0]
    script = (init_dir / "10-app-role.sh").read_text()
    sql = (init_dir / "app-role.sql.in").read_text()
    assert "MEDSPA_APP_PASSWORD" in script and "app_password" in sql
    assert "CREATE ROLE medspa_app LOGIN NOSUPERUSER NOBYPASSRLS" in sql
    assert "change-me" not in script + sql, "no password in the init files"
    assert (init_dir / "10-app-role.sh").stat().st_mode & 0o111, "the entrypoint only runs executable .sh files"
    assert postgres["environment"]["MEDSPA_APP_PASSWORD"].startswith("${MEDSPA_APP_PASSWORD:?")


def test_redis_keeps_queued_messages(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_app_services_wait_for_a_one_shot_migration(compose):
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["medspa", "db", "migrate"]
    assert migrate["restart"] == "no"
    assert "MIGRATION_DATABASE_URL" in migrate["environment"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("webhooks", "console", "worker", "scheduler"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert "MIGRATION_DATABASE_URL" not in services[name]["environment"], f"{name} must not get the owner URL"
        assert services[name]["environment"]["POSTGRES_PASSWORD"] == ""


def test_commands_replicas_healthchecks_and_grace_periods(compose):
    services = compose["services"]
    assert services["webhooks"]["command"] == ["medspa", "webhooks"]
    assert "/healthz" in " ".join(services["webhooks"]["healthcheck"]["test"])
    assert services["console"]["command"] == ["medspa", "console"]
    assert "/healthz" in " ".join(services["console"]["healthcheck"]["test"])
    assert services["worker"]["command"] == ["medspa", "worker"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["scheduler"]["command"] == ["medspa", "scheduler"]
    assert "deploy" not in services["scheduler"] or services["scheduler"]["deploy"].get("replicas", 1) == 1
    assert _seconds(services["worker"]["stop_grace_period"]) == 60
    for name in APP_SERVICES:
        assert services[name]["env_file"] == ".env", name
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql://medspa_app:${"), name


def test_the_image_runs_from_the_repository_layout():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "pip install -c requirements.lock -e ." in dockerfile, "locked versions; alembic.ini and seed_data.sql"
    assert "USER medspa" in dockerfile
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored and "requirements.lock" not in ignored


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file(tmp_path: Path):
    """Debian's docker-compose validates and interpolates the file without an engine (it needs the .env the
    services read, so the example env file stands in for it in a scratch copy)."""
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copytree(REPO_ROOT / "deploy", tmp_path / "deploy")
    shutil.copy(REPO_ROOT / "deploy" / "compose.env.example", tmp_path / ".env")
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (tmp_path / ".env").write_text("MEDSPA_APP_PASSWORD=x\n")  # POSTGRES_PASSWORD missing: a clear refusal
    refused = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr
