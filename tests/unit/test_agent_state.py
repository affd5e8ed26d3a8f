"""AgentState transitions, tools per state, confirmation rule."""

from __future__ import annotations

import pytest

from domain.agent_state import (
    ALL_TOOLS,
    CONFIRMATION_REQUIRED,
    TOOLS_ALLOWED,
    AgentEvent,
    AgentState,
    InvalidTransition,
    is_affirmative,
    is_negative,
    next_state,
    tool_allowed,
)

S, E = AgentState, AgentEvent


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (S.IDLE, E.MESSAGE, S.ANSWERING),
        (S.ANSWERING, E.SERVICE_CHOSEN, S.COLLECTING_BOOKING),
        (S.COLLECTING_BOOKING, E.SLOT_OFFERED, S.COLLECTING_BOOKING),
        (S.COLLECTING_BOOKING, E.CONFIRM_REQUESTED, S.CONFIRMING),
        (S.CONFIRMING, E.CONFIRMED, S.CONFIRMING),
        (S.CONFIRMING, E.BOOKED, S.BOOKED),
        (S.CONFIRMING, E.DEPOSIT_REQUIRED, S.AWAITING_DEPOSIT),
        (S.CONFIRMING, E.DECLINED, S.ANSWERING),
        (S.CONFIRMING, E.SLOT_OFFERED, S.COLLECTING_BOOKING),
        (S.AWAITING_DEPOSIT, E.DEPOSIT_PAID, S.BOOKED),
        (S.AWAITING_DEPOSIT, E.DEPOSIT_EXPIRED, S.IDLE),
        (S.BOOKED, E.RESCHEDULE_REQUESTED, S.RESCHEDULING),
        (S.BOOKED, E.CANCEL_REQUESTED, S.CANCELLING),
        (S.RESCHEDULING, E.CONFIRM_REQUESTED, S.CONFIRMING),
        (S.CANCELLING, E.CONFIRM_REQUESTED, S.CONFIRMING),
        (S.CONFIRMING, E.CANCELLED, S.IDLE),
        (S.HANDOFF, E.HANDED_BACK, S.IDLE),
        (S.HANDOFF, E.MESSAGE, S.HANDOFF),
        (S.OPTED_OUT, E.OPTED_IN, S.IDLE),
    ],
)
def test_transitions(state: AgentState, event: AgentEvent, expected: AgentState) -> None:
    assert next_state(state, event, strict=True) is expected


def test_happy_path_booking_with_deposit() -> None:
    state = S.IDLE
    for event in (
        E.MESSAGE,
        E.SERVICE_CHOSEN,
        E.SLOT_OFFERED,
        E.CONFIRM_REQUESTED,
        E.CONFIRMED,
        E.DEPOSIT_REQUIRED,
        E.DEPOSIT_PAID,
    ):
        state = next_state(state, event, strict=True)
    assert state is S.BOOKED


@pytest.mark.parametrize("state", list(AgentState))
def test_opt_out_from_anywhere(state: AgentState) -> None:
    assert next_state(state, E.OPTED_OUT) is S.OPTED_OUT


@pytest.mark.parametrize("state", [s for s in AgentState if s is not S.OPTED_OUT])
def test_handoff_and_reset_from_anywhere(state: AgentState) -> None:
    assert next_state(state, E.HANDOFF_REQUESTED) is S.HANDOFF
    assert next_state(state, E.RESET) is S.IDLE


@pytest.mark.parametrize("event", [E.RESET, E.HANDOFF_REQUESTED, E.MESSAGE, E.CONFIRMED, E.BOOKED])
def test_opted_out_is_left_only_by_opting_in(event: AgentEvent) -> None:
    assert next_state(S.OPTED_OUT, event) is S.OPTED_OUT


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.IDLE, E.BOOKED),
        (S.COLLECTING_BOOKING, E.BOOKED),
        (S.ANSWERING, E.DEPOSIT_PAID),
        (S.CANCELLING, E.CANCELLED),
        (S.IDLE, E.CONFIRMED),
        (S.HANDOFF, E.SERVICE_CHOSEN),
    ],
)
def test_invalid_transitions_keep_state_or_raise_when_strict(state: AgentState, event: AgentEvent) -> None:
    assert next_state(state, event) is state
    with pytest.raises(InvalidTransition):
        next_state(state, event, strict=True)


def test_every_state_has_a_tool_set_and_only_known_tools() -> None:
    assert set(TOOLS_ALLOWED) == set(AgentState)
    for tools in TOOLS_ALLOWED.values():
        assert tools <= ALL_TOOLS
    assert len(ALL_TOOLS) == 13  # join_waitlist (issue 16)


@pytest.mark.parametrize("state", [S.HANDOFF, S.OPTED_OUT])
def test_no_tools_in_handoff_or_opted_out(state: AgentState) -> None:
    assert TOOLS_ALLOWED[state] == frozenset()


@pytest.mark.parametrize("tool", sorted({"book_appointment", "reschedule_appointment", "cancel_appointment"}))
def test_irreversible_tools_only_while_confirming(tool: str) -> None:
    allowed_in = {s for s in AgentState if tool_allowed(s, tool)}
    assert allowed_in == {S.CONFIRMING}
    assert tool in CONFIRMATION_REQUIRED


def test_propose_action_available_where_a_flow_runs() -> None:
    for state in (S.IDLE, S.ANSWERING, S.COLLECTING_BOOKING, S.RESCHEDULING, S.CANCELLING, S.BOOKED):
        assert tool_allowed(state, "propose_action")
    assert not tool_allowed(S.CANCELLING, "check_availability")
    assert tool_allowed(S.AWAITING_DEPOSIT, "create_deposit_link")


@pytest.mark.parametrize(
    "text",
    [
        "yes",
        "Yes!",
        "YES PLEASE",
        "yep",
        "yeah",
        "sure",
        "confirm",
        "Confirmed.",
        "sounds good",
        "Sounds great!",
        "ok",
        "OK thanks",
        "k",
        "👍",
        "👍🏼",
        "✅",
        "sí",
        "Si, gracias",
        "C",
        "that works",
        "yes please book it",
        "perfect",
        "yes that works for me",
    ],
)
def test_affirmative(text: str) -> None:
    assert is_affirmative(text)
    assert not is_negative(text)


@pytest.mark.parametrize(
    "text",
    [
        "yes but can we do 4 instead",
        "ok?",
        "yes, is parking free?",
        "sure, what about friday",
        "yes 3pm works",
        "not sure",
        "yes no",
        "",
        "🙂",
        "Can you book it?",
        "ok wait",
        "si pero mejor el viernes",
    ],
)
def test_not_plain_yes(text: str) -> None:
    assert not is_affirmative(text)


@pytest.mark.parametrize(
    "text",
    [
        "no",
        "No.",
        "nope",
        "nah",
        "not yet",
        "no thanks",
        "No thank you!",
        "👎",
        "never mind",
        "not now",
        "dont book it",
        "no gracias",
        "maybe later",
    ],
)
def test_negative(text: str) -> None:
    assert is_negative(text)
    assert not is_affirmative(text)


@pytest.mark.parametrize(
    "text", ["no, can we do friday instead?", "no but what about 4", "not at 3, how about 5", "yes"]
)
def test_not_plain_no(text: str) -> None:
    assert not is_negative(text)


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("yep go ahead and cancel", "cancel"),
        ("Yes, cancel it please", "cancel"),
        ("yes cancel", "cancel"),
        ("yes cancel my appointment", "cancel"),
        ("sí, cancélala por favor", "cancel"),
        ("cancel it", "cancel"),
        ("sure, book that one", "book"),
        ("yes!! please book it 🙏", "book"),
        ("perfect, lock it in", "book"),
        ("ok do it", "book"),
        ("👍👍", "book"),
        ("confirmed ✅", "book"),
        ("yes please move it", "reschedule"),
        ("yeah move it, thanks!", "reschedule"),
        ("ok go ahead and move it", "reschedule"),
    ],
)
def test_a_yes_that_names_the_proposed_action_confirms_it(text: str, action: str) -> None:
    """Issue 14: repeating the action word confirms; it must not read as a new request (or as a no)."""
    assert is_affirmative(text, action)
    assert not is_negative(text, action)


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("yes but not friday, could we do thursday instead?", "book"),
        ("hmm maybe not", "book"),
        ("no wait, keep it", "cancel"),
        ("yes cancel", "book"),  # the action word of another proposal is not a yes to this one
        ("move it", "cancel"),
        ("my appointment", "cancel"),
        ("no not that time, anything earlier that day?", "book"),
    ],
)
def test_hedges_negations_and_other_actions_do_not_confirm(text: str, action: str) -> None:
    assert not is_affirmative(text, action)


@pytest.mark.parametrize(
    ("text", "action"), [("hmm maybe not", "book"), ("no wait, keep it", "cancel"), ("no", "cancel")]
)
def test_hedges_and_keep_it_are_a_no(text: str, action: str) -> None:
    assert is_negative(text, action)
