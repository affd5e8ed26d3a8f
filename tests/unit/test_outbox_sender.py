"""The outbox's state machine on in-memory ports (no database, Redis or provider): each row is sent at most once,
decided again at claim time, reconciled before any re-send, never sent under a lapsed claim; a campaign's rows go
in chunks through the same steps, one claim and one record per chunk."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.ports import SmsSendError
from tests.support.outbox_fakes import fakes, sms_row
from worker.outbox.rows import ClaimedSend, SendRow
from worker.outbox.sender import InlineSends, RetryLater, send_campaign_rows, send_claimed, send_in_order, send_one

DAY = datetime(2026, 3, 2, 18, tzinfo=UTC)  # 10:00 in the clinic's Los Angeles
NIGHT = datetime(2026, 3, 3, 6, tzinfo=UTC)  # 22:00 there
NEXT_MORNING = datetime(2026, 3, 3, 16, tzinfo=UTC)  # 08:00 there


def test_a_queued_reply_is_sent_once_and_a_second_delivery_of_the_job_sends_nothing():
    f = fakes(DAY)
    f.outbox.add(sms_row(1))

    assert send_one(f.ports, 1, 1).status == "sent"
    assert send_one(f.ports, 1, 1).status == "skipped"

    assert [m.outbox_id for m in f.sms.sent] == [1]
    assert f.outbox.status(1) == "sent" and f.outbox.rows[1].attempts == 1
    assert f.sms.sent[0].from_ == "+14155550123"  # the clinic's number when the row names none
    assert f.sms.sent[0].status_callback_url == "https://spa.example/webhooks/twilio/status?outbox_id=1&clinic_id=1"


def test_a_send_whose_outcome_is_unknown_is_reconciled_before_any_resend():
    f = fakes(DAY)
    f.outbox.add(sms_row(1))
    f.sms.errors.append(SmsSendError("timeout", retryable=True))

    with pytest.raises(RetryLater):
        send_one(f.ports, 1, 1)
    assert f.outbox.status(1) == "unknown"

    f.sms.found[1] = "SM-first"  # the provider had accepted the first attempt after all
    assert send_one(f.ports, 1, 1).status == "sent"
    assert f.sms.sent == [] and f.outbox.rows[1].provider_id == "SM-first"


def test_an_unknown_send_the_provider_never_got_is_sent_again_once():
    f = fakes(DAY)
    f.outbox.add(sms_row(1), status="unknown", attempts=1)

    assert send_one(f.ports, 1, 1).status == "sent"
    assert len(f.sms.sent) == 1 and f.outbox.status(1) == "sent" and f.outbox.rows[1].attempts == 2


def test_a_failed_reconciliation_leaves_the_row_unknown_and_sends_nothing():
    f = fakes(DAY)
    f.outbox.add(sms_row(1), status="unknown", attempts=1)
    f.sms.find_error = SmsSendError("provider down", retryable=True)

    with pytest.raises(RetryLater):
        send_one(f.ports, 1, 1)
    assert f.sms.sent == [] and f.outbox.status(1) == "unknown"


def test_a_permanent_provider_error_fails_the_row_with_the_carriers_verdict():
    f = fakes(DAY)
    f.outbox.add(sms_row(1))
    f.sms.errors.append(SmsSendError("unsubscribed", code="21610", retryable=False))

    assert send_one(f.ports, 1, 1).status == "failed"
    assert f.outbox.status(1) == "failed"
    assert [(x.outbox_id, x.code) for x in f.outbox.failures] == [(1, "21610")]


def test_an_opted_out_recipient_is_suppressed_with_the_reason_and_never_reaches_the_provider():
    f = fakes(DAY)
    f.outbox.add(sms_row(1, consent="opted_out"))

    assert send_one(f.ports, 1, 1).status == "suppressed"
    assert f.sms.sent == [] and f.outbox.rows[1].error == "recipient opted out"


def test_a_marketing_text_that_reaches_its_sender_at_night_waits_for_the_morning():
    f = fakes(NIGHT)
    f.outbox.add(sms_row(1, kind="campaign"))

    outcome = send_one(f.ports, 1, 1)

    assert outcome.status == "deferred" and outcome.delay_ms == 10 * 3600 * 1000
    assert f.sms.sent == [] and f.outbox.status(1) == "queued"
    assert f.outbox.rows[1].not_before == NEXT_MORNING


def test_a_row_tried_too_often_is_given_up():
    f = fakes(DAY)
    f.outbox.add(sms_row(1), status="unknown", attempts=8)

    assert send_one(f.ports, 1, 1).status == "failed"
    assert f.sms.sent == [] and f.outbox.rows[1].error == "gave up after retries"


def test_a_reply_waits_for_an_earlier_unsent_reply_of_its_conversation():
    f = fakes(DAY)
    f.outbox.add(sms_row(1, conversation_id=7), status="sending", attempts=1)
    f.outbox.add(sms_row(2, conversation_id=7))

    outcome = send_one(f.ports, 1, 2)

    assert (outcome.status, outcome.delay_ms) == ("deferred", 100)
    assert f.sms.sent == [] and f.outbox.status(2) == "queued" and f.outbox.rows[2].attempts == 0


def test_an_automation_about_a_cancelled_appointment_is_suppressed():
    f = fakes(DAY)
    f.outbox.add(sms_row(1, kind="automation", meta={"automation": "reminder_24h", "appointment_id": 42}))
    f.outbox.appointment_status[42] = "cancelled"

    assert send_one(f.ports, 1, 1).status == "suppressed"
    assert f.outbox.rows[1].error == "appointment no longer live" and f.sms.sent == []


def test_a_rebook_nudge_to_a_client_who_booked_since_is_suppressed_and_one_to_a_client_who_did_not_goes_out():
    f = fakes(DAY)
    nudge = {"automation": "rebook_nudge", "appointment_id": 42, "marketing": True}
    f.outbox.add(replace(sms_row(1, kind="automation", meta=nudge), client_has_upcoming_visit=True))
    f.outbox.add(sms_row(2, kind="automation", meta={**nudge, "appointment_id": 43}))
    f.outbox.appointment_status.update({42: "completed", 43: "completed"})

    assert send_one(f.ports, 1, 1).status == "suppressed"
    assert send_one(f.ports, 1, 2).status == "sent"
    assert f.outbox.rows[1].error == "client booked a visit since"
    assert [m.outbox_id for m in f.sms.sent] == [2]


def test_out_of_rate_the_claim_is_given_back_with_the_attempt_undone():
    f = fakes(DAY)
    f.outbox.add(sms_row(1))
    f.limiter.waits.append(1500)

    outcome = send_one(f.ports, 1, 1)

    assert (outcome.status, outcome.delay_ms) == ("deferred", 1500)
    assert f.outbox.status(1) == "queued" and f.outbox.rows[1].attempts == 0 and f.sms.sent == []


def _claimed(row: SendRow, token: int, claim_started: float) -> ClaimedSend:
    return ClaimedSend(
        row.id, "sms", "reply", row.to_address, "", row.body, {}, None, row.client_id, "", token, claim_started
    )


def test_a_turn_claimed_reply_goes_out_without_another_claim():
    f = fakes(DAY)
    row = f.outbox.add(sms_row(1), status="sending", attempts=1)
    f.outbox.rows[1].claim_token = 99

    assert send_claimed(f.ports, 1, _claimed(row, 99, time.monotonic())).status == "sent"
    assert f.outbox.claims == 0 and f.outbox.records == 1 and f.outbox.status(1) == "sent"
    assert f.outbox.deferred_records == 0  # written at once unless the caller says nothing of its own follows


def test_a_send_nothing_follows_lets_its_mark_wait_for_the_batch_and_a_failure_never_waits():
    f = fakes(DAY)
    row = f.outbox.add(sms_row(1), status="sending", attempts=1)
    f.outbox.rows[1].claim_token = 99
    f.outbox.add(sms_row(2))

    assert send_claimed(f.ports, 1, _claimed(row, 99, time.monotonic()), record_later=True).status == "sent"
    assert f.outbox.deferred_records == 1
    f.sms.errors.append(SmsSendError("unreachable", code="30003", retryable=False))
    assert send_one(f.ports, 1, 2, record_later=True).status == "failed"
    assert f.outbox.records == 2 and f.outbox.deferred_records == 1


def test_a_commits_rows_go_out_in_order_with_only_the_last_mark_waiting_unless_the_next_turn_follows():
    f = fakes(DAY)
    for first, second in ((1, 2), (3, 4)):
        row = f.outbox.add(sms_row(first), status="sending", attempts=1)
        f.outbox.rows[first].claim_token = 99
        f.outbox.add(sms_row(second))
        more_follow = first == 3  # the conversation's next turn runs right after the second commit
        sends = send_in_order(f.ports, 1, [_claimed(row, 99, time.monotonic())], [second], more_follow=more_follow)
        assert sends == InlineSends()
    assert [m.outbox_id for m in f.sms.sent] == [1, 2, 3, 4]
    # Rows 1 and 3 were marked at once (the next row is claimed only when they are sent), row 2's mark waited for
    # the batch, row 4's did not: the next turn's reply is claimed at its commit only if nothing earlier is unsent.
    assert f.outbox.records == 4 and f.outbox.deferred_records == 1


def test_an_inline_send_the_provider_may_have_taken_goes_to_the_send_actor_and_the_next_still_goes_out():
    f = fakes(DAY)
    f.outbox.add(sms_row(1))
    f.outbox.add(sms_row(2))
    f.sms.errors.append(SmsSendError("timeout", retryable=True))

    sends = send_in_order(f.ports, 1, [], [1, 2])

    assert sends.retry == [1] and f.outbox.status(1) == "unknown"  # reconciled by the actor before any re-send
    assert f.outbox.status(2) == "sent"


def test_a_sender_whose_claim_lapsed_does_not_call_the_provider():
    f = fakes(DAY, claim_fresh_s=5)
    row = f.outbox.add(sms_row(1), status="sending", attempts=1)
    f.outbox.rows[1].claim_token = 99
    f.outbox.lose_claims_on_renew.add(1)  # swept to 'unknown' while this sender stalled

    outcome = send_claimed(f.ports, 1, _claimed(row, 99, claim_started=0.0))

    assert outcome.status == "skipped" and f.sms.sent == []


def test_a_chat_reply_is_published_to_the_widget_and_marked_sent():
    f = fakes(DAY)
    f.outbox.add(SendRow(1, "chat", "reply", "queued", "chat:7", "", "Hello", {"message_id": 5}, 7, 1))

    assert send_one(f.ports, 1, 1).status == "sent"
    assert f.chat.published == [(7, {"id": "m5", "role": "assistant", "text": "Hello"})]
    assert f.sms.sent == []


# ------------------------------------------------------------------ campaign rows, in chunks
def _campaign(f, count: int, *, campaign_id: int = 3, **row) -> list[int]:  # type: ignore[no-untyped-def]
    f.outbox.campaign_status[campaign_id] = "sending"
    for outbox_id in range(1, count + 1):
        f.outbox.add(sms_row(outbox_id, kind="campaign", campaign_id=campaign_id, **row))
    return list(range(1, count + 1))


def test_a_campaign_batch_claims_and_records_once_per_chunk():
    f = fakes(DAY)
    ids = _campaign(f, 120)

    result = send_campaign_rows(f.ports, 1, 3, ids, chunk=50)

    assert result.sent == 120 and len(f.sms.sent) == 120
    assert f.outbox.claims == 3 and f.outbox.records == 3  # 50 + 50 + 20: one claim and one round trip of marks each
    assert {f.outbox.status(i) for i in ids} == {"sent"}


def test_a_paused_campaign_stops_the_batch_before_anything_is_claimed():
    f = fakes(DAY)
    ids = _campaign(f, 5)
    f.outbox.campaign_status[3] = "paused"

    result = send_campaign_rows(f.ports, 1, 3, ids)

    assert result.stopped == "paused" and result.sent == 0 and f.sms.sent == []
    assert {f.outbox.status(i) for i in ids} == {"queued"}


def test_campaign_rows_are_decided_again_at_claim_time():
    f = fakes(DAY)
    ids = _campaign(f, 3)
    f.outbox.add(sms_row(4, kind="campaign", campaign_id=3, marketing="revoked"))

    result = send_campaign_rows(f.ports, 1, 3, [*ids, 4])

    assert (result.sent, result.suppressed) == (3, 1)
    assert f.outbox.rows[4].error == "no marketing consent"


def test_when_the_window_closes_during_a_chunk_the_rest_waits_for_the_morning():
    f = fakes(datetime(2026, 3, 3, 4, 59, 59, tzinfo=UTC))  # 20:59:59 in Los Angeles
    ids = _campaign(f, 4)

    def slow_provider(message):  # type: ignore[no-untyped-def]
        f.clock.at += timedelta(seconds=1)  # the second call starts at 21:00:00

    f.sms.on_send = slow_provider
    result = send_campaign_rows(f.ports, 1, 3, ids)

    assert (result.sent, result.deferred) == (1, 3)
    assert [f.outbox.status(i) for i in ids] == ["sent", "queued", "queued", "queued"]
    assert {f.outbox.rows[i].not_before for i in ids[1:]} == {NEXT_MORNING}
    assert {f.outbox.rows[i].attempts for i in ids[1:]} == {0}


def test_out_of_rate_mid_batch_the_rest_goes_to_the_delayed_single_row_path():
    f = fakes(DAY)
    ids = _campaign(f, 6)
    f.limiter.waits += [0, 0, 700]

    result = send_campaign_rows(f.ports, 1, 3, ids, chunk=4)

    assert result.sent == 2
    assert result.retry_later == [(3, 700), (4, 700), (5, 700), (6, 700)]
    assert [f.outbox.status(i) for i in ids] == ["sent", "sent", "queued", "queued", "queued", "queued"]


def test_a_pacer_that_gives_up_hands_the_rest_over_the_same_way():
    f = fakes(DAY)
    ids = _campaign(f, 3)
    answers = iter([0, 1000])

    result = send_campaign_rows(f.ports, 1, 3, ids, pace=lambda: next(answers))

    assert result.sent == 1 and result.retry_later == [(2, 1000), (3, 1000)]


def test_rows_whose_claim_lapsed_during_a_slow_chunk_are_skipped_not_sent_twice():
    f = fakes(DAY, claim_fresh_s=-1)  # every call re-verifies the claim first
    ids = _campaign(f, 4)
    f.outbox.lose_claims_on_renew.update({3, 4})  # swept and taken over by another worker meanwhile

    result = send_campaign_rows(f.ports, 1, 3, ids)

    assert (result.sent, result.lost) == (2, 2)
    assert [m.outbox_id for m in f.sms.sent] == [1, 2]


def test_a_retryable_error_in_a_batch_leaves_that_row_to_reconciliation():
    f = fakes(DAY)
    ids = _campaign(f, 3)
    f.sms.errors.append(SmsSendError("timeout", retryable=True))

    result = send_campaign_rows(f.ports, 1, 3, ids)

    assert (result.sent, result.unknown) == (2, 1)
    assert [f.outbox.status(i) for i in ids] == ["unknown", "sent", "sent"]
