"""The pure rules of missed-call text-back (domain.missed_calls) and of photos (domain.media, safety.photo_concern)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from domain.agent_loop import safety_turn
from domain.audience import TextKind, text_kind
from domain.conversation import ClinicProfile
from domain.media import photo_ack, storable_type, twilio_media_account, vision_enabled
from domain.missed_calls import (
    DEFAULT_TEXT,
    MissedCallPolicy,
    answer_call,
    dial_missed,
    is_open,
    local_day_start,
    text_back_body,
    text_back_skip_reason,
    textable_caller,
)
from domain.safety import Urgency, photo_concern
from domain.segments import count_segments

LA = ZoneInfo("America/Los_Angeles")
HOURS = {"mon": [["09:00", "19:00"]], "sat": [["09:00", "15:00"]]}
SID = "AC" + "0" * 32


def test_open_follows_the_clinics_hours_zone_and_holidays():
    monday_10 = datetime(2031, 3, 3, 10, 0, tzinfo=LA)
    assert is_open(monday_10, "America/Los_Angeles", HOURS, [])
    assert not is_open(datetime(2031, 3, 3, 19, 0, tzinfo=LA), "America/Los_Angeles", HOURS, [])  # closes at 19:00
    assert not is_open(datetime(2031, 3, 4, 10, 0, tzinfo=LA), "America/Los_Angeles", HOURS, [])  # tuesday: closed
    assert not is_open(monday_10, "America/Los_Angeles", HOURS, ["2031-03-03"])
    assert is_open(monday_10.astimezone(UTC), "America/Los_Angeles", HOURS, [])  # any zone in, the clinic's used


def test_a_call_rings_the_front_desk_only_when_the_clinic_forwards_and_is_open():
    forwarding = MissedCallPolicy.from_policies({"missed_calls": {"forward_during_hours": True, "ring_seconds": 15}})
    ring = answer_call(forwarding, clinic_name="Glow", front_desk="+14155550100", open_now=True)
    assert (ring.missed, ring.forward_to, ring.ring_seconds) == (False, "+14155550100", 15)
    assert answer_call(forwarding, clinic_name="Glow", front_desk="+14155550100", open_now=False).missed
    default = answer_call(MissedCallPolicy(), clinic_name="Glow", front_desk="+14155550100", open_now=True)
    assert default.missed and "Glow" in default.greeting
    other = MissedCallPolicy.from_policies(
        {"missed_calls": {"forward_during_hours": True, "forward_to": "+14155550111"}}
    )
    assert answer_call(other, clinic_name="Glow", front_desk="+14155550100", open_now=True).forward_to == "+14155550111"


def test_settings_are_read_defensively():
    policy = MissedCallPolicy.from_policies(
        {"missed_calls": {"daily_cap": 99, "ring_seconds": "x", "forward_to": "not a number", "text": "  "}}
    )
    assert policy.daily_cap == 10 and policy.ring_seconds == 20 and policy.forward_to is None
    assert policy.text == DEFAULT_TEXT
    assert MissedCallPolicy.from_policies({"missed_calls": "yes"}) == MissedCallPolicy()
    assert MissedCallPolicy.from_policies(None) == MissedCallPolicy()


def test_who_gets_a_text():
    policy = MissedCallPolicy()
    assert text_back_skip_reason(policy, caller_ok=True, texted_today=0) is None
    assert text_back_skip_reason(policy, caller_ok=True, texted_today=1) == "daily_cap"
    assert text_back_skip_reason(policy, caller_ok=False, texted_today=0) == "no_caller_id"
    assert text_back_skip_reason(MissedCallPolicy(enabled=False), caller_ok=True, texted_today=0) == "disabled"
    assert textable_caller("+14155550123") and not textable_caller("anonymous") and not textable_caller("266696687")
    assert dial_missed("no-answer") and dial_missed("busy") and dial_missed(None)
    assert not dial_missed("completed") and not dial_missed("answered")


def test_the_text_is_one_gsm_segment_and_transactional():
    body = text_back_body(MissedCallPolicy(), "Glow MedSpa")
    assert "Sorry we missed your call" in body and "Glow MedSpa" in body
    info = count_segments(body)
    assert (info.segments, info.encoding) == (1, "GSM-7")
    assert text_kind("missed_call") is TextKind.TRANSACTIONAL  # quiet hours and opt-out, no marketing consent


def test_the_daily_cap_counts_clinic_local_days():
    late = datetime(2031, 3, 3, 23, 30, tzinfo=LA)
    assert local_day_start(late, "America/Los_Angeles") == datetime(2031, 3, 3, 0, 0, tzinfo=LA)
    assert local_day_start(late.astimezone(UTC), "America/Los_Angeles") == datetime(2031, 3, 3, 0, 0, tzinfo=LA)


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("is this a reaction?", "photo_reaction"),
        ("so much swelling", "photo_reaction"),
        ("really swollen after filler", "swelling"),
        ("blister here", "blister"),
        ("bruising 2 days later", "photo_reaction"),
        ("my lips are turning blue", "vascular_occlusion"),
    ],
)
def test_a_photo_with_worrying_words_is_an_adverse_reaction(text, category):
    flag = photo_concern(text)
    assert flag is not None and flag.category == category
    assert flag.urgency in (Urgency.URGENT, Urgency.EMERGENCY)


def test_a_photo_of_a_result_is_not():
    assert photo_concern("here's my result, love it!") is None
    assert photo_concern("") is None


def test_the_safety_turn_with_a_photo_acknowledges_it_and_hands_off_urgently():
    clinic = ClinicProfile(1, "Glow", "America/Los_Angeles", "+14155550100", "", {}, [], {})
    out = safety_turn(
        ["does this look like a reaction"], clinic, channel="sms", agent_state="idle", slots={}, photo=True
    )
    assert out is not None and out.handoff is not None and out.handoff.urgency == "urgent"
    assert "photo" in out.replies[0].text.lower() and out.replies[0].safety
    assert safety_turn(["does this look like a reaction"], clinic, channel="sms", agent_state="idle", slots={}) is None


def test_media_rules():
    assert storable_type("image/jpeg") == ".jpg" and storable_type("IMAGE/PNG; q=1") == ".png"
    assert storable_type("text/html") is None and storable_type(None) is None
    path = f"/2010-04-01/Accounts/{SID}/Messages/MM{'1' * 32}/Media/ME{'2' * 32}"
    assert twilio_media_account(path) == SID
    assert twilio_media_account(path + "/../x") is None and twilio_media_account("/other") is None
    assert (
        not vision_enabled({})
        and not vision_enabled({"vision_model": "yes"})
        and vision_enabled({"vision_model": True})
    )
    assert "photos" in photo_ack("Glow", 2) and "photo " in photo_ack("Glow", 1)


def test_images_reach_the_chat_completions_message_only_as_content_parts():
    from domain.ports import ChatMessage
    from worker.integrations.openai_model import to_openai_message

    plain = to_openai_message(ChatMessage(role="user", content="hi"))
    assert plain["content"] == "hi"
    shown = to_openai_message(ChatMessage(role="user", content="look", images=("data:image/png;base64,AAAA",)))
    assert shown["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
