"""The conversation's AgentState machine, the tools each state allows, and
the patient-confirmation rule.

Why: the model never decides what it may do.  The state (stored with the
conversation and versioned) limits the tools offered to the model, and the
irreversible tools (book, reschedule, cancel, deposit link) are offered only in
CONFIRMING, which is entered after ``propose_action`` put exact details to the
patient.  The executor additionally requires ``is_affirmative`` on the
patient's reply to the proposal.

Invalid transitions: ``next_state`` returns the state unchanged (the turn goes
on; a confused model must not crash a conversation), or raises
``InvalidTransition`` with ``strict=True`` (tests, the tool executor).
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


def _wordset(words: str) -> frozenset[str]:
    """A set of words written as one space-separated string (long vocabularies stay readable)."""
    return frozenset(words.split())


class AgentState(StrEnum):
    IDLE = "idle"
    ANSWERING = "answering"
    COLLECTING_BOOKING = "collecting_booking"
    CONFIRMING = "confirming"
    AWAITING_DEPOSIT = "awaiting_deposit"
    BOOKED = "booked"
    RESCHEDULING = "rescheduling"
    CANCELLING = "cancelling"
    HANDOFF = "handoff"
    OPTED_OUT = "opted_out"


class AgentEvent(StrEnum):
    MESSAGE = "message"  # an ordinary patient message / question
    SERVICE_CHOSEN = "service_chosen"
    SLOT_OFFERED = "slot_offered"
    CONFIRM_REQUESTED = "confirm_requested"  # propose_action put exact details to the patient
    CONFIRMED = "confirmed"  # the patient said yes to the proposal
    DECLINED = "declined"  # the patient said no to the proposal / abandoned the flow
    BOOKED = "booked"
    DEPOSIT_REQUIRED = "deposit_required"
    DEPOSIT_PAID = "deposit_paid"
    DEPOSIT_EXPIRED = "deposit_expired"
    RESCHEDULE_REQUESTED = "reschedule_requested"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELLED = "cancelled"
    HANDOFF_REQUESTED = "handoff_requested"
    HANDED_BACK = "handed_back"
    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"
    RESET = "reset"


class InvalidTransition(ValueError):
    def __init__(self, state: AgentState, event: AgentEvent) -> None:
        super().__init__(f"no transition from {state} on {event}")
        self.state = state
        self.event = event


S, E = AgentState, AgentEvent

_START_FLOW: dict[AgentEvent, AgentState] = {
    E.SERVICE_CHOSEN: S.COLLECTING_BOOKING,
    E.SLOT_OFFERED: S.COLLECTING_BOOKING,
    E.CONFIRM_REQUESTED: S.CONFIRMING,
    E.RESCHEDULE_REQUESTED: S.RESCHEDULING,
    E.CANCEL_REQUESTED: S.CANCELLING,
}

TRANSITIONS: dict[AgentState, dict[AgentEvent, AgentState]] = {
    S.IDLE: {E.MESSAGE: S.ANSWERING, **_START_FLOW},
    S.ANSWERING: {E.MESSAGE: S.ANSWERING, **_START_FLOW},
    S.COLLECTING_BOOKING: {
        **_START_FLOW,
        E.MESSAGE: S.COLLECTING_BOOKING,
        E.DECLINED: S.ANSWERING,
    },
    S.CONFIRMING: {
        E.MESSAGE: S.CONFIRMING,
        E.CONFIRMED: S.CONFIRMING,  # the executor now runs the proposed action
        E.CONFIRM_REQUESTED: S.CONFIRMING,  # a corrected proposal
        E.DECLINED: S.ANSWERING,
        E.SERVICE_CHOSEN: S.COLLECTING_BOOKING,
        E.SLOT_OFFERED: S.COLLECTING_BOOKING,
        E.BOOKED: S.BOOKED,
        E.DEPOSIT_REQUIRED: S.AWAITING_DEPOSIT,
        E.CANCELLED: S.IDLE,
        E.RESCHEDULE_REQUESTED: S.RESCHEDULING,
        E.CANCEL_REQUESTED: S.CANCELLING,
    },
    S.AWAITING_DEPOSIT: {
        E.MESSAGE: S.AWAITING_DEPOSIT,
        E.DEPOSIT_PAID: S.BOOKED,
        E.DEPOSIT_EXPIRED: S.IDLE,
        E.CANCELLED: S.IDLE,
        E.CONFIRM_REQUESTED: S.CONFIRMING,
        E.RESCHEDULE_REQUESTED: S.RESCHEDULING,
        E.CANCEL_REQUESTED: S.CANCELLING,
    },
    S.BOOKED: {E.MESSAGE: S.BOOKED, **_START_FLOW, E.CANCELLED: S.IDLE},
    S.RESCHEDULING: {
        E.MESSAGE: S.RESCHEDULING,
        E.SLOT_OFFERED: S.RESCHEDULING,
        E.SERVICE_CHOSEN: S.RESCHEDULING,
        E.CONFIRM_REQUESTED: S.CONFIRMING,
        E.DECLINED: S.ANSWERING,
        E.CANCEL_REQUESTED: S.CANCELLING,
    },
    S.CANCELLING: {
        E.MESSAGE: S.CANCELLING,
        E.CONFIRM_REQUESTED: S.CONFIRMING,
        E.DECLINED: S.ANSWERING,
        E.RESCHEDULE_REQUESTED: S.RESCHEDULING,
    },
    S.HANDOFF: {E.MESSAGE: S.HANDOFF, E.HANDED_BACK: S.IDLE},
    S.OPTED_OUT: {E.OPTED_IN: S.IDLE},
}


def next_state(state: AgentState, event: AgentEvent, *, strict: bool = False) -> AgentState:
    """The state after ``event``.

    Global rules first: OPTED_OUT from anywhere; an opted-out conversation
    leaves only on OPTED_IN (RESET does not clear consent); HANDOFF_REQUESTED
    from anywhere else; RESET to IDLE; OPTED_IN elsewhere is a no-op.
    """
    if event is E.OPTED_OUT:
        return S.OPTED_OUT
    if state is S.OPTED_OUT:
        if event is E.OPTED_IN:
            return S.IDLE
        if strict and event is not E.MESSAGE:
            raise InvalidTransition(state, event)
        return state
    if event is E.RESET:
        return S.IDLE
    if event is E.HANDOFF_REQUESTED:
        return S.HANDOFF
    if event is E.OPTED_IN:
        return state
    target = TRANSITIONS[state].get(event)
    if target is None:
        if strict:
            raise InvalidTransition(state, event)
        return state
    return target


# ---------------------------------------------------------------- tools
class Tool(StrEnum):
    LIST_SERVICES = "list_services"
    GET_SERVICE_DETAILS = "get_service_details"
    SEARCH_KNOWLEDGE = "search_knowledge"
    CHECK_AVAILABILITY = "check_availability"
    BOOK_APPOINTMENT = "book_appointment"
    RESCHEDULE_APPOINTMENT = "reschedule_appointment"
    CANCEL_APPOINTMENT = "cancel_appointment"
    GET_MY_APPOINTMENTS = "get_my_appointments"
    CREATE_DEPOSIT_LINK = "create_deposit_link"
    UPDATE_PROFILE = "update_profile"
    HANDOFF_TO_STAFF = "handoff_to_staff"
    PROPOSE_ACTION = "propose_action"
    JOIN_WAITLIST = "join_waitlist"


ALL_TOOLS: frozenset[str] = frozenset(t.value for t in Tool)
# Tools that change something the patient cares about: only after a confirmed proposal.
CONFIRMATION_REQUIRED: frozenset[str] = frozenset(
    {Tool.BOOK_APPOINTMENT, Tool.RESCHEDULE_APPOINTMENT, Tool.CANCEL_APPOINTMENT, Tool.CREATE_DEPOSIT_LINK}
)
_READ = frozenset(
    {
        Tool.LIST_SERVICES,
        Tool.GET_SERVICE_DETAILS,
        Tool.SEARCH_KNOWLEDGE,
        Tool.GET_MY_APPOINTMENTS,
        Tool.HANDOFF_TO_STAFF,
    }
)
_PLAN = _READ | {Tool.CHECK_AVAILABILITY, Tool.PROPOSE_ACTION, Tool.UPDATE_PROFILE, Tool.JOIN_WAITLIST}

TOOLS_ALLOWED: dict[AgentState, frozenset[str]] = {
    S.IDLE: frozenset(_PLAN),
    S.ANSWERING: frozenset(_PLAN),
    S.COLLECTING_BOOKING: frozenset(_PLAN),
    S.CONFIRMING: frozenset(_PLAN | CONFIRMATION_REQUIRED),
    # The deposit link may be sent again while waiting; cancelling goes through a proposal.
    S.AWAITING_DEPOSIT: frozenset(_PLAN | {Tool.CREATE_DEPOSIT_LINK}),
    S.BOOKED: frozenset(_PLAN),
    S.RESCHEDULING: frozenset(_READ | {Tool.CHECK_AVAILABILITY, Tool.PROPOSE_ACTION, Tool.JOIN_WAITLIST}),
    S.CANCELLING: frozenset(_READ | {Tool.PROPOSE_ACTION}),
    S.HANDOFF: frozenset(),
    S.OPTED_OUT: frozenset(),
}


def tool_allowed(state: AgentState, tool: str) -> bool:
    return tool in TOOLS_ALLOWED[state]


# ---------------------------------------------------------------- confirmations
_EMOJI_WORDS = {
    "\U0001f44d": " yes ",  # thumbs up
    "\u2705": " yes ",  # check mark button
    "\u2714": " yes ",  # heavy check mark
    "\U0001f44c": " ok ",  # ok hand
    "\U0001f64c": " yes ",  # raising hands
    "\U0001f44e": " no ",  # thumbs down
    "\u274c": " no ",  # cross mark
    "\U0001f6ab": " no ",  # prohibited
}
_AFFIRMATIVE_CORE = _wordset(
    "yes y yep yeah yea ya yup yess yesss sure confirm confirmed ok okay k kk okk c correct absolutely definitely "
    "perfect great good works si claro dale vale bueno confirmo affirmative alright aight lovely fine"
)
_AFFIRMATIVE_FILLER = _wordset(
    "please pls plz thanks thank you thx ty that thats it sounds for me book do go ahead lets is fine great "
    "perfect good all set works yes por favor gracias esta bien a really very much so super just will ill be "
    "there see then exactly right cool awesome and one lock in sounds thing of course totally love"
)
# Words that name the proposed action: part of a yes to *that* proposal ("yep go ahead and cancel",
# "sure, book that one", "yes please move it", "sí, cancélala"), never a new request for the same action.
ACTION_WORDS: dict[str, frozenset[str]] = {
    "book": _wordset("book booking booked schedule reserve grab take it in reservala agendala my appointment appt"),
    "cancel": _wordset(
        "cancel cancelled canceled cancellation cancela cancelala cancelar anular anulala it my appointment appt "
        "booking the cita mi la"
    ),
    "reschedule": _wordset(
        "move moved reschedule rescheduled switch it my appointment appt booking the muevela cambiala cita mi la"
    ),
    "deposit": _wordset("send link it deposit the me"),
}
_NEGATIVE_CORE = _wordset("no n nope nah na negative nevermind nvm cancel dont not never")
_NEGATIVE_FILLER = _wordset(
    "thanks thank you thx ty please pls yet now today mind gracias its ok okay that it do book want to i sorry "
    "actually right maybe later never not no nope anymore dont go ahead with wait keep hmm hm hmm umm um uh erm"
)
_NEGATIVE_PHRASES = frozenset({"maybe later", "maybe another time", "hold off", "let me think", "ill pass", "pass"})
# Words that turn a yes/no into a counter-proposal or a question.
_CONTINUATION = _wordset(
    "but instead can could would what how when which where change different other another earlier later if or "
    "wait hold except pero mejor cambiar"
)
_NON_WORD = re.compile(r"[^a-z0-9 ]+")


def _words(text: str) -> tuple[list[str], bool]:
    """Normalised words and whether the message is a question."""
    for emoji, word in _EMOJI_WORDS.items():
        text = text.replace(emoji, word)
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    plain = plain.replace("\u2019", "").replace("'", "")
    question = "?" in plain or "\u00bf" in plain
    return _NON_WORD.sub(" ", plain).split(), question


def is_affirmative(text: str, action: str | None = None) -> bool:
    """A plain yes to a proposal: "yes", "yep!", "sounds good", "👍", "sí", "C".

    With the pending proposal's ``action`` ("book", "cancel", "reschedule", "deposit"), words naming that action
    belong to the yes: "yep go ahead and cancel", "sure, book that one", "yes please move it".  Anything that adds
    a condition, a question or another time ("yes but can we do 4 instead", "ok?") is not a plain yes: the
    dialogue continues.
    """
    words, question = _words(text)
    if not words or question:
        return False
    action_words = ACTION_WORDS.get(action or "", frozenset())
    rest = [w for w in words if w not in action_words]
    if any(w in _CONTINUATION or w in _NEGATIVE_CORE for w in rest):
        return False
    said_yes = any(w in _AFFIRMATIVE_CORE for w in rest)
    # "cancel it" / "move it" after "Reply YES to cancel": the action and its object are the yes.
    named = len(rest) < len(words) and any(w in action_words and w not in _SHARED_OBJECTS for w in words)
    return (said_yes or (named and len(words) <= 4)) and all(
        w in _AFFIRMATIVE_CORE or w in _AFFIRMATIVE_FILLER for w in rest
    )


# Words every action's vocabulary shares: they never make a yes on their own.
_SHARED_OBJECTS = _wordset("it my appointment appt booking the cita mi la in me")


def is_negative(text: str, action: str | None = None) -> bool:
    """A plain no to a proposal: "no", "nope", "not yet", "no thanks", "no wait, keep it", "👎".

    "no, can we do Friday instead?" is not a plain no (it is a counter-offer).  With the pending proposal's
    ``action``, words naming it are not a no ("cancel it" confirms a proposed cancellation).
    """
    words, question = _words(text)
    if not words or question:
        return False
    if " ".join(words) in _NEGATIVE_PHRASES:
        return True
    action_words = ACTION_WORDS.get(action or "", frozenset())
    words = [w for w in words if w not in action_words or w in _NEGATIVE_FILLER]
    if not words:
        return False
    if any(w in _CONTINUATION and w not in _NEGATIVE_FILLER for w in words):
        return False
    return any(w in _NEGATIVE_CORE for w in words) and all(w in _NEGATIVE_CORE or w in _NEGATIVE_FILLER for w in words)
