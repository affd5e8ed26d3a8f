"""`medspa db check` / `medspa db wait`: the app pods' init container on Kubernetes waits, with the app role's
credentials only, until the migration Job brought the schema to the head its image expects."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from medspa.services import downgrade, migrate, schema_status
from medspa.settings import REPO_ROOT


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@dataclass(frozen=True)
class ScratchDatabase:
    owner_url: str
    app_url: str


@pytest.fixture()
def scratch(infra) -> Iterator[ScratchDatabase]:
    """An empty database on the test server, reachable as the owner and as the app role; dropped afterwards."""
    name = "scratch_" + uuid.uuid4().hex[:8]
    admin = _libpq(infra.migration_database_url).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield ScratchDatabase(
        owner_url=infra.migration_database_url.rsplit("/", 1)[0] + "/" + name,
        app_url=infra.database_url.rsplit("/", 1)[0] + "/" + name,
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _medspa(args: list[str], scratch: ScratchDatabase, infra) -> subprocess.Popen[str]:
    # Only the app role's URL: what the init container gets (never MIGRATION_DATABASE_URL).
    env = {k: v for k, v in os.environ.items() if k not in ("MIGRATION_DATABASE_URL", "DATABASE_URL")}
    env |= {"DATABASE_URL": scratch.app_url, "REDIS_URL": infra.redis_url, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_status_with_the_app_role_follows_the_migrations(scratch):
    empty = schema_status(scratch.app_url)
    assert not empty.ready and "no schema yet" in (empty.problem or "")

    migrate(scratch.owner_url)
    at_head = schema_status(scratch.app_url)
    assert at_head.ready, at_head.describe()
    assert at_head.current == at_head.heads and len(at_head.heads) == 1  # the newest migration, whatever its id

    downgrade(scratch.owner_url, "0004")  # before the app role could read the version: keep waiting
    old = schema_status(scratch.app_url)
    assert not old.ready and "cannot read alembic_version" in (old.problem or "")

    migrate(scratch.owner_url)
    with psycopg.connect(_libpq(scratch.owner_url), autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0002'")
    behind = schema_status(scratch.app_url)
    assert not behind.ready and behind.describe().startswith("schema behind: database at 0002")

    with psycopg.connect(_libpq(scratch.owner_url), autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'from_a_newer_release'")
    ahead = schema_status(scratch.app_url)
    assert ahead.ready and ahead.unknown == ("from_a_newer_release",)


def test_unreachable_database_is_not_ready_and_names_no_credentials():
    status = schema_status("postgresql://medspa_app:s3cret-pw@127.0.0.1:1/medspa")
    assert not status.ready
    assert "database unavailable" in (status.problem or "") and "s3cret-pw" not in status.describe()


def test_check_exits_zero_only_at_head(scratch, infra):
    before = _medspa(["db", "check"], scratch, infra)
    out, _ = before.communicate(timeout=60)
    assert before.returncode == 1, out
    assert "no schema yet" in out

    migrate(scratch.owner_url)
    after = _medspa(["db", "check"], scratch, infra)
    out, _ = after.communicate(timeout=60)
    assert after.returncode == 0, out
    assert "schema at head" in out


def test_wait_returns_once_the_migration_ran_and_gives_up_clearly(scratch, infra):
    gives_up = _medspa(["db", "wait", "--timeout", "0.5", "--interval", "0.1"], scratch, infra)
    out, _ = gives_up.communicate(timeout=60)
    assert gives_up.returncode == 2 and "gave up after" in out and "no schema yet" in out

    waiting = _medspa(["db", "wait", "--timeout", "120", "--interval", "0.2"], scratch, infra)
    try:
        assert waiting.stdout is not None
        first = waiting.stdout.readline()  # it has checked once and is waiting
        assert "no schema yet" in first and waiting.poll() is None
        migrate(scratch.owner_url)
        out, _ = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, first + out
    assert "schema at head" in out
