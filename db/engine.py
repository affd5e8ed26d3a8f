"""Engine and session scopes.

One engine per process, built by the composition root (never lazily from many
threads: racing threads would each build a pool).  ``tenant_scope`` opens one
transaction with the row-level-security setting ``app.clinic_id`` set
transaction-locally, so a pooled connection never carries a clinic into the
next transaction.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg import pq
from psycopg.abc import PQGen
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from db import arrays as _arrays  # noqa: F401  (registers the typed array dumpers before any connection exists)
from db.directory import CLINIC_IDS_SQL, SET_CLINIC_SQL

_SET_CLINIC = text("SELECT set_config('app.clinic_id', :clinic_id, true)")
_CLINIC_IDS = text(CLINIC_IDS_SQL)


def make_engine(url: str, *, pool_size: int = 8, max_overflow: int = 4, application_name: str = "medspa") -> Engine:
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # No pre-ping: it costs a round trip per transaction. A connection broken by a database restart fails its
        # first statement, SQLAlchemy then invalidates the pool, and the idempotent actor is retried.
        pool_pre_ping=False,
        pool_recycle=1800,
        # Errors never carry bound parameters (names, phone numbers, bodies) into exception text and so logs.
        hide_parameters=True,
        connect_args={"application_name": application_name, "connect_timeout": 10},
    )


def set_clinic(session: Session, clinic_id: int) -> None:
    """Scope the session's transaction to one clinic (row-level security reads ``app.clinic_id``; owner
    connections are subject to it too, the policies being FORCEd)."""
    session.execute(_SET_CLINIC, {"clinic_id": str(int(clinic_id))})


class Database:
    """The process's engine plus session factories."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def tenant_scope(self, clinic_id: int) -> Iterator[Session]:
        """One transaction scoped to one clinic: commits on success, rolls back on error."""
        with self._sessions() as session, session.begin():
            set_clinic(session, clinic_id)
            yield session

    @contextmanager
    def tenant_connection(self, clinic_id: int) -> Iterator[psycopg.Connection[Any]]:
        """The hot path's scope: the pooled psycopg connection itself, in pipeline mode, one transaction with
        the clinic set; committed on success, rolled back on error.

        Why not a Session: the turn pipeline is CPU-bound, and an ORM session costs ~0.5 ms per transaction
        and ~0.1 ms per statement of Python on top of psycopg.  In pipeline mode statements are sent without
        waiting; a ``fetch*`` waits for everything queued before it (one round trip), so ``set_config`` and
        independent writes travel together.  Same pool, same RLS rule as ``tenant_scope``.

        The transaction is the protocol's *implicit* one: in autocommit, everything sent up to a Sync message
        runs as one transaction, which the Sync commits (or rolls back, after an error) — so no BEGIN (which
        psycopg would also wait for before sending anything else) and no COMMIT statement, two statements and a
        round trip fewer per transaction.  ``set_config(..., true)`` lasts until that Sync.  Because a Sync
        commits whatever ran without error, an exception in Python first queues a ROLLBACK (``_abort``); and a
        caller that wants the transaction committed before it reads its results calls ``commit_pipeline``.
        """
        with self.autocommit_connection() as conn:
            conn._pipeline = _TenantPipeline(conn)  # what conn.pipeline() enters (it makes a plain one when None)
            try:
                with conn.pipeline():
                    conn.execute(SET_CLINIC_SQL, (str(int(clinic_id)),))
                    try:
                        yield conn
                    except BaseException:
                        _abort(conn)
                        raise
                    # leaving the pipeline sends the Sync that commits
            finally:
                if conn._pipeline is not None and conn._pipeline.level == 0:
                    conn._pipeline = None  # never entered (a broken connection): not left for the next caller

    @contextmanager
    def autocommit_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled psycopg connection in autocommit: each statement is its own transaction, with no clinic set
        (row-level security fails closed).  For a statement that scopes itself — a function that sets
        ``app.clinic_id`` for its own transaction, like ``medspa_mark_sent`` — where BEGIN, ``set_config`` and
        COMMIT would be three more statements.  The connection goes back to the pool out of autocommit."""
        fairy = self.engine.raw_connection()
        conn: psycopg.Connection[Any] = fairy.driver_connection  # type: ignore[assignment]
        try:
            conn.autocommit = True
            yield conn
        finally:
            try:
                conn.autocommit = False  # refused on a closed or busy connection (interrupted mid-statement)
            except psycopg.Error:
                fairy.invalidate()  # never hand it to the next caller
            fairy.close()

    @contextmanager
    def directory_scope(self) -> Iterator[Session]:
        """A transaction with no clinic set: only the tenant directory is visible (RLS fails closed)."""
        with self._sessions() as session, session.begin():
            yield session

    def clinic_ids(self) -> list[int]:
        """Every clinic in the tenant directory, in id order: what cross-clinic jobs iterate (one tenant scope
        each; there is no bypass role)."""
        with self.directory_scope() as session:
            return [int(r) for r in session.execute(_CLINIC_IDS).scalars()]

    def dispose(self) -> None:
        self.engine.dispose()


_ROLLBACK = "ROLLBACK"


class _CountingQueue(deque[Any]):
    """psycopg's queue of commands to send, counting every command ever queued on it."""

    queued = 0

    def append(self, item: Any) -> None:
        self.queued += 1
        super().append(item)


class _TenantPipeline(psycopg.Pipeline):
    """psycopg's pipeline, with two differences that save the hot path system calls and GIL hand-offs.

    - A statement is not sent when it is executed: it waits in the command queue until something needs an
      answer — a fetch, a Sync (``commit_pipeline``, leaving the block) — and then everything queued goes out in
      one write.  psycopg sends and flushes each statement as it is executed, and polls the socket for results
      besides, releasing and re-taking the GIL around each of those libpq calls (psycopg issue 448): with many
      threads each hand-off is a wait.  Nothing is lost by waiting: a statement's results could only be read
      with a fetch or after a Sync anyway, and those send first.
    - Leaving it sends no Sync when ``commit_pipeline`` synced and nothing was queued since: that Sync would
      commit an empty transaction and cost a round trip (two a turn).  Anything queued after the commit — even
      if its results were read — is counted, and then the Sync is sent."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        self.command_queue: _CountingQueue = _CountingQueue()
        self._ended_at = -1  # the count of commands queued when a Sync last ended the transaction

    def sync(self) -> None:
        try:
            super().sync()
        except psycopg.Error:
            # The server rolled the transaction back at this Sync (after the error it reports), or the connection
            # broke, and then nothing commits without a Sync the server receives: nothing is left to roll back.
            self._ended_at = self.command_queue.queued
            raise
        self._ended_at = self.command_queue.queued  # committed

    def ended(self) -> bool:
        """No transaction is open: a Sync ended it and nothing was queued since."""
        return self._ended_at == self.command_queue.queued

    def _communicate_gen(self) -> PQGen[None]:
        # What psycopg runs after queueing each statement: here the statement stays queued (see the class).
        return
        yield

    def _send_gen(self, *, flush_request: bool = False) -> PQGen[None]:
        """Send everything queued in one write (and process whatever results have arrived).  psycopg's loop
        would hand libpq one command per socket-writable wait, flushing after each; libpq buffers them (the
        connection is non-blocking), so they are all handed over first and flushed once.  ``flush_request``:
        with a Flush message after them, which makes the server send the results it has (for a fetch)."""
        commands = self.command_queue
        while commands:
            commands.popleft()()
        if flush_request:
            self.pgconn.send_flush_request()
        yield from super()._communicate_gen()

    def _fetch_gen(self, *, flush: bool) -> PQGen[None]:
        if not self.result_queue and not self.command_queue:
            return
        yield from self._send_gen(flush_request=flush)
        yield from super()._fetch_gen(flush=False)

    def _sync_gen(self) -> PQGen[None]:
        self._enqueue_sync()
        yield from self._send_gen()
        yield from super()._fetch_gen(flush=False)

    def _exit_gen(self) -> PQGen[None]:
        if self.ended() and not self.result_queue:
            return
        try:
            self._enqueue_sync()
            yield from self._send_gen()
        finally:
            yield from super()._fetch_gen(flush=True)


def _abort(conn: psycopg.Connection[Any]) -> None:
    """Make the Sync that ends ``tenant_connection``'s pipeline roll back instead of commit.  After a server
    error the pipeline is aborted already (the server skips everything up to the Sync and rolls back); else a
    ROLLBACK inside the implicit transaction discards it (the server warns "there is no transaction in
    progress" and rolls back all the same — PostgreSQL's ``UserAbortTransactionBlock``)."""
    if conn.closed or conn.pgconn.pipeline_status == pq.PipelineStatus.ABORTED:
        return
    if isinstance(conn._pipeline, _TenantPipeline) and conn._pipeline.ended():
        return  # the error came from commit_pipeline's Sync, which ended the transaction (a stale turn's fence)
    # A broken connection raises here: nothing it sent can commit without a Sync the server receives.
    with suppress(psycopg.Error):
        conn.execute(_ROLLBACK, prepare=False)


def commit_pipeline(conn: psycopg.Connection[Any]) -> None:
    """Commit now, with everything queued before (one round trip), so the caller reads its results
    committed.  On ``tenant_connection``'s connection that is a Sync, which ends its implicit transaction;
    on any other connection, COMMIT.  Statements after it would run without the clinic set (RLS refuses)."""
    pipeline = conn._pipeline
    if conn.autocommit and pipeline is not None:
        pipeline.sync()
    else:
        conn.commit()


def driver_connection(session: Session | Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy session or connection, inside the same transaction (so
    hot-path helpers written for ``tenant_connection`` also serve callers holding a ``tenant_scope``)."""
    connection = session.connection() if isinstance(session, Session) else session
    return connection.connection.driver_connection  # type: ignore[return-value]


def psycopg_connection(conn: psycopg.Connection[Any] | Session | Connection) -> psycopg.Connection[Any]:
    """``conn`` itself when it is the hot path's psycopg connection, else the one under the session (same
    transaction): statements written once in psycopg's dialect serve both kinds of caller."""
    return conn if isinstance(conn, psycopg.Connection) else driver_connection(conn)


def sql_list(values: Sequence[str]) -> str:
    """A literal SQL list of our own constants (never of input: the statuses and kinds of ``domain``), so a
    statement names the one set and still keeps the plan a literal list gets."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"
