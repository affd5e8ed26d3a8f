"""Template placeholders, rendering, the opt-out footer, cost estimates and reminder reply keywords."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.segments import is_gsm7
from domain.templates import (
    AUTOMATION_PLACEHOLDERS,
    CAMPAIGN_PLACEHOLDERS,
    Template,
    TemplateError,
    confirmation_reply,
    estimate_cost,
    first_name,
    reminder_reply_intent,
    render,
    unknown_placeholders,
    validate_template,
    when_label,
    with_footer,
)


def test_render_fills_placeholders_and_keeps_literal_text():
    body = render(
        "Hi {first_name}, {clinic_name} has openings {next_open_slot}.",
        {"first_name": "Ava", "clinic_name": "Glow MedSpa", "next_open_slot": "Tue Mar 3 at 10:00 AM"},
    )
    assert body == "Hi Ava, Glow MedSpa has openings Tue Mar 3 at 10:00 AM."


def test_missing_values_use_fallbacks_and_never_leave_a_raw_placeholder():
    body = render("Hi {first_name}, book your next {last_service} {next_open_slot}!", {"first_name": None})
    assert body == "Hi there, book your next treatment this week!"
    assert "{" not in body


def test_a_placeholder_without_fallback_renders_empty_without_double_spaces():
    assert render("Review us {review_url} today", {}) == "Review us today"


def test_double_braces_are_literal_braces():
    template = Template.parse("Use code {{SPRING}} {first_name}")
    assert template.names == ("first_name",)
    assert template.render({"first_name": "Mia"}) == "Use code {SPRING} Mia"


def test_unknown_placeholders_are_rejected_with_the_allowed_list():
    assert unknown_placeholders("Hi {frist_name} {first_name} {frist_name}") == ["frist_name"]
    with pytest.raises(TemplateError, match=r"\{frist_name\}.*allowed: .*\{first_name\}"):
        validate_template("Hi {frist_name}")
    with pytest.raises(TemplateError, match="empty"):
        validate_template("   ")


def test_automation_placeholders_extend_the_campaign_ones():
    assert CAMPAIGN_PLACEHOLDERS < AUTOMATION_PLACEHOLDERS
    validate_template("{service_name} with {provider_name} on {when}", AUTOMATION_PLACEHOLDERS)
    with pytest.raises(TemplateError):
        validate_template("{service_name}", CAMPAIGN_PLACEHOLDERS)


def test_rendering_makes_typographic_quotes_gsm_friendly():
    body = render("It\u2019s time \u2014 {first_name}!", {"first_name": "Zoe"})
    assert body == "It's time - Zoe!"
    assert is_gsm7(body)


def test_first_name_is_the_first_word_or_none():
    assert first_name("  Olivia  Bennett ") == "Olivia"
    assert first_name("") is None
    assert first_name(None) is None


def test_footer_is_appended_once():
    body = with_footer("Spring special!", "Reply STOP to opt out.")
    assert body == "Spring special! Reply STOP to opt out."
    assert with_footer(body, "Reply STOP to opt out.") == body
    assert with_footer("x", "") == "x"


def test_cost_estimate_counts_segments_at_the_us_rate():
    short = "a" * 160  # one GSM-7 segment
    long = "a" * 161  # two segments (153 per part)
    emoji = "Hi \U0001f600"  # UCS-2, one segment
    estimate = estimate_cost([short, long, emoji])
    assert (estimate.messages, estimate.segments) == (3, 4)
    assert estimate.usd == pytest.approx(4 * 0.0079)


def test_when_label_is_local_time():
    moment = datetime(2026, 3, 3, 18, 0, tzinfo=UTC)  # 10:00 in Los Angeles (PST)
    assert when_label(moment, "America/Los_Angeles") == "Tue Mar 3 at 10:00 AM"
    assert when_label(moment, "America/New_York") == "Tue Mar 3 at 1:00 PM"


@pytest.mark.parametrize(
    "body", ["C", "c", "YES", "yes!", "Y", "Confirm", "confirmed", "C thanks", "yes please", "Yes I will be there"]
)
def test_confirmations(body):
    assert reminder_reply_intent(body) == "confirm"


@pytest.mark.parametrize("body", ["R", "r", "Reschedule"])
def test_reschedule_requests(body):
    assert reminder_reply_intent(body) == "reschedule"


@pytest.mark.parametrize(
    "body", ["", "yes but can I move it to 3pm?", "cancel", "STOP", "what time is it?", "R u open sunday", "no"]
)
def test_anything_else_goes_to_the_dialogue(body):
    assert reminder_reply_intent(body) is None


def test_confirmation_reply_names_the_visit():
    text = confirmation_reply("Ava", "Glow MedSpa", "Lip filler", "Fri Dec 4 at 3:00 PM")
    assert text == "Thanks Ava, your Lip filler on Fri Dec 4 at 3:00 PM at Glow MedSpa is confirmed. See you then!"
    assert confirmation_reply(None, "Glow", None, "Mon").startswith("Thanks there, your appointment on Mon")
