"""Exactly once at the send step, against the real database and the Twilio fake through the real SDK: a send
whose outcome was never recorded is reconciled with Twilio before any re-send (also while Twilio still has it
queued), and a sender whose claim on a row was lost (swept to ``unknown`` and re-claimed by another worker)
never calls the provider for it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.stack import GLOW_CLINIC_ID, GLOW_NUMBER, Stack, running_stack
from worker.container import Container
from worker.outbox import send_outbox_message, sms_message_for
from worker.sms_rate import SmsRateLimiter


@pytest.fixture(scope="module")
def sending_stack(infra, tmp_path_factory) -> Iterator[tuple[Stack, Container]]:
    # No Dramatiq worker: these tests drive the send functions themselves, one step at a time.
    with running_stack(infra, tmp_path_factory.mktemp("outbox-stack"), inprocess_worker=False) as (stack, _):
        from worker.container import build_container

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


def _outbox_row(container: Container, *, status: str, kind: str = "reply", claimed_ago_s: float = 0) -> dict[str, Any]:
    """A client and one outbox row for them (status as given; a claimed row was claimed ``claimed_ago_s`` ago)."""
    phone = _phone()
    with container.database.tenant_scope(GLOW_CLINIC_ID) as session:
        client_id = session.execute(
            text("INSERT INTO clients (clinic_id, phone_e164, consent_state) VALUES (:c, :p, 'opted_in') RETURNING id"),
            {"c": GLOW_CLINIC_ID, "p": phone},
        ).scalar_one()
        row = (
            session.execute(
                text(
                    """INSERT INTO outbox (clinic_id, client_id, channel, kind, to_address, from_address, body, status,
                                           attempts, claimed_at, created_at)
                       VALUES (:c, :client, 'sms', :kind, :to, :from, :body, CAST(:status AS text),
                               CASE WHEN CAST(:status AS text) = 'queued' THEN 0 ELSE 1 END,
                               CASE WHEN CAST(:status AS text) = 'queued' THEN NULL
                                    ELSE now() - make_interval(secs => :ago) END,
                               now() - make_interval(secs => :ago))
                       RETURNING id, to_address, from_address, body, client_id"""
                ),
                {
                    "c": GLOW_CLINIC_ID,
                    "client": client_id,
                    "kind": kind,
                    "to": phone,
                    "from": GLOW_NUMBER,
                    "body": f"See you Friday at 10:00 [{uuid.uuid4().hex[:8]}]",
                    "status": status,
                    "ago": claimed_ago_s,
                },
            )
            .mappings()
            .one()
        )
    return dict(row)


def _outbox(container: Container, outbox_id: int) -> dict[str, Any]:
    with container.database.tenant_scope(GLOW_CLINIC_ID) as session:
        return dict(
            session.execute(
                text("SELECT status, provider_message_id, attempts FROM outbox WHERE id = :id"), {"id": outbox_id}
            )
            .mappings()
            .one()
        )


def _sent_to(stack: Stack, phone: str) -> list[Any]:
    return [m for m in list(stack.twilio.messages) if m.to == phone]


def test_a_send_still_queued_at_twilio_is_reconciled_not_sent_again(sending_stack):
    """The first attempt reached Twilio, which still has it queued (no date_sent: a brown-out), and the worker
    died before recording it; the sweeper marked the row ``unknown``.  The next attempt finds it at Twilio."""
    stack, container = sending_stack
    stack.twilio.hold_in_queue = True
    row = _outbox_row(container, status="unknown", claimed_ago_s=120)
    first = container.sms.send(sms_message_for(container, GLOW_CLINIC_ID, row))  # the attempt that was never recorded

    outcome = send_outbox_message(container, SmsRateLimiter(container.redis, 0), GLOW_CLINIC_ID, int(row["id"]))

    assert outcome.status == "sent"
    assert len(_sent_to(stack, row["to_address"])) == 1, "re-sent although Twilio had it queued"
    assert _outbox(container, int(row["id"]))["provider_message_id"] == first.provider_message_id
    stack.twilio.assert_clean()
