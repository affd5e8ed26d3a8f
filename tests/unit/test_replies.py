"""Reply shaping: whitespace, GSM-friendliness, cutting at sentence ends."""

from __future__ import annotations

import pytest

from domain.replies import shape_sms_reply
from domain.segments import count_segments


def test_short_reply_only_normalised() -> None:
    assert shape_sms_reply("  Hi!\n\nWe’re  open   9–5.  ") == "Hi! We're open 9-5."


def test_cut_at_last_sentence_boundary_before_limit() -> None:
    text = "First sentence here. Second one is here! Third one goes past the limit for sure."
    shaped = shape_sms_reply(text, limit=45)
    assert shaped == "First sentence here. Second one is here!"


def test_question_mark_is_a_boundary() -> None:
    text = "Would Friday work? " + "x" * 400
    assert shape_sms_reply(text) == "Would Friday work?"


def test_never_cuts_inside_sentence_when_a_boundary_exists() -> None:
    text = "Short one. " + "word " * 100
    shaped = shape_sms_reply(text, limit=100)
    assert shaped == "Short one."


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (30, "Dr. Lee can see you Friday."),
        (20, "Dr. Lee can see..."),  # "Dr." is not a sentence end, so a word cut
    ],
)
def test_abbreviation_is_not_a_sentence_end(limit: int, expected: str) -> None:
    assert shape_sms_reply("Dr. Lee can see you Friday. Tuesday works too.", limit=limit) == expected


def test_single_long_sentence_cut_at_word_with_ascii_ellipsis() -> None:
    text = "word " * 100
    shaped = shape_sms_reply(text.strip(), limit=50)
    assert shaped.endswith("...")
    assert "…" not in shaped
    assert len(shaped) <= 50
    assert shaped[:-3].split() == ["word"] * len(shaped[:-3].split())  # whole words only


def test_long_unbroken_token_is_hard_cut() -> None:
    shaped = shape_sms_reply("x" * 400, limit=40)
    assert shaped == "x" * 37 + "..."


@pytest.mark.parametrize("limit", [160, 200, 320])
def test_result_never_exceeds_limit_and_is_gsm7(limit: int) -> None:
    text = ("We’re happy to help… " * 10) + "Reply “YES” to confirm — thanks!"
    shaped = shape_sms_reply(text, limit=limit)
    assert len(shaped) <= limit
    assert count_segments(shaped).encoding == "GSM-7"


def test_limit_must_allow_ellipsis() -> None:
    with pytest.raises(ValueError):
        shape_sms_reply("hello", limit=3)
