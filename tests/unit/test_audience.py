"""Segment filters and the per-recipient compliance decision (consent, quiet hours, frequency cap, footer)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.audience import (
    Decision,
    RecipientFacts,
    SegmentError,
    SegmentFilter,
    SendPolicy,
    TextKind,
    decide,
    text_kind,
)

LA = "America/Los_Angeles"
NY = "America/New_York"
POLICIES = {
    "quiet_hours": {"start": "09:00", "end": "20:00"},
    "marketing_cap_per_week": 2,
    "opt_out_footer": "Reply STOP to opt out.",
}
MARKETING = SendPolicy.marketing_for(LA, POLICIES)
TRANSACTIONAL = SendPolicy.transactional_for(LA, POLICIES)


def local(day: date, at: time, tz: str = LA) -> datetime:
    return datetime.combine(day, at, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def facts(**overrides) -> RecipientFacts:
    values = {"client_id": 1, "phone": "+14155550100", "consent_state": "opted_in", "marketing_consent": "granted"}
    values.update(overrides)
    return RecipientFacts(**values)


NOON = local(date(2026, 3, 3), time(12))


# ------------------------------------------------------------------ segment filter
def test_filter_round_trips_through_json_and_normalises_lists():
    segment = SegmentFilter.from_dict(
        {
            "last_visit_before": "2026-01-01",
            "services_had": "Neurotoxin, lip-filler",
            "tags": ["VIP", "vip"],
            "has_future_appointment": "no",
            "min_spend_cents": "50000",
        }
    )
    assert segment.services_had == ("lip-filler", "neurotoxin")
    assert segment.tags == ("vip",)
    assert segment.has_future_appointment is False
    assert segment.to_dict() == {
        "last_visit_before": "2026-01-01",
        "services_had": ["lip-filler", "neurotoxin"],
        "tags": ["vip"],
        "has_future_appointment": False,
        "min_spend_cents": 50000,
    }
    assert SegmentFilter.from_dict(segment.to_dict()) == segment
    assert "without a future appointment" in segment.describe()


def test_empty_filter_is_everyone():
    assert SegmentFilter.from_dict(None) == SegmentFilter()
    assert SegmentFilter().to_dict() == {}
    assert SegmentFilter().describe() == "all clients"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"last_visit_before": "yesterday"}, "must be a date"),
        ({"colour": "red"}, "unknown segment filter"),
        ({"min_spend_cents": -1}, "must not be negative"),
        ({"min_spend_cents": "lots"}, "whole number"),
        ({"has_future_appointment": "maybe"}, "true or false"),
        ({"last_visit_after": "2026-02-01", "last_visit_before": "2026-01-01"}, "must be before"),
    ],
)
def test_invalid_filters_are_rejected_with_a_reason(data, message):
    with pytest.raises(SegmentError, match=message):
        SegmentFilter.from_dict(data)


# ------------------------------------------------------------------ decisions
@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"phone": None}, "no_phone"),
        ({"sms_status": "invalid"}, "invalid_number"),
        ({"sms_status": "not_mobile"}, "invalid_number"),
        ({"consent_state": "opted_out"}, "opted_out"),
        ({"marketing_consent": "none"}, "no_consent"),
        ({"marketing_consent": "revoked"}, "no_consent"),
        ({"marketing_last_7d": 2}, "frequency_cap"),
    ],
)
def test_marketing_exclusions(overrides, reason):
    decision = decide(facts(**overrides), MARKETING, NOON)
    assert decision == Decision(False, reason)


def test_marketing_inside_the_window_goes_now_with_the_footer_the_first_time():
    first = decide(facts(), MARKETING, NOON)
    assert (first.send, first.send_at, first.deferred, first.footer) == (True, NOON, False, True)
    later = decide(facts(marketing_ever=3, marketing_last_7d=1), MARKETING, NOON)
    assert later.send and not later.footer


def test_2130_local_is_deferred_to_0800_next_morning_local():
    evening = local(date(2026, 3, 3), time(21, 30))
    decision = decide(facts(), MARKETING, evening)
    assert decision.send and decision.deferred
    assert decision.send_at == local(date(2026, 3, 4), time(8))


def test_the_clients_own_time_zone_wins_over_the_clinics():
    # 18:30 in Los Angeles is 21:30 in New York: the New Yorker waits for 08:00 New York time.
    moment = local(date(2026, 3, 3), time(18, 30))
    assert not decide(facts(), MARKETING, moment).deferred
    ny = decide(facts(timezone=NY), MARKETING, moment)
    assert ny.deferred and ny.send_at == local(date(2026, 3, 4), time(8), NY)


def test_an_unknown_client_zone_falls_back_to_the_clinic_zone():
    evening = local(date(2026, 3, 3), time(21, 30))
    decision = decide(facts(timezone="Mars/Olympus_Mons"), MARKETING, evening)
    assert decision.send_at == local(date(2026, 3, 4), time(8))


def test_early_morning_waits_for_eight_the_same_day():
    dawn = local(date(2026, 3, 3), time(6, 15))
    assert decide(facts(), MARKETING, dawn).send_at == local(date(2026, 3, 3), time(8))


def test_deferral_across_the_dst_change_is_still_eight_local():
    saturday_night = local(date(2026, 3, 7), time(22))  # US DST starts Sunday 2026-03-08
    assert decide(facts(), MARKETING, saturday_night).send_at == local(date(2026, 3, 8), time(8))


def test_transactional_follows_the_clinics_quiet_hours_and_skips_opt_in_and_cap():
    assert TRANSACTIONAL.window_start == time(9) and TRANSACTIONAL.window_end == time(20)
    unknown = decide(facts(consent_state="unknown", marketing_last_7d=9), TRANSACTIONAL, NOON)
    assert unknown.send and not unknown.footer and not unknown.deferred
    assert decide(facts(consent_state="opted_out"), TRANSACTIONAL, NOON).reason == "opted_out"
    half_eight = local(date(2026, 3, 3), time(8, 30))
    assert decide(facts(), TRANSACTIONAL, half_eight).send_at == local(date(2026, 3, 3), time(9))
    assert not decide(facts(), MARKETING, half_eight).deferred


def test_policy_defaults_when_the_clinic_sets_nothing():
    marketing = SendPolicy.marketing_for(LA, {})
    assert (marketing.cap_per_week, marketing.footer) == (2, "Reply STOP to opt out.")
    broken = SendPolicy.transactional_for(LA, {"quiet_hours": {"start": "22:00", "end": "07:00"}})
    assert (broken.window_start, broken.window_end) == (time(8), time(21))


def test_naive_now_is_refused():
    with pytest.raises(ValueError):
        decide(facts(), MARKETING, NOON.replace(tzinfo=None) + timedelta(0))


# ------------------------------------------------------------------ one decision for every kind of text
def test_transactional_consent_alone_never_makes_anyone_campaign_eligible():
    # What START after STOP leaves: appointment texts again, marketing only if it had been granted explicitly.
    restarted = facts(consent_state="opted_in", marketing_consent="none")
    assert decide(restarted, MARKETING, NOON) == Decision(False, "no_consent")
    assert decide(restarted, TRANSACTIONAL, NOON).send_now


def test_an_opt_out_suspends_a_marketing_grant():
    assert decide(facts(consent_state="opted_out"), MARKETING, NOON).reason == "opted_out"


def test_safety_and_keyword_confirmations_go_out_whatever_the_consent_number_or_hour():
    night = local(date(2026, 3, 3), time(2, 30))
    blocked = facts(consent_state="opted_out", marketing_consent="none", sms_status="invalid")
    for kind in (TextKind.SAFETY, TextKind.COMPLIANCE):
        decision = decide(blocked, SendPolicy.for_kind(kind, LA, POLICIES), night)
        assert decision.send_now and decision.send_at == night, kind
    for kind in (TextKind.CONVERSATION, TextKind.TRANSACTIONAL, TextKind.MARKETING):
        assert not decide(blocked, SendPolicy.for_kind(kind, LA, POLICIES), night).send, kind


def test_conversation_replies_go_any_time_but_honour_the_opt_out():
    night = local(date(2026, 3, 3), time(2, 30))
    conversation = SendPolicy.for_kind(TextKind.CONVERSATION, LA, POLICIES)
    assert decide(facts(consent_state="unknown", marketing_consent="none"), conversation, night).send_now
    assert decide(facts(consent_state="opted_out"), conversation, night).reason == "opted_out"


@pytest.mark.parametrize(
    ("outbox_kind", "marketing", "kind"),
    [
        ("safety", False, TextKind.SAFETY),
        ("compliance", False, TextKind.COMPLIANCE),
        ("reply", False, TextKind.CONVERSATION),
        ("staff", False, TextKind.CONVERSATION),
        ("notification", False, TextKind.CONVERSATION),
        ("automation", False, TextKind.TRANSACTIONAL),
        ("automation", True, TextKind.MARKETING),
        ("campaign", False, TextKind.MARKETING),
        ("something-new", False, TextKind.MARKETING),  # unknown: the strictest rules
    ],
)
def test_every_outbox_kind_is_a_kind_of_text(outbox_kind, marketing, kind):
    assert text_kind(outbox_kind, marketing=marketing) is kind
