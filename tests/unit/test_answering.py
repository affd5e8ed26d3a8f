"""Direct answers: hours from the clinic's data, the relevant sentence of an article, one answer per question."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from domain.answering import hours_answer, pick_sentences, price_variants, split_questions, split_sentences

TZ = "America/Los_Angeles"
HOURS = {
    "mon": [["09:00", "19:00"]],
    "tue": [["09:00", "19:00"]],
    "wed": [["09:00", "19:00"]],
    "thu": [["09:00", "19:00"]],
    "fri": [["09:00", "19:00"]],
    "sat": ["09:00-15:00"],
    "sun": [],
}
HOLIDAYS = ("2026-11-26", "2026-12-25", "2027-01-01")
TUESDAY_10AM = datetime(2027, 3, 2, 10, 0, tzinfo=ZoneInfo(TZ))


def answer(text: str, now: datetime = TUESDAY_10AM) -> str | None:
    return hours_answer(text, now=now, tz=TZ, business_hours=HOURS, holidays=HOLIDAYS)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("are you open sunday?", "No - we're closed on Sundays. The next opening is Monday at 9:00 AM."),
        ("r u open on saturdays", "Yes - on Saturdays we're open 9:00 AM to 3:00 PM."),
        ("what time do you close today?", "Today we close at 7:00 PM (open 9:00 AM to 7:00 PM)."),
        ("are you open tomorrow at 8am?", "No - tomorrow (Wednesday) we open at 9:00 AM and close at 7:00 PM."),
        ("what are your hours?", "Our hours: Mon-Fri 9:00 AM to 7:00 PM; Sat 9:00 AM to 3:00 PM; closed Sun."),
        ("are you open right now", "Yes - we're open now, until 7:00 PM today."),
    ],
)
def test_hours_questions_get_the_answer_first(question: str, expected: str) -> None:
    assert answer(question) == expected


def test_a_holiday_by_name_is_read_from_the_clinics_list() -> None:
    text = answer("are you guys open on christmas day?", now=datetime(2026, 12, 20, 10, tzinfo=ZoneInfo(TZ)))
    assert text == "No - we're closed on Christmas Day (Fri Dec 25). The next opening is Saturday at 9:00 AM."


def test_not_an_hours_question() -> None:
    assert answer("how much is botox") is None


def test_questions_of_one_message_are_split() -> None:
    assert split_questions("how much is microneedling, how many sessions will I need and what's the downtime?") == [
        "how much is microneedling",
        "how many sessions will I need",
        "what's the downtime",
    ]
    assert split_questions("do you validate parking and what are your saturday hours?") == [
        "do you validate parking",
        "what are your saturday hours",
    ]


def test_an_articles_own_question_stays_with_its_answer_and_a_stub_with_the_next_sentence() -> None:
    text = "When will I see results? Most people notice changes in 3 to 5 days.\nPeel: depends. Light peels flake."
    assert split_sentences(text) == [
        "When will I see results? Most people notice changes in 3 to 5 days.",
        "Peel: depends. Light peels flake.",
    ]


def test_the_relevant_sentence_is_picked_and_other_services_are_left_out() -> None:
    downtime = [
        "Downtime means how long it takes before you look like yourself.",
        "Botox and Dysport: practically none.",
        "Lip filler: plan for 2 to 3 days of swelling, which can last up to a week.",
        "Microneedling: redness similar to a sunburn for 1 to 3 days.",
    ]
    picked = pick_sentences(
        "whats the downtime for lip filler",
        downtime,
        must_mention=["lip filler"],
        avoid=["botox", "microneedling"],
        focus="whats the downtime for",
    )
    assert picked == ["Lip filler: plan for 2 to 3 days of swelling, which can last up to a week."]


def test_price_variants_come_from_the_service_description() -> None:
    description = (
        "Hyaluronic acid filler for the lips. $750 per syringe; a half-syringe option is $450. Lasts 6-12 months."
    )
    assert price_variants(description, "$750 per syringe") == ["a half-syringe option is $450."]
    assert price_variants(
        "Collagen induction. $400 per session or $1,080 for a series of three.", "$400 per session"
    ) == ["$1,080 for a series of three."]
