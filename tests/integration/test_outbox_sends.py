"""Exactly once at the send step, against the real database and the Twilio fake through the real SDK: a send
whose outcome was never recorded is reconciled with Twilio before any re-send (also while Twilio still has it
queued), and a sender whose claim on a row was lost (swept to ``unknown`` and re-claimed by another worker)
never calls the provider for it."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from domain.audience import SegmentFilter
from tests.integration.test_campaigns import make_clinic
from tests.support.stack import Stack, running_stack
from worker.campaigns.lifecycle import create_campaign
from worker.campaigns.sending import send_batch
from worker.container import Container, build_container
from worker.outbox.ports import SendPorts, send_ports
from worker.outbox.rows import ClaimedSend, SendRow
from worker.outbox.sender import BatchSend, RetryLater, send_claimed, send_one, sms_message_for
from worker.sms_rate import SmsRateLimiter
from worker.sweeper import SweepDeadlines, sweep


@pytest.fixture(scope="module")
def clinic(owner_engine) -> dict[str, Any]:
    """A clinic of this module's own: rows left claimed on purpose never hold up another test's idle check."""
    return make_clinic(owner_engine)


@pytest.fixture(scope="module")
def sending_stack(infra, tmp_path_factory) -> Iterator[tuple[Stack, Container]]:
    # No Dramatiq worker: these tests drive the send functions themselves, one step at a time.
    with running_stack(infra, tmp_path_factory.mktemp("outbox-stack"), inprocess_worker=False) as (stack, _):
        container = build_container(stack.settings, clock=stack.clock)
        try:
            yield stack, container
        finally:
            container.close()


@pytest.fixture(autouse=True)
def _twilio_back_to_normal(sending_stack: tuple[Stack, Container]) -> Iterator[None]:
    yield
    stack, _ = sending_stack
    stack.twilio.hold_in_queue = False
    stack.twilio.latency_s = 0.0
    stack.twilio.release_queue()


def _phone() -> str:
    return "+1628" + str(uuid.uuid4().int % 10**7).zfill(7)


def _noon_zone() -> str:
    """A time zone where it is about 13:00 now: a marketing text may go out whenever the test runs."""
    offset = 13 - datetime.now(UTC).hour
    offset = offset + 24 if offset < -12 else offset - 24 if offset > 14 else offset
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3


def _outbox_row(
    container: Container,
    clinic: dict[str, Any],
    *,
    status: str,
    kind: str = "reply",
    claimed_ago_s: float = 0,
    campaign_id: int | None = None,
    claim_token: int | None = None,
) -> dict[str, Any]:
    """A client and one outbox row for them (status as given; a claimed row was claimed ``claimed_ago_s`` ago)."""
    phone = _phone()
    with container.database.tenant_scope(clinic["id"]) as session:
        client_id = session.execute(
            text(
                """INSERT INTO clients (clinic_id, phone_e164, consent_state, marketing_consent, timezone)
                   VALUES (:c, :p, 'opted_in', 'granted', :tz) RETURNING id"""
            ),
            {"c": clinic["id"], "p": phone, "tz": _noon_zone()},
        ).scalar_one()
        row = (
            session.execute(
                text(
                    """INSERT INTO outbox (clinic_id, client_id, channel, kind, to_address, from_address, body, status,
                                           attempts, claimed_at, created_at, campaign_id, claim_token)
                       VALUES (:c, :client, 'sms', :kind, :to, :from, :body, CAST(:status AS text),
                               CASE WHEN CAST(:status AS text) = 'queued' THEN 0 ELSE 1 END,
                               CASE WHEN CAST(:status AS text) = 'queued' THEN NULL
                                    ELSE now() - make_interval(secs => :ago) END,
                               now() - make_interval(secs => :ago), :campaign, :token)
                       RETURNING id, to_address, from_address, body, client_id, conversation_id, trace_id"""
                ),
                {
                    "c": clinic["id"],
                    "client": client_id,
                    "kind": kind,
                    "to": phone,
                    "from": clinic["number"],
                    "body": f"See you Friday at 10:00 [{uuid.uuid4().hex[:8]}]",
                    "status": status,
                    "ago": claimed_ago_s,
                    "campaign": campaign_id,
                    "token": claim_token,
                },
            )
            .mappings()
            .one()
        )
    return dict(row)


def _outbox(container: Container, clinic: dict[str, Any], outbox_id: int) -> dict[str, Any]:
    with container.database.tenant_scope(clinic["id"]) as session:
        return dict(
            session.execute(
                text("SELECT status, provider_message_id, attempts FROM outbox WHERE id = :id"), {"id": outbox_id}
            )
            .mappings()
            .one()
        )


def _ports(container: Container) -> SendPorts:
    return send_ports(container, SmsRateLimiter(container.redis, 0))


def _sms(row: dict[str, Any]) -> SendRow:
    return SendRow(
        int(row["id"]), "sms", "reply", "unknown", row["to_address"], row["from_address"], row["body"], {}, None, None
    )


def _sent_to(stack: Stack, phone: str) -> list[Any]:
    return [m for m in list(stack.twilio.messages) if m.to == phone]


def test_a_send_still_queued_at_twilio_is_reconciled_not_sent_again(sending_stack, clinic):
    """The first attempt reached Twilio, which still has it queued (no date_sent: a brown-out), and the worker
    died before recording it; the sweeper marked the row ``unknown``.  The next attempt finds it at Twilio."""
    stack, container = sending_stack
    stack.twilio.hold_in_queue = True
    row = _outbox_row(container, clinic, status="unknown", claimed_ago_s=120)
    ports = _ports(container)
    first = container.sms.send(sms_message_for(ports, clinic["id"], _sms(row)))  # the attempt that was never recorded

    outcome = send_one(ports, clinic["id"], int(row["id"]))

    assert outcome.status == "sent"
    assert len(_sent_to(stack, row["to_address"])) == 1, "re-sent although Twilio had it queued"
    assert _outbox(container, clinic, int(row["id"]))["provider_message_id"] == first.provider_message_id
    stack.twilio.assert_clean()


def test_a_sender_whose_claim_was_taken_over_does_not_call_the_provider(sending_stack, clinic):
    """A turn's commit claimed its reply, then the worker stalled past the sweeper's deadline (CPU starvation, a
    long pause): the row was swept to ``unknown`` and another worker re-claimed it (its own token).  When the
    first worker wakes up, its claim no longer holds: it must not send."""
    stack, container = sending_stack
    stale = time.monotonic() - 2 * container.settings.outbox_sweep_after_s  # claimed long before the stall ended
    row = _outbox_row(container, clinic, status="sending", claimed_ago_s=1, claim_token=2222)  # another's claim
    mine = ClaimedSend(
        int(row["id"]),
        "sms",
        "reply",
        row["to_address"],
        row["from_address"],
        row["body"],
        {},
        None,
        int(row["client_id"]),
        "",
        claim_token=1111,
        claim_started=stale,
    )

    outcome = send_claimed(_ports(container), clinic["id"], mine)

    assert outcome.status == "skipped"
    assert _sent_to(stack, row["to_address"]) == []
    assert _outbox(container, clinic, int(row["id"]))["status"] == "sending"  # still the other worker's claim
    with container.database.tenant_scope(clinic["id"]) as session:  # the other worker is imaginary: no leftovers
        session.execute(text("UPDATE outbox SET status = 'cancelled' WHERE id = :id"), {"id": row["id"]})


def _sending_campaign(container: Container, clinic: dict[str, Any]) -> int:
    with container.database.tenant_scope(clinic["id"]) as session:
        campaign_id = create_campaign(
            session, clinic["id"], name="Slow provider", template="Hi {first_name}!", segment=SegmentFilter()
        )
        session.execute(text("UPDATE campaigns SET status = 'sending' WHERE id = :id"), {"id": campaign_id})
    return campaign_id


def test_a_campaign_chunk_slower_than_the_sweep_deadline_sends_each_text_once(sending_stack, clinic):
    """Issue 13 item 6: a chunk of claimed campaign rows outlives the sweeper's deadline (one provider call
    hangs longer than the deadline).  The sweeper marks the rest of the chunk ``unknown``, another worker
    reconciles (Twilio has nothing yet) and sends them; the first worker, back from its slow call, must find
    its claim on them gone and not send them again."""
    stack, _ = sending_stack
    # A 3 s sweep deadline; a provider timeout longer than it, so the chunk re-verifies before every call.
    settings = stack.settings.model_copy(update={"outbox_sweep_after_s": 3, "sms_send_timeout_s": 10})
    first, other = build_container(settings, clock=stack.clock), build_container(settings, clock=stack.clock)
    try:
        campaign_id = _sending_campaign(first, clinic)
        rows = [_outbox_row(first, clinic, status="queued", kind="campaign", campaign_id=campaign_id) for _ in range(6)]
        ids = {int(r["id"]) for r in rows}
        stack.twilio.slow_next(settings.outbox_sweep_after_s + 2)  # the chunk's first call: Twilio browns out
        stack.twilio.latency_s = 0.1
        outcome: list[BatchSend] = []
        sender = threading.Thread(
            target=lambda: outcome.append(send_batch(_ports(first), clinic["id"], campaign_id, sorted(ids)))
        )
        sender.start()
        other_ports = _ports(other)

        def other_worker(kind: str, clinic_id: int, outbox_id: int) -> None:
            if outbox_id in ids:  # the sweeper's re-enqueue, handled by another worker right away
                with contextlib.suppress(RetryLater):
                    send_one(other_ports, clinic_id, outbox_id)

        deadline = time.monotonic() + 60
        while sender.is_alive() and time.monotonic() < deadline:
            sweep(
                other.database, other_worker, SweepDeadlines.of(other.settings)
            )  # the scheduler's sweep, much more often than every 10 s
            sender.join(0.2)
        assert not sender.is_alive(), "the campaign sender did not finish"
        sweep(other.database, other_worker, SweepDeadlines.of(other.settings))
        texts = [m for r in rows for m in _sent_to(stack, r["to_address"])]
        per_recipient = {r["to_address"]: len(_sent_to(stack, r["to_address"])) for r in rows}
        assert per_recipient == {r["to_address"]: 1 for r in rows}, f"texts per recipient: {per_recipient}"
        assert len(texts) == 6
        [result] = outcome
        assert result.sent >= 1 and result.lost >= 1, result  # the other worker took some over: they were skipped
        with first.database.tenant_scope(clinic["id"]) as session:
            statuses = session.execute(
                text("SELECT status, count(*) FROM outbox WHERE id = ANY(:ids) GROUP BY status"), {"ids": sorted(ids)}
            ).all()
        assert dict(statuses) == {"sent": 6}
    finally:
        first.close()
        other.close()
