"""Quiet hours and consent are decided again at the moment of sending, for campaigns and automations.

A text planned at 20:59 that reaches its sender after 21:00 (a backlog, a retry after a provider error) waits
for the recipient's 08:00 — deferred, never dropped, then sent once; one whose recipient withdrew consent in
between is not sent.  Time moves by setting the worker's clock (the Clock port), never by sleeping.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from sqlalchemy import text

from db.consent import record_consent
from domain.audience import SegmentFilter
from domain.compliance import ConsentKind, ConsentRecord, ConsentScope, ConsentSource
from tests.integration.test_automations import LA as AUTO_LA
from tests.integration.test_automations import Clinic
from tests.integration.test_campaigns import LA, _new_campaign, add_client, la, make_clinic
from tests.support.infra import wait_for
from tests.support.stack import running_stack
from worker.campaigns.lifecycle import schedule_campaign
from worker.campaigns.runner import run_campaign


@pytest.fixture(scope="module")
def send_stack(infra, tmp_path_factory):
    with running_stack(infra, tmp_path_factory.mktemp("send-time-stack")) as (stack, container):
        yield stack
        stack.clock.set(None)


def _rows(database, clinic_id: int, ids: list[int]) -> dict[int, dict]:
    with database.tenant_scope(clinic_id) as session:
        found = session.execute(
            text("SELECT id, status, not_before, error_message, to_address FROM outbox WHERE id = ANY(:ids)"),
            {"ids": ids},
        ).mappings()
        return {int(r["id"]): dict(r) for r in found}


def _texts_to(stack, phones) -> list:
    return [m for m in list(stack.twilio.messages) if m.to in set(phones)]


def test_campaign_texts_that_reach_the_sender_after_21_wait_for_8_and_consent_is_read_again(
    send_stack, database, owner_engine
):
    from worker.sending import enqueue, enqueue_bulk_sends

    stack = send_stack
    clinic = make_clinic(owner_engine)
    cid = clinic["id"]
    clients = [add_client(owner_engine, cid, f"Eve{n} Late") for n in range(3)]
    phones = [phone for _, phone in clients]
    day = datetime.now(LA).date() + timedelta(days=1)
    planned = la(day, time(20, 59))
    campaign_id = _new_campaign(database, cid, SegmentFilter())
    with database.tenant_scope(cid) as session:
        schedule_campaign(session, cid, campaign_id, planned, planned)
    ids: list[int] = []
    run_campaign(database, cid, campaign_id, ids.extend, clock=lambda: planned, slice_s=5)
    assert len(ids) == 3, "decided at 20:59: inside the window, queued for the sender"

    # The sender gets to the batch at 21:01.
    stack.clock.set(la(day, time(21, 1)))
    enqueue("send_campaign_batch", cid, campaign_id, ids, None)
    morning = la(day + timedelta(days=1), time(8))
    wait_for(
        lambda: all(r["not_before"] == morning for r in _rows(database, cid, ids).values()), 30, what="the deferral"
    )
    assert {r["status"] for r in _rows(database, cid, ids).values()} == {"queued"}, "deferred, never dropped"
    assert _texts_to(stack, phones) == []

    # Overnight one recipient withdraws marketing consent (at the front desk); the others stay.
    with database.tenant_scope(cid) as session:
        record_consent(
            session,
            cid,
            clients[0][0],
            phones[0],
            ConsentRecord(ConsentKind.OPT_OUT, ConsentScope.MARKETING, ConsentSource.STAFF, "No more offers"),
        )
    # 08:00: the single-row sender (as the sweeper hands due rows to it) decides again and sends.
    stack.clock.set(morning)
    enqueue_bulk_sends(cid, ids)
    wait_for(lambda: len(_texts_to(stack, phones)) >= 2, 30, what="the morning sends")
    stack.wait_idle(cid)
    rows = _rows(database, cid, ids)
    assert sorted(m.to for m in _texts_to(stack, phones)) == sorted(phones[1:]), "each once, consent read again"
    withdrawn = next(r for r in rows.values() if r["to_address"] == phones[0])
    assert (withdrawn["status"], withdrawn["error_message"]) == ("suppressed", "no marketing consent")


def test_a_campaign_text_retried_after_a_provider_error_does_not_go_out_at_night(send_stack, database, owner_engine):
    from worker.sending import enqueue

    stack = send_stack
    clinic = make_clinic(owner_engine)
    cid = clinic["id"]
    _, phone = add_client(owner_engine, cid, "Rhea Try")
    day = datetime.now(LA).date() + timedelta(days=1)
    planned = la(day, time(20, 59, 30))
    campaign_id = _new_campaign(database, cid, SegmentFilter())
    with database.tenant_scope(cid) as session:
        schedule_campaign(session, cid, campaign_id, planned, planned)
    ids: list[int] = []
    run_campaign(database, cid, campaign_id, ids.extend, clock=lambda: planned, slice_s=5)
    (outbox_id,) = ids

    # 20:59:30: the provider errors (the outcome is unknown); the retry comes after 21:00.
    stack.clock.set(planned)
    stack.twilio.fail_next(50, 500, code=20500, message="Internal Server Error")
    enqueue("send_outbox_bulk", cid, outbox_id)
    wait_for(lambda: _rows(database, cid, ids)[outbox_id]["status"] == "unknown", 30, what="the failed attempt")
    stack.clock.set(la(day, time(21, 0, 30)))
    morning = la(day + timedelta(days=1), time(8))
    wait_for(lambda: _rows(database, cid, ids)[outbox_id]["not_before"] == morning, 60, what="the retry's deferral")
    stack.twilio.clear_script()
    assert _rows(database, cid, ids)[outbox_id]["status"] == "unknown", "still reconciled before any send"
    assert _texts_to(stack, [phone]) == []

    stack.clock.set(morning)
    enqueue("send_outbox_bulk", cid, outbox_id)
    wait_for(lambda: _texts_to(stack, [phone]), 30, what="the morning send")
    stack.wait_idle(cid)
    assert len(_texts_to(stack, [phone])) == 1
    assert _rows(database, cid, ids)[outbox_id]["status"] == "sent"


def test_automation_texts_past_their_window_wait_for_the_morning(send_stack, database, owner_engine):
    from worker import automations
    from worker.sending import enqueue_bulk_sends

    stack = send_stack
    clinic = Clinic(owner_engine)
    day = datetime.now(AUTO_LA).date() + timedelta(days=2)
    at = la(day, time(20, 50))
    reminded, reminded_phone = clinic.client("Rita Late")
    clinic.appointment(reminded, at + timedelta(hours=24), "booked", created_at=at - timedelta(days=3))
    reviewer, reviewer_phone = clinic.client("Rae Late")
    visit = clinic.appointment(
        reviewer, at - timedelta(hours=48, minutes=30), "completed", created_at=at - timedelta(days=9)
    )
    with owner_engine.begin() as conn:  # her aftercare check-in went out yesterday: only the review request is due
        conn.execute(
            text("""INSERT INTO outbox (clinic_id, channel, kind, to_address, body, status, dedupe_key)
                    VALUES (:c, 'sms', 'automation', 'x', 'aftercare', 'sent', :key)"""),
            {"c": clinic.id, "key": f"auto:aftercare:appt:{visit}"},
        )
    created = automations.scan_clinic(database, clinic.id, at)
    rows = _rows(database, clinic.id, created.outbox_ids)
    assert sorted(r["to_address"] for r in rows.values()) == sorted([reminded_phone, reviewer_phone])

    # Reached by the sender at 21:10: the reminder (the clinic's quiet hours end at 21:00) and the review
    # request (marketing, 08:00-21:00 recipient-local) both wait for 08:00.
    stack.clock.set(la(day, time(21, 10)))
    enqueue_bulk_sends(clinic.id, created.outbox_ids)
    morning = la(day + timedelta(days=1), time(8))
    wait_for(
        lambda: all(r["not_before"] == morning for r in _rows(database, clinic.id, created.outbox_ids).values()),
        30,
        what="both deferred",
    )
    assert _texts_to(stack, [reminded_phone, reviewer_phone]) == []

    stack.clock.set(morning)
    enqueue_bulk_sends(clinic.id, created.outbox_ids)
    wait_for(lambda: len(_texts_to(stack, [reminded_phone, reviewer_phone])) >= 2, 30, what="the morning sends")
    stack.wait_idle(clinic.id)
    assert sorted(m.to for m in _texts_to(stack, [reminded_phone, reviewer_phone])) == sorted(
        [reminded_phone, reviewer_phone]
    )
