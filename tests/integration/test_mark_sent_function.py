"""Recording sends as one statement (``medspa_mark_sent``, migration 0019) on the real database: the sender's record
marks exactly the rows still out with a sender, in its own autocommit transaction scoped to the clinic, never
another clinic's, and hands its connection back to the pool as it found it."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from db.engine import Database, make_engine, sql_list
from domain.outbox import SENT, SENT_OVER
from tests.integration.test_campaigns import add_client, make_clinic
from tests.support.infra import wait_for
from worker.outbox.rows import Claim, Failure, SentMark
from worker.outbox.sent_marks import MARK_SENT, SentMarkRecorder
from worker.outbox.store import PostgresOutbox


@pytest.fixture(scope="module")
def clinics(owner_engine) -> tuple[dict[str, Any], dict[str, Any]]:
    return make_clinic(owner_engine), make_clinic(owner_engine)


def _row(owner_engine, clinic: dict[str, Any], status: str) -> int:
    client_id, phone = add_client(owner_engine, clinic["id"], "Mark Sent")
    with owner_engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    """INSERT INTO outbox (clinic_id, client_id, channel, kind, to_address, body, status, segments)
                       VALUES (:c, :client, 'sms', 'reply', :to, 'hello', :status, 1) RETURNING id"""
                ),
                {"c": clinic["id"], "client": client_id, "to": phone, "status": status},
            ).scalar_one()
        )


def _state(owner_engine, outbox_id: int) -> dict[str, Any]:
    with owner_engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, provider_message_id, segments, sent_at FROM outbox WHERE id = :id"), {"id": outbox_id}
        ).one()
    return dict(row._mapping)


def _clinic_setting(database: Database) -> str | None:
    with database.autocommit_connection() as conn:
        found = conn.execute("SELECT current_setting('app.clinic_id', true)").fetchone()
    assert found is not None
    return found[0] or None


def test_the_installed_function_marks_from_the_domain_statuses(owner_engine):
    with owner_engine.connect() as conn:
        definition = conn.execute(text("SELECT pg_get_functiondef('medspa_mark_sent'::regproc)")).scalar_one()
    assert f"status = '{SENT}'" in definition
    assert f"status IN {sql_list(SENT_OVER)}" in definition, "migration 0019's statuses drifted from domain.outbox"


def test_a_record_of_sends_alone_is_one_autocommit_statement(one_connection, owner_engine, clinics):
    database = one_connection
    clinic, _ = clinics
    sending, unknown, failed = (_row(owner_engine, clinic, s) for s in ("sending", "unknown", "failed"))
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    held = PostgresOutbox(database).record(
        clinic["id"],
        Claim.start(),
        sent=[SentMark(sending, "SM-one", 2, at), SentMark(unknown, None, None), SentMark(failed, "SM-late", 1)],
    )
    assert held == set()
    first, second, third = (_state(owner_engine, i) for i in (sending, unknown, failed))
    assert (first["status"], first["provider_message_id"], first["segments"], first["sent_at"]) == (
        "sent",
        "SM-one",
        2,
        at,
    )
    # No provider id or segments given: the row keeps its own; no time given: the transaction's.
    assert (second["status"], second["provider_message_id"], second["segments"]) == ("sent", None, 1)
    assert datetime.now(UTC) - second["sent_at"] < timedelta(minutes=5)
    # A row no longer out with a sender is not marked.
    assert (third["status"], third["provider_message_id"]) == ("failed", None)
    # The connection went back to the pool out of autocommit, with no clinic left set on it.
    assert _clinic_setting(database) is None
    with database.tenant_connection(clinic["id"]) as conn:
        assert conn.execute("SELECT count(*) FROM outbox WHERE id = %s", (sending,)).fetchone() == (1,)
    fairy = database.engine.raw_connection()
    try:
        assert not fairy.driver_connection.autocommit  # type: ignore[union-attr]
    finally:
        fairy.close()


def test_with_failures_the_record_stays_one_transaction(database, owner_engine, clinics):
    clinic, _ = clinics
    claim = Claim.start()
    sent, failing = _row(owner_engine, clinic, "sending"), _row(owner_engine, clinic, "sending")
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET claim_token = :t WHERE id = :id"), {"t": claim.token, "id": failing})
    PostgresOutbox(database).record(
        clinic["id"],
        claim,
        sent=[SentMark(sent, "SM-ok", 1)],
        failed=[Failure(failing, None, "", "30007", "filtered")],
    )
    assert _state(owner_engine, sent)["status"] == "sent"
    assert _state(owner_engine, failing)["status"] == "failed"


def test_it_never_marks_another_clinics_rows(database, owner_engine, clinics):
    clinic, other = clinics
    theirs = _row(owner_engine, other, "sending")
    # Named with the wrong clinic: row-level security hides the row, nothing is marked.
    with database.autocommit_connection() as conn:
        assert conn.execute(MARK_SENT, (clinic["id"], [theirs], [None], ["SM-x"], [None])).fetchone() == (0,)
    assert _state(owner_engine, theirs)["status"] == "sending"
    # Inside another clinic's transaction it refuses outright instead of switching the transaction's clinic.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), database.tenant_connection(clinic["id"]) as conn:
        conn.execute(MARK_SENT, (other["id"], [theirs], [None], ["SM-x"], [None])).fetchone()
    assert _state(owner_engine, theirs)["status"] == "sending"
    # Its own clinic, its own row: marked.
    with database.autocommit_connection() as conn:
        assert conn.execute(MARK_SENT, (other["id"], [theirs], [None], ["SM-y"], [None])).fetchone() == (1,)
    assert _state(owner_engine, theirs)["provider_message_id"] == "SM-y"


# ------------------------------------------------------------------ sent marks written in batches
def test_deferred_marks_wait_for_the_recorder_then_land_together_with_their_send_times(database, owner_engine, clinics):
    first_clinic, second_clinic = clinics
    recorder = SentMarkRecorder(database, window_s=600)  # its thread does not write during the test: flush does
    store = PostgresOutbox(database, recorder)
    ours, theirs = _row(owner_engine, first_clinic, "sending"), _row(owner_engine, second_clinic, "sending")
    try:
        before = datetime.now(UTC)
        assert store.record(first_clinic["id"], Claim.start(), sent=[SentMark(ours, "SM-a", 1)], later=True) == set()
        store.record(second_clinic["id"], Claim.start(), sent=[SentMark(theirs, "SM-b", 2)], later=True)
        added = datetime.now(UTC)
        assert [_state(owner_engine, i)["status"] for i in (ours, theirs)] == ["sending", "sending"]
        assert recorder.flush() == 2  # one call per clinic, each in its own clinic's scope
        assert recorder.flush() == 0
    finally:
        recorder.close()
    first, second = _state(owner_engine, ours), _state(owner_engine, theirs)
    assert (first["status"], first["provider_message_id"]) == ("sent", "SM-a")
    assert (second["status"], second["provider_message_id"], second["segments"]) == ("sent", "SM-b", 2)
    # Each row's sent_at is when its send was handed over, not when the batch was written.
    assert before <= first["sent_at"] <= added and before <= second["sent_at"] <= added
    assert _clinic_setting(database) is None


def test_the_recorder_writes_on_its_own_within_its_window_and_on_close(database, owner_engine, clinics):
    clinic, _ = clinics
    recorder = SentMarkRecorder(database, window_s=0.01)
    store = PostgresOutbox(database, recorder)
    prompt, at_close = _row(owner_engine, clinic, "sending"), _row(owner_engine, clinic, "sending")
    store.record(clinic["id"], Claim.start(), sent=[SentMark(prompt, "SM-p", 1)], later=True)
    wait_for(lambda: _state(owner_engine, prompt)["status"] == "sent", timeout=10, what="the recorder's write")
    slow = SentMarkRecorder(database, window_s=600)
    PostgresOutbox(database, slow).record(clinic["id"], Claim.start(), sent=[SentMark(at_close, "SM-c", 1)], later=True)
    slow.close()  # the worker's shutdown: what waits is written before the process goes
    assert _state(owner_engine, at_close)["status"] == "sent"
    after_close = _row(owner_engine, clinic, "sending")
    slow.add(clinic["id"], [SentMark(after_close, "SM-after", 1)])  # a send that outlived the shutdown
    assert _state(owner_engine, after_close)["status"] == "sent"
    recorder.close()


def test_only_a_record_of_sends_alone_waits(database, owner_engine, clinics):
    # A failure (it changes the recipient's standing) or a renewal (the caller needs its answer) is never deferred.
    clinic, _ = clinics
    recorder = SentMarkRecorder(database, window_s=600)
    claim = Claim.start()
    sent, failing = _row(owner_engine, clinic, "sending"), _row(owner_engine, clinic, "sending")
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET claim_token = :t WHERE id = :id"), {"t": claim.token, "id": failing})
    try:
        PostgresOutbox(database, recorder).record(
            clinic["id"],
            claim,
            sent=[SentMark(sent, "SM-now", 1)],
            failed=[Failure(failing, None, "", "30007", "filtered")],
            later=True,
        )
        assert [_state(owner_engine, i)["status"] for i in (sent, failing)] == ["sent", "failed"]
        assert recorder.flush() == 0
    finally:
        recorder.close()


def test_a_mark_that_cannot_be_written_is_counted_and_left_to_the_sweeper(owner_engine, clinics):
    clinic, _ = clinics
    row = _row(owner_engine, clinic, "sending")
    with socket.socket() as probe:  # a port nothing listens on: every connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = Database(make_engine(f"postgresql+psycopg://medspa@127.0.0.1:{port}/medspa"))
    recorder = SentMarkRecorder(away, window_s=600)
    unrecorded = REGISTRY.get_sample_value("medspa_sent_marks_unrecorded_total") or 0.0
    try:
        recorder.add(clinic["id"], [SentMark(row, "SM-lost", 1)])
        assert recorder.flush() == 0  # logged and counted, never raised into the sender
    finally:
        recorder.close()
        away.engine.dispose()
    assert REGISTRY.get_sample_value("medspa_sent_marks_unrecorded_total") == unrecorded + 1
    # Still 'sending' under its claim: the sweeper takes it back as 'unknown' and reconciles it with the provider.
    assert _state(owner_engine, row)["status"] == "sending"
