"""The conversation core on real Postgres: attach + lease + snapshot in one transaction, the fenced single-round-trip
commit, the claim of the first reply, and what a stale worker is (not) allowed to write."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from db.engine import Database
from domain.conversation import Reply, ToolAudit, TurnOutput
from domain.ports import ChatMessage, ToolCall
from worker.conversations import (
    Attached,
    Snapshot,
    StaleTurn,
    TurnRecord,
    attach_and_lease,
    commit_turn,
    lease_and_load,
)
from worker.outbox.rows import OutboxRow

GLOW = 1
GLOW_NUMBER = "+14155550123"


def _record(database: Database, phone: str, body: str) -> int:
    with database.tenant_scope(GLOW) as session:
        return int(
            session.execute(
                text("""INSERT INTO inbox_events (clinic_id, source, provider_event_id, sender_key, payload, trace_id)
                    VALUES (1, 'sms', :sid, :sender, CAST(:payload AS jsonb), 'trace')
                    RETURNING id"""),
                {
                    "sid": "SM" + uuid.uuid4().hex,
                    "sender": f"sms:{phone}",
                    "payload": json.dumps({"from": phone, "to": GLOW_NUMBER, "body": body}),
                },
            ).scalar_one()
        )


def _attach(database: Database, inbox_id: int, owner: str = "worker-a") -> Attached:
    with database.tenant_connection(GLOW) as conn:
        attached = attach_and_lease(
            conn,
            GLOW,
            inbox_id,
            clinic_name="Glow MedSpa",
            clinic_phone="+14155550100",
            owner=owner,
            lease_seconds=45,
            history_window=20,
            quarantine_after=5,
        )
    assert attached is not None
    return attached


def _reply_row(snapshot: Snapshot, body: str) -> OutboxRow:
    return OutboxRow(
        channel="sms",
        kind="reply",
        to_address=snapshot.client_phone or "",
        from_address=GLOW_NUMBER,
        body=body,
        client_id=snapshot.client_id,
        conversation_id=snapshot.lease.conversation_id,
        dedupe_key=f"reply:{snapshot.lease.conversation_id}:{snapshot.last_seq}:0",
    )


def _commit(database: Database, snapshot: Snapshot, body: str):  # type: ignore[no-untyped-def]
    output = TurnOutput(replies=[Reply(body)], transcript=[], agent_state="idle", slots={}, outcome="replied")
    record = TurnRecord(
        output=output, started_at=datetime.now(UTC), latency_ms=1, worker=snapshot.lease.owner, trace_id="trace"
    )
    with database.tenant_connection(GLOW) as conn:
        return commit_turn(conn, snapshot, record, [_reply_row(snapshot, body)], 45)


_created: list[str] = []


def _phone() -> str:
    phone = "+1628" + str(uuid.uuid4().int % 10_000_000).zfill(7)
    _created.append(phone)
    return phone


@pytest.fixture(autouse=True)
def _remove_test_patients(database: Database) -> Iterator[None]:
    """Leave nothing behind: the e2e tests wait for the whole clinic to go idle (no held leases, no unsent rows)."""
    yield
    with database.tenant_scope(GLOW) as session:
        for phone in _created:
            session.execute(text("DELETE FROM outbox WHERE to_address = :p"), {"p": phone})
            session.execute(text("DELETE FROM inbox_events WHERE sender_key = :k"), {"k": f"sms:{phone}"})
            session.execute(text("DELETE FROM clients WHERE phone_e164 = :p"), {"p": phone})  # cascades
    _created.clear()


def test_first_contact_attaches_takes_the_lease_and_loads_the_snapshot(database: Database) -> None:
    phone = _phone()
    attached = _attach(database, _record(database, phone, "hello there"))
    assert attached.newly_attached == 1 and attached.failing is None
    snapshot = attached.snapshot
    assert snapshot is not None and snapshot.client_phone == phone
    assert [m.body for m in snapshot.pending] == ["hello there"] and snapshot.history == []
    assert snapshot.lease.owner == "worker-a" and not snapshot.lease.took_over


def test_two_first_texts_racing_make_one_patient_one_conversation_and_no_error(database: Database) -> None:
    """Two deliveries from a new number attached at once by two workers (the sender's backlog lock serialises them):
    one client, one conversation, each text attached once, in order, and neither worker fails."""
    phone = _phone()
    events = [_record(database, phone, f"first text {n}") for n in (1, 2)]
    barrier = threading.Barrier(2)

    def attach(inbox_id: int, owner: str) -> Attached:
        barrier.wait(timeout=10)
        return _attach(database, inbox_id, owner=owner)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(attach, events, ["worker-a", "worker-b"]))
    assert sum(r.newly_attached for r in results) == 2
    assert {r.conversation_id for r in results} == {results[0].conversation_id}
    with database.tenant_scope(GLOW) as session:
        clients = session.execute(text("SELECT count(*) FROM clients WHERE phone_e164 = :p"), {"p": phone}).scalar()
        rows = session.execute(
            text("SELECT body, inbound_seq FROM messages WHERE conversation_id = :c ORDER BY inbound_seq"),
            {"c": results[0].conversation_id},
        ).all()
    assert clients == 1
    assert [(r[0], r[1]) for r in rows] == [("first text 1", 1), ("first text 2", 2)]


def test_a_backlog_of_one_sender_attaches_in_arrival_order_to_one_turn(database: Database) -> None:
    phone = _phone()
    first, second, third = (_record(database, phone, f"message {n}") for n in (1, 2, 3))
    attached = _attach(database, second)  # whichever delivery comes first takes the whole backlog
    assert attached.newly_attached == 3
    assert attached.snapshot is not None
    assert [m.body for m in attached.snapshot.pending] == ["message 1", "message 2", "message 3"]
    assert [m.seq for m in attached.snapshot.pending] == [1, 2, 3]
    # The other deliveries are no-ops: already attached, and the lease is held.
    for inbox_id in (first, third):
        again = _attach(database, inbox_id, owner="worker-b")
        assert again.newly_attached == 0 and again.snapshot is None


def test_a_message_during_a_turn_is_attached_but_waits_for_the_lease_holder(database: Database) -> None:
    phone = _phone()
    held = _attach(database, _record(database, phone, "first"))
    assert held.snapshot is not None
    late = _attach(database, _record(database, phone, "second"), owner="worker-b")
    assert late.newly_attached == 1 and late.snapshot is None  # worker-a holds the lease
    committed = _commit(database, held.snapshot, "answer to first")
    assert committed.more_pending  # the lease was kept for one more turn that sees "second"
    assert len(committed.claimed) == 1 and committed.claimed[0].body == "answer to first"


def test_a_stale_worker_commits_nothing(database: Database) -> None:
    phone = _phone()
    stale = _attach(database, _record(database, phone, "are you open sunday?"))
    assert stale.snapshot is not None
    conversation_id = stale.snapshot.lease.conversation_id
    # worker-a stalls; its lease expires and worker-b takes the conversation over.
    with database.tenant_scope(GLOW) as session:
        session.execute(
            text("UPDATE conversations SET lease_expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": conversation_id},
        )
    with database.tenant_connection(GLOW) as conn:
        fresh, failing = lease_and_load(conn, GLOW, conversation_id, "worker-b", 45, 20, 5)
    assert fresh is not None and failing is None and fresh.lease.took_over
    assert fresh.lease.version > stale.snapshot.lease.version

    with pytest.raises(StaleTurn):
        _commit(database, stale.snapshot, "stale answer")
    committed = _commit(database, fresh, "fresh answer")
    assert not committed.more_pending and [c.body for c in committed.claimed] == ["fresh answer"]

    with database.tenant_scope(GLOW) as session:
        bodies = (
            session.execute(text("SELECT body FROM outbox WHERE conversation_id = :id"), {"id": conversation_id})
            .scalars()
            .all()
        )
        turns = (
            session.execute(text("SELECT worker FROM turns WHERE conversation_id = :id"), {"id": conversation_id})
            .scalars()
            .all()
        )
        lease = session.execute(
            text("SELECT lease_owner, answered_seq FROM conversations WHERE id = :id"), {"id": conversation_id}
        ).one()
    assert bodies == ["fresh answer"] and turns == ["worker-b"]  # nothing of the stale turn survived
    assert lease == (None, 1)


def test_the_first_reply_is_not_claimed_while_an_earlier_one_is_unsent(database: Database) -> None:
    phone = _phone()
    attached = _attach(database, _record(database, phone, "hi"))
    assert attached.snapshot is not None
    conversation_id = attached.snapshot.lease.conversation_id
    with database.tenant_scope(GLOW) as session:  # a compliance reply still queued ahead of this turn's reply
        session.execute(
            text("""INSERT INTO outbox (clinic_id, conversation_id, client_id, channel, kind, to_address,
                                                    body, dedupe_key)
                                VALUES (1, :conv, :client, 'sms', 'compliance', :to, 'earlier', :key)"""),
            {
                "conv": conversation_id,
                "client": attached.snapshot.client_id,
                "to": phone,
                "key": f"compliance:{uuid.uuid4().hex}",
            },
        )
    committed = _commit(database, attached.snapshot, "later")
    assert committed.claimed == [] and len(committed.outbox_ids) == 1  # left queued for the send actor


def test_no_claim_for_an_opted_out_patient(database: Database) -> None:
    phone = _phone()
    attached = _attach(database, _record(database, phone, "hi"))
    assert attached.snapshot is not None
    with database.tenant_scope(GLOW) as session:
        session.execute(
            text("UPDATE clients SET consent_state = 'opted_out' WHERE id = :id"), {"id": attached.snapshot.client_id}
        )
    committed = _commit(database, attached.snapshot, "should wait for the send-time consent check")
    assert committed.claimed == [] and len(committed.outbox_ids) == 1


def test_a_tool_turn_stores_its_tool_calls_once_and_the_next_history_reads_its_reply_once(database: Database) -> None:
    phone = _phone()
    attached = _attach(database, _record(database, phone, "any botox openings friday?"))
    snapshot = attached.snapshot
    assert snapshot is not None
    conversation_id = snapshot.lease.conversation_id
    call = ToolCall(id="call_1", name="search_availability", arguments='{"service": "botox"}')
    reply = "Friday 10:00 or 11:30 with Dana."
    output = TurnOutput(
        replies=[Reply(reply)],
        # What the brain hands back: its tool step and its final answer, both already in the rows below.
        transcript=[
            ChatMessage(role="assistant", content=None, tool_calls=(call,)),
            ChatMessage(role="tool", tool_call_id="call_1", name="search_availability", content='{"slots": 2}'),
            ChatMessage(role="assistant", content=reply),
        ],
        agent_state="proposing",
        slots={},
        outcome="replied",
        tool_audit=[
            ToolAudit("call_1", "search_availability", {"service": "botox"}, {"slots": 2}, True, 3),
            ToolAudit("call_2", "book_appointment", {"slot": "10:00"}, {"error": "taken"}, False, 7),
        ],
    )
    record = TurnRecord(output=output, started_at=datetime.now(UTC), latency_ms=5, worker="worker-a", trace_id="t")
    with database.tenant_connection(GLOW) as conn:
        commit_turn(conn, snapshot, record, [_reply_row(snapshot, reply)], 45)

    with database.tenant_scope(GLOW) as session:
        messages = session.execute(
            text("SELECT direction, role, body FROM messages WHERE conversation_id = :id ORDER BY id"),
            {"id": conversation_id},
        ).all()
        calls = session.execute(
            text(
                "SELECT e.c->>'call_id', e.c->>'name', e.c->'arguments', e.c->'result', (e.c->>'ok')::boolean, "
                "(e.c->>'latency_ms')::int, u.clinic_id "
                "FROM turns u, jsonb_array_elements(u.tool_calls) WITH ORDINALITY AS e(c, n) "
                "WHERE u.conversation_id = :id ORDER BY u.id, e.n"
            ),
            {"id": conversation_id},
        ).all()
    assert [tuple(m) for m in messages] == [
        ("inbound", "user", "any botox openings friday?"),
        ("outbound", "assistant", reply),
    ]
    # In the order they ran, each once.
    assert [tuple(c) for c in calls] == [
        ("call_1", "search_availability", {"service": "botox"}, {"slots": 2}, True, 3, GLOW),
        ("call_2", "book_appointment", {"slot": "10:00"}, {"error": "taken"}, False, 7, GLOW),
    ]

    follow_up = _attach(database, _record(database, phone, "10 please"), owner="worker-b")
    assert follow_up.snapshot is not None
    assert [(m.role, m.content) for m in follow_up.snapshot.history] == [
        ("user", "any botox openings friday?"),
        ("assistant", reply),
    ]
