"""The hot path's transaction (``Database.tenant_connection``) on the real database: the protocol's implicit
transaction — no BEGIN, no COMMIT statement — is still one transaction with the clinic set, committed only when
the block ends without error; a Python exception or a server error leaves nothing behind, even for statements
that had already run; and the pooled connection goes back as it was found (out of autocommit, no clinic)."""

from __future__ import annotations

from typing import Any, TextIO

import psycopg
import pytest
from sqlalchemy import text

from db.engine import Database, commit_pipeline
from tests.integration.test_campaigns import add_client, make_clinic


@pytest.fixture(scope="module")
def clinic(owner_engine) -> dict[str, Any]:
    return make_clinic(owner_engine)


def _client(owner_engine, clinic: dict[str, Any]) -> int:
    client_id, _ = add_client(owner_engine, clinic["id"], "Tenant Scope")
    return int(client_id)


def _notes(owner_engine, client_id: int) -> str:
    with owner_engine.connect() as conn:
        return conn.execute(text("SELECT notes FROM clients WHERE id = :id"), {"id": client_id}).scalar_one()


_WRITE = "UPDATE clients SET notes = %s WHERE id = %s RETURNING id"


def _handed_back_clean(database: Database) -> None:
    fairy = database.engine.raw_connection()
    try:
        conn: psycopg.Connection[Any] = fairy.driver_connection  # type: ignore[assignment]
        assert not conn.autocommit
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        row = conn.execute("SELECT current_setting('app.clinic_id', true)").fetchone()
        conn.rollback()
        assert row is not None and not row[0], "a clinic was left set on a pooled connection"
    finally:
        fairy.close()


def test_one_transaction_with_the_clinic_set_committed_at_the_end(one_connection, owner_engine, clinic):
    client_id = _client(owner_engine, clinic)
    with one_connection.tenant_connection(clinic["id"]) as conn:
        first = conn.execute("SELECT pg_current_xact_id()::text, current_setting('app.clinic_id')").fetchone()
        assert conn.execute(_WRITE, ("written", client_id)).fetchone() == (client_id,)  # RLS let it through
        second = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
        assert first is not None and second is not None
        assert first == (second[0], str(clinic["id"])), "the statements ran in more than one transaction"
        assert _notes(owner_engine, client_id) == "", "visible to others before the block ended"
    assert _notes(owner_engine, client_id) == "written"
    _handed_back_clean(one_connection)


def _advisory_lock_held(owner_engine, key: int) -> bool:
    with owner_engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = :key"),
                {"key": key},
            ).scalar_one()
        )


def test_statements_wait_unsent_until_a_fetch_or_the_sync_needs_them(one_connection, owner_engine, clinic):
    # The hot path's saving: psycopg would send (and poll for) each statement as it is executed; queued, they go
    # out together when something needs an answer.
    key = 718_281_828
    with one_connection.tenant_connection(clinic["id"]) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        assert not _advisory_lock_held(owner_engine, key), "sent before anything needed it"
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert _advisory_lock_held(owner_engine, key), "a fetch sends what was queued before it"
        commit_pipeline(conn)
        assert not _advisory_lock_held(owner_engine, key)  # the Sync ended the transaction
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))  # a session lock: outlives the transaction
        commit_pipeline(conn)
        assert _advisory_lock_held(owner_engine, key), "a Sync sends what was queued before it"
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    assert not _advisory_lock_held(owner_engine, key), "leaving the block sends what was queued"
    _handed_back_clean(one_connection)


def test_a_python_exception_leaves_nothing_even_after_results_were_read(one_connection, owner_engine, clinic):
    client_id = _client(owner_engine, clinic)
    with pytest.raises(LookupError), one_connection.tenant_connection(clinic["id"]) as conn:
        assert conn.execute(_WRITE, ("half done", client_id)).fetchone() == (client_id,)
        conn.execute(_WRITE, ("queued, never read", client_id))
        raise LookupError("the caller gave up")
    assert _notes(owner_engine, client_id) == ""
    _handed_back_clean(one_connection)


def test_a_server_error_rolls_back_what_ran_before_it(one_connection, owner_engine, clinic):
    client_id = _client(owner_engine, clinic)
    with pytest.raises(psycopg.errors.DivisionByZero), one_connection.tenant_connection(clinic["id"]) as conn:
        conn.execute(_WRITE, ("before the error", client_id))
        conn.execute("SELECT 1 / 0").fetchone()
    assert _notes(owner_engine, client_id) == ""
    _handed_back_clean(one_connection)
    # The connection is fine for the next caller.
    with one_connection.tenant_connection(clinic["id"]) as conn:
        conn.execute(_WRITE, ("next caller", client_id))
    assert _notes(owner_engine, client_id) == "next caller"


def test_commit_pipeline_commits_mid_block_and_ends_the_clinic_scope(one_connection, owner_engine, clinic):
    client_id = _client(owner_engine, clinic)
    with one_connection.tenant_connection(clinic["id"]) as conn:
        cursor = conn.execute(_WRITE, ("committed early", client_id))
        commit_pipeline(conn)
        assert _notes(owner_engine, client_id) == "committed early"
        assert cursor.fetchone() == (client_id,)  # its result came back with the commit
        # After the commit the clinic is no longer set: row-level security refuses the clinic's rows.
        assert conn.execute("SELECT count(*) FROM clients WHERE id = %s", (client_id,)).fetchone() == (0,)
    _handed_back_clean(one_connection)


def _trace(conn: psycopg.Connection[Any], sink: TextIO) -> None:
    """libpq's protocol trace of everything ``conn`` sends and receives from here on, into ``sink``."""
    conn.pgconn.trace(sink.fileno())
    conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)


def _sent(trace_path) -> list[str]:
    return [line for line in trace_path.read_text().splitlines() if line.startswith("F")]


def _syncs(sent: list[str]) -> int:
    return sum(1 for line in sent if "\tSync" in line or " Sync" in line)


def test_the_wire_carries_no_begin_or_commit_and_one_sync(one_connection, owner_engine, clinic, tmp_path):
    """The point of the implicit transaction, read off libpq's protocol trace: the server gets the statements and
    a single Sync — no BEGIN, no COMMIT."""
    client_id = _client(owner_engine, clinic)
    trace = tmp_path / "wire.trace"
    with trace.open("w") as sink, one_connection.tenant_connection(clinic["id"]) as conn:
        _trace(conn, sink)
        assert conn.execute(_WRITE, ("traced", client_id)).fetchone() == (client_id,)
        conn.execute("SELECT 1")
    conn.pgconn.untrace()
    sent = _sent(trace)
    assert any("UPDATE clients" in line for line in sent), sent
    assert not [line for line in sent if "BEGIN" in line or "COMMIT" in line], sent
    assert _syncs(sent) == 1, sent
    assert _notes(owner_engine, client_id) == "traced"


def test_a_commit_mid_block_is_the_blocks_only_sync(one_connection, owner_engine, clinic, tmp_path):
    """``commit_pipeline`` syncs; leaving the block then sends nothing (another Sync would be a round trip for an
    empty transaction)."""
    client_id = _client(owner_engine, clinic)
    trace = tmp_path / "wire.trace"
    with trace.open("w") as sink, one_connection.tenant_connection(clinic["id"]) as conn:
        _trace(conn, sink)
        cursor = conn.execute(_WRITE, ("one sync", client_id))
        commit_pipeline(conn)
        assert cursor.fetchone() == (client_id,)
    conn.pgconn.untrace()
    assert _syncs(_sent(trace)) == 1, _sent(trace)
    assert _notes(owner_engine, client_id) == "one sync"
    _handed_back_clean(one_connection)


def test_a_statement_after_the_commit_is_committed_by_a_sync_of_its_own(one_connection, owner_engine, clinic, tmp_path):
    """Whatever is sent after ``commit_pipeline`` — even with its result read — opens a transaction that leaving
    the block must still commit: it is counted, and the Sync is sent."""
    client_id = _client(owner_engine, clinic)
    trace = tmp_path / "wire.trace"
    with trace.open("w") as sink, one_connection.tenant_connection(clinic["id"]) as conn:
        _trace(conn, sink)
        conn.execute(_WRITE, ("first", client_id))
        commit_pipeline(conn)
        conn.execute("SELECT set_config('app.clinic_id', %s, true)", (str(clinic["id"]),))
        assert conn.execute(_WRITE, ("after the commit", client_id)).fetchone() == (client_id,)
        assert _notes(owner_engine, client_id) == "first"  # the second write is not committed yet
    conn.pgconn.untrace()
    assert _syncs(_sent(trace)) == 2, _sent(trace)
    assert _notes(owner_engine, client_id) == "after the commit"
    _handed_back_clean(one_connection)


def test_an_error_at_the_commit_needs_no_rollback(one_connection, owner_engine, clinic, tmp_path):
    """A server error raised by ``commit_pipeline`` (a stale turn's fence is one) ended the transaction at that
    Sync: nothing was written, and no ROLLBACK follows it on the wire."""
    client_id = _client(owner_engine, clinic)
    trace = tmp_path / "wire.trace"
    with (
        pytest.raises(psycopg.errors.DivisionByZero),
        trace.open("w") as sink,
        one_connection.tenant_connection(clinic["id"]) as conn,
    ):
        _trace(conn, sink)
        conn.execute(_WRITE, ("before the fence", client_id))
        conn.execute("SELECT 1 / 0")
        commit_pipeline(conn)
    conn.pgconn.untrace()
    sent = _sent(trace)
    assert not [line for line in sent if "ROLLBACK" in line], sent
    assert _notes(owner_engine, client_id) == ""
    _handed_back_clean(one_connection)
