"""The safety turn reads the patient's texts of the last minutes with the new ones (``earlier``): a sign the new
words complete, or make graver, flags; one the earlier texts already showed had its turn and does not flag again."""

from __future__ import annotations

from domain.agent_loop import safety_turn
from domain.conversation import ClinicProfile

CLINIC = ClinicProfile(1, "Glow", "America/Los_Angeles", "+14155550100", "", {}, [], {})


def _urgency(messages: list[str], earlier: list[str]) -> str | None:
    out = safety_turn(messages, CLINIC, channel="sms", agent_state="idle", slots={}, earlier=earlier)
    return None if out is None or out.handoff is None else out.handoff.urgency


def test_a_sign_completed_by_the_new_text_flags():
    assert _urgency(["looks kind of pale now"], []) is None
    assert _urgency(["looks kind of pale now"], ["the lip filler I got yesterday"]) == "emergency"


def test_a_sign_the_earlier_texts_already_showed_does_not_flag_again():
    earlier = ["I got lip filler yesterday", "my lips are turning blue"]
    assert _urgency(["ok I'm calling now"], earlier) is None


def test_a_sign_made_graver_by_the_new_text_flags():
    earlier = ["my lip is really swollen"]  # urgent on its own, and answered as such
    assert _urgency(["ok"], earlier) is None
    assert _urgency(["looks kind of pale now"], []) is None
    assert _urgency(["looks kind of pale now"], earlier) == "emergency"


def test_the_new_texts_alone_flag_as_before_whatever_came_earlier():
    assert _urgency(["I can't breathe"], ["my lips are turning blue"]) == "emergency"
    assert _urgency(["what time do you open?"], ["do you do lip filler?"]) is None
