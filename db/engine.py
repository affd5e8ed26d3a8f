"""Engine and session scopes.

One engine per process, built by the composition root (never lazily from many
threads: racing threads would each build a pool).  ``tenant_scope`` opens one
transaction with the row-level-security setting ``app.clinic_id`` set
transaction-locally, so a pooled connection never carries a clinic into the
next transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

_SET_CLINIC = text("SELECT set_config('app.clinic_id', :clinic_id, true)")


def make_engine(url: str, *, pool_size: int = 8, max_overflow: int = 4, application_name: str = "medspa") -> Engine:
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # No pre-ping: it costs a round trip per transaction. A connection broken by a database restart fails its
        # first statement, SQLAlchemy then invalidates the pool, and the idempotent actor is retried.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"application_name": application_name, "connect_timeout": 10},
    )


class Database:
    """The process's engine plus session factories."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def tenant_scope(self, clinic_id: int) -> Iterator[Session]:
        """One transaction scoped to one clinic: commits on success, rolls back on error."""
        with self._sessions() as session, session.begin():
            session.execute(_SET_CLINIC, {"clinic_id": str(int(clinic_id))})
            yield session

    @contextmanager
    def directory_scope(self) -> Iterator[Session]:
        """A transaction with no clinic set: only the tenant directory is visible (RLS fails closed)."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
