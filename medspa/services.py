"""Resolve the backing services: configured URLs, or the embedded defaults.

``resolve_infrastructure`` is what ``medspa dev up`` and the test harness call;
services started by it (webhooks, worker, scheduler) receive the resolved URLs
as ``DATABASE_URL`` / ``MIGRATION_DATABASE_URL`` / ``REDIS_URL`` in their
environment, so only one process ever starts the embedded servers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medspa import devstack
from medspa.settings import REPO_ROOT, Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Infrastructure:
    database_url: str
    migration_database_url: str
    redis_url: str
    embedded_postgres: bool
    embedded_redis: bool

    def as_env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "MIGRATION_DATABASE_URL": self.migration_database_url,
            "REDIS_URL": self.redis_url,
        }


def _sqlalchemy_url(url: str) -> str:
    # Accept the common postgres:// and postgresql:// spellings; we always drive psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def resolve_infrastructure(settings: Settings | None = None, *, data_dir: Path | None = None) -> Infrastructure:
    settings = settings or get_settings()
    data_dir = data_dir or settings.data_dir
    if settings.database_url:
        app_url = _sqlalchemy_url(settings.database_url)
        owner_url = _sqlalchemy_url(settings.migration_database_url or settings.database_url)
        embedded_pg = False
    else:
        port = devstack.start_postgres(data_dir)
        urls = devstack.bootstrap_database(port)
        app_url, owner_url, embedded_pg = urls.app_url, urls.owner_url, True
        log.info("embedded postgres ready", extra={"port": port, "data_dir": str(data_dir)})
    if settings.redis_url:
        redis_url, embedded_redis = settings.redis_url, False
    else:
        rport = devstack.start_redis(data_dir)
        redis_url, embedded_redis = f"redis://127.0.0.1:{rport}/0", True
        log.info("embedded redis ready", extra={"port": rport})
    return Infrastructure(app_url, owner_url, redis_url, embedded_pg, embedded_redis)


def owner_database_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.migration_database_url or settings.database_url:
        return _sqlalchemy_url(str(settings.migration_database_url or settings.database_url))
    return resolve_infrastructure(settings).migration_database_url


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "alembic"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(owner_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision`` (Alembic, run as the owner role)."""
    from alembic import command

    command.upgrade(_alembic_config(owner_url), revision)


def downgrade(owner_url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(_alembic_config(owner_url), revision)


@dataclass(frozen=True)
class SchemaStatus:
    """Where the database's schema stands against this code's migrations (``medspa db check`` / ``wait``)."""

    heads: tuple[str, ...]  # this code's head revision(s)
    current: tuple[str, ...] = ()  # recorded in the database's alembic_version; empty when unread or none
    unknown: tuple[str, ...] = ()  # recorded revisions this code does not know: a newer release migrated first
    problem: str | None = None  # why the version could not be read

    @property
    def ready(self) -> bool:
        """At this code's head, or past it.  Past it is fine: during any rolling update the previous release
        already runs on the newer schema, so migrations are written to keep it working."""
        if self.problem or not self.current:
            return False
        return all(rev in self.heads or rev in self.unknown for rev in self.current)

    def describe(self) -> str:
        head = ", ".join(self.heads)
        if self.problem:
            return f"schema not ready: {self.problem} (this code's head: {head})"
        current = ", ".join(self.current) or "none"
        if self.unknown:
            return f"schema at {current}, past this code's head {head} (a newer release migrated): ready"
        if self.ready:
            return f"schema at head ({head})"
        return f"schema behind: database at {current}, this code's head is {head}"


def schema_status(url: str) -> SchemaStatus:
    """Read the schema revision with ``url`` — the app role is enough (migration 0005 lets it read
    ``alembic_version``), so pods that only hold the app role's credentials can wait for a migration."""
    import psycopg
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(url))
    heads = tuple(sorted(script.get_heads()))
    known = {revision.revision for revision in script.walk_revisions()}
    try:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5) as conn:
            current = tuple(sorted(str(row[0]) for row in conn.execute("SELECT version_num FROM alembic_version")))
    except psycopg.errors.UndefinedTable:
        return SchemaStatus(heads, problem="no schema yet (alembic_version is missing)")
    except psycopg.errors.InsufficientPrivilege:
        return SchemaStatus(heads, problem="this role cannot read alembic_version (the schema predates 0005)")
    except psycopg.Error as exc:  # unreachable, refused, authentication: the class name says which (no URL)
        return SchemaStatus(heads, problem=f"database unavailable ({type(exc).__name__})")
    return SchemaStatus(heads, current, tuple(rev for rev in current if rev not in known))


def load_seed(owner_url: str, path: Path | None = None) -> None:
    """Load ``seed_data.sql`` (idempotent: safe to run twice)."""
    import psycopg

    sql = (path or REPO_ROOT / "seed_data.sql").read_text()
    with psycopg.connect(owner_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[call-overload]
        # Fresh statistics after a bulk load.  Without them the planner takes the new tables for empty and
        # picks the low-selectivity clinic_id indexes (the row-level-security predicate is indexable) over the
        # right ones, and keeps doing so while the tables grow until autovacuum first analyzes them.
        conn.execute("ANALYZE")
