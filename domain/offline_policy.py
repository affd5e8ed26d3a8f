"""The offline dialogue policy: understanding by nearest labelled examples, deciding by rules, behind the
``ChatModel`` interface.

Why: with no LLM configured the product must still book, answer and hand off, and it must do so through exactly
the same path as the LLM — the same tools, the same confirmation rule, the same audit.  So this "model" reads the
messages (the patient's texts, earlier turns, and the tool results of this turn) plus the TurnContext, and answers
with tool calls or a final text, one step at a time, the way a function-calling LLM would.

Understanding (issue 14): what a message *is* comes from ``domain.nlu`` — the nearest labelled example
utterances under a local sentence-embedding model, with a confidence threshold — and, when that model is not
installed or not confident, from keyword rules.  Slots come from the deterministic parsers (``timeparse``,
``catalog``) read against the dialogue state: a bare "3" or "the 2pm one" after a list of slots is a choice,
"an hour earlier" moves the proposal, "same time on friday" keeps the appointment's time.  Rules remain only as
hard guards that must never be probabilistic: carrier keywords (handled before the model), emergencies (the
agent loop's safety screen), screening (``domain.screening``, enforced by the tool executor), the confirmation
gate (``agent_state.is_affirmative``) and injection attempts.

It is honest about being rules: when it cannot tell what the patient wants it says so and offers a person; a
message it cannot understand that carries a possible danger sign goes to staff.  Text in a message is data,
never an instruction: an "ignore your instructions" message gets a plain refusal and no tool call.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.agent_state import is_affirmative, is_negative
from domain.answering import (
    expand_query,
    hours_answer,
    is_hours_question,
    is_question,
    pick_sentences,
    price_variants,
    split_questions,
    split_sentences,
)
from domain.catalog import ServiceRef, find_service_mentions
from domain.nlu import IntentClassifier, Understanding
from domain.ports import ChatMessage, ModelReply, ToolCall, TurnContext
from domain.safety import detect_injection, possible_danger_sign
from domain.screening import CONDITION_LABELS, detect_conditions
from domain.timeparse import DAY_END, DAY_START, Shift, WhenSpec, parse_shift, parse_when
from domain.waitlist_dialogue import EXPLAIN as WAITLIST_EXPLAIN
from domain.waitlist_dialogue import OFFER as WAITLIST_OFFER
from domain.waitlist_dialogue import asks_how as asks_how_waitlist
from domain.waitlist_dialogue import asks_to_join, asks_to_leave, join_arguments, joined_reply, preferred_note

NAME = "offline-rules"


# --------------------------------------------------------------------------------------------- vocabulary
def _wordset(words: str) -> frozenset[str]:
    """A set of words written as one space-separated string (long vocabularies stay readable)."""
    return frozenset(words.split())


_CANCEL = re.compile(r"\b(cancel|cancell?ing|cancelar|cancela|anular|cant make it|can not make it|wont make it)\b")
_RESCHEDULE = re.compile(
    r"\b(reschedul\w*|re schedul\w*|move (my|the|it)|change (my|the) (appointment|appt|booking|time|cita)|"
    r"push (it|my appointment|my appt|my \w+) back|push (it|my \w+) to|different (time|day)|another (time|day)|"
    r"reprogramar|cambiar (mi|la) cita)\b"
)
_CHANGE_CUE = re.compile(
    r"\b(reschedul\w*|move|moving|change|switch|push|bump|instead|different|another|earlier|later|sooner|"
    r"cant make|can not make|reprogramar|cambiar|mover)\b"
)
_MY_APPTS = re.compile(
    r"\b(my (appointments?|appts?|bookings?|visits?|next one)|when is my|whens my|do i have (an? )?(appointment|appt|booking)|"
    r"what time is my|am i (still )?booked|mis citas|mi cita)\b"
)
_HANDOFF = re.compile(
    r"\b(talk|speak|chat) (to|with) (a |an |the |someone|somebody|person|human|staff|agent|real|manager|nurse|doctor)|"
    r"\b(real|actual|live) (person|human)\b|\bhuman\b|\brepresentative\b|\bcall me\b|\bagent\b|"
    r"\bhablar con (alguien|una persona)\b"
)
_BOOK = re.compile(
    r"\b(book|booking|schedule|appointment|appt|available|availability|openings?|slots?|come in|reserve|"
    r"get (in|a|some)|sign me up|i want|id like|i would like|can i (get|do|come)|reservar|agendar|cita|turno)\b"
)
_PRICE = re.compile(r"\b(cost|costs|price|prices|pricing|how much|charge|fee|fees|\$|cuanto|precio|expensive)\b")
_OFFER_QUESTION = re.compile(
    r"\b(do you (do|offer|have)|do u (do|offer|have)|what is|whats|tell me about|info on|details)\b"
)
_MENU = re.compile(
    r"\b(what (services|treatments) |services|treatments|menu|what do you (do|offer)|what can i (get|book))\b"
)
_GREETING = re.compile(r"^(hi+|hello|hey+|hiya|good (morning|afternoon|evening)|hola|buenas|yo)\b[\s!.,]*$")
_THANKS = re.compile(
    r"^(thanks|thank you|thx|ty|gracias|ok thanks|great thanks|perfect thanks|cool|appreciate it)\b[\s!.,a-z]*$"
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_OUT_OF_SCOPE = re.compile(
    r"\b(other|another|all|every|any|your)\s+(\w+\s+)?(clients|patients|customers|people|users|members)\b"
)
_EVERYONE = re.compile(r"\b(everyone|everybody|anyone|all the people|who else)\b")
_DATA_WORDS = re.compile(
    r"\b(phone|number|numbers|email|emails|info|information|appointments|names|address|data|records|details)\b"
)
_RELATIVE = (
    r"(?:sister|brother|mom|mother|mum|dad|father|husband|hubby|wife|partner|boyfriend|girlfriend|bf|gf|friend|"
    r"daughter|son|cousin|coworker|co worker|aunt|uncle|grandma|grandmother|roommate|fiance|fiancee|niece|nephew|"
    r"bestie|bff|neighbor)"
)
_SOMEONE_ELSE = re.compile(
    rf"\b(?:my|her|his)\s+(?:\w+\s+)?{_RELATIVE}s?\b|\bmy {_RELATIVE}\s+[a-z]+\b|\b(?:she|he)\s+(?:is|was)\s+(?:coming|booked)"
)
_OTHERS_INFO = re.compile(
    r"\b(appointment|appointments|appt|booked|booking|bookings|coming in|come in|number|phone|email|details|"
    r"schedule|scheduled|time is|what time|when is|when s|paid|pay|record|records|booked her|booked his)\b"
)
_LOGISTICS = re.compile(
    r"\b(fee|fees|charge|charged|penalty|policy|policies|refund|refundable|parking|park|bring|wear|prepare|prep|"
    r"arrive|arrival|early|late|shave|pay|payment|hsa|fsa|insurance|walk ins?|walk in|eat|drink|"
    r"work out|exercise|makeup|advance|ahead|deposit|how long|kids?|children|child|wheelchair|forms?)\b|"
    r"\b(before|after) (i|my|the|a|an|your|botox|filler|treatment|appointment|coming|getting|laser|peel|"
    r"microneedling|facial|it)\b"
)
_QUESTION_START = re.compile(
    r"^(is|are|do|does|did|what|whats|how|hows|why|where|wheres|who|should|will|would|if|any)\b|"
    r"^can i (pay|bring|wear|park|eat|drink|work out|exercise|shower|use|get a refund)\b"
)
_REQUEST_START = re.compile(
    r"^(can|could|may|would) (i|you|we) (book|get|come|move|reschedule|cancel|change|switch|push|schedule|make)\b|"
    r"^(i|id|i d|we) (want|need|would like|wanna|like|have) to\b|^(please|pls|plz) |^(book|schedule|cancel|move|"
    r"reschedule|change|push)\b"
)
_ORDINALS = {
    "first": 0,
    "1st": 0,
    "one": 0,
    "second": 1,
    "2nd": 1,
    "two": 1,
    "third": 2,
    "3rd": 2,
    "three": 2,
    "fourth": 3,
    "4th": 3,
    "four": 3,
    "last": -1,
    "primero": 0,
    "primera": 0,
    "segundo": 1,
    "segunda": 1,
    "tercero": 2,
    "tercera": 2,
}
# Words after "I'm" / "it's" / "call me" that are not names (issue 14: "I'm pregnant" is not a name).
_NOT_NAMES = _wordset(
    "here interested looking wondering not so just a the going trying free available new back running "
    "late sorry good fine pregnant allergic breastfeeding nursing expecting thinking curious planning "
    "hoping ready nervous scared worried excited happy sure ok okay also still currently on off in at "
    "from with your my his her their calling texting writing messaging asking due taking diabetic sick "
    "ill booked coming getting having doing feeling over under about around almost only really very super "
    "kinda kind sort totally definitely probably maybe actually literally basically honestly out home "
    "away busy stuck confused unsure considering wanting needing hungry tired fine great well alright "
    "allright cool glad this that there what who when where how why able unable afraid after before both "
    "either neither if anyway any some no yes yeah yep hi hello hey urgent important please pls asap "
    "tomorrow today tonight later soon now then again too still interested interested wonder reaching "
    "following regarding re following in interested open closed dr doctor patient client returning first "
    "second new existing male female single married engaged divorced vegan vegetarian pretty gonna going "
    "gunna bout tryna wanna lol btw and thanks thank thx ty cool perfect awesome sounds nope nah bye kk "
    "xx xo x sure good great"
)
_CALL_ME_NOT = _wordset(
    "back asap please pls now later when at tomorrow today tonight on after before if about sometime "
    "anytime soon right again instead first"
)
_NAME_WORD = r"[A-Za-z][A-Za-z'\-]{0,24}"

REPLY_YES = "Reply YES to confirm."
CANT_SHARE = (
    "Sorry, I can't share or look up anyone else's details, appointments or contact information. "
    "They're welcome to text us from their own phone, and I'm happy to help with your own appointments."
)
REFUSAL = (
    "Sorry, I can only help with your own appointments and questions about our clinic. "
    "I can't share other people's information or change how I work."
)
HONEST = (
    "Sorry, I'm an automated assistant and I don't have an answer for that. I can book, move or cancel "
    "appointments, or reply 'talk to a person' and our team will get back to you."
)


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace("\u2019", "'").replace("'", "")
    return " ".join(re.sub(r"[^a-z0-9@$:/.\- ]+", " ", text).split())


# --------------------------------------------------------------------------------------------- reading
@dataclass
class _Step:
    name: str
    arguments: dict[str, Any]
    result: dict[str, Any]

    @property
    def ok(self) -> bool:
        return "error" not in self.result


@dataclass
class _View:
    """What the policy knows in one step: the patient's new text, earlier texts, and this turn's tool results."""

    text: str  # the new messages, joined
    norm: str
    earlier_user: list[str]  # earlier patient texts, newest first, since the last completed action
    steps: list[_Step]
    tools: set[str]
    ctx: TurnContext
    all_user: list[str] = field(default_factory=list)  # every patient text in the window, oldest first
    last_assistant: str = ""  # the agent's previous reply (what the patient is answering)
    services: list[ServiceRef] = field(default_factory=list)

    def done(self, name: str) -> list[_Step]:
        return [s for s in self.steps if s.name == name]

    def last(self, name: str) -> _Step | None:
        found = self.done(name)
        return found[-1] if found else None


_COMPLETING = {"book_appointment", "cancel_appointment", "reschedule_appointment", "handoff_to_staff"}


def _read(messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]], ctx: TurnContext) -> _View:
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    first_user = last_user
    while first_user > 0 and messages[first_user - 1].role == "user":
        first_user -= 1
    new_texts = [m.content or "" for m in messages[first_user : last_user + 1]] if last_user >= 0 else []
    names: dict[str, tuple[str, dict[str, Any]]] = {}
    for message in messages:
        for call in message.tool_calls:
            try:
                args = json.loads(call.arguments or "{}")
            except json.JSONDecodeError:
                args = {}
            names[call.id] = (call.name, args if isinstance(args, dict) else {})
    steps: list[_Step] = []
    for message in messages[last_user + 1 :]:
        if message.role == "tool" and message.tool_call_id in names:
            name, args = names[message.tool_call_id]
            try:
                result = json.loads(message.content or "{}")
            except json.JSONDecodeError:
                result = {"error": "unreadable result"}
            steps.append(_Step(name, args, result if isinstance(result, dict) else {"result": result}))
    earlier: list[str] = []
    for message in reversed(messages[: max(first_user, 0)]):
        if message.role == "tool" and message.tool_call_id in names:
            name = names[message.tool_call_id][0]
            if name in _COMPLETING and '"error"' not in (message.content or ""):
                break
        if message.role == "user" and message.content:
            earlier.append(message.content)
        if len(earlier) >= 6:
            break
    last_assistant = next(
        (
            m.content or ""
            for m in reversed(messages[: max(first_user, 0)])
            if m.role == "assistant" and m.content and not m.tool_calls
        ),
        "",
    )
    all_user = [m.content or "" for m in messages if m.role == "user" and m.content]
    tool_names = {t.get("function", {}).get("name", "") for t in tools}
    text = "\n".join(new_texts)
    return _View(
        text=text,
        norm=_norm(text),
        earlier_user=earlier,
        steps=steps,
        tools=tool_names,
        ctx=ctx,
        all_user=all_user,
        last_assistant=last_assistant,
    )


# --------------------------------------------------------------------------------------------- policy
class OfflinePolicy:
    """``ChatModel`` implemented by example-based understanding and rules (see module docstring)."""

    name = NAME

    def __init__(self, services: Sequence[ServiceRef] | None = None, *, nlu: IntentClassifier | None = None) -> None:
        # Optional catalogue for matching before list_services ran; without it the policy asks the tools.
        self._services = list(services or ())
        self.nlu = nlu
        self._counter = 0
        self._understood: OrderedDict[str, Understanding] = OrderedDict()
        self._lock = threading.Lock()

    def complete(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[dict[str, Any]],
        context: TurnContext,
    ) -> ModelReply:
        view = _read(messages, tools, context)
        decision = _Decider(view, self).decide()
        if isinstance(decision, str):
            return ModelReply(content=decision, model=NAME)
        calls = []
        with self._lock:
            for name, arguments in decision:
                self._counter += 1
                calls.append(ToolCall(id=f"rule_{self._counter}", name=name, arguments=json.dumps(arguments)))
        return ModelReply(content=None, tool_calls=tuple(calls), model=NAME)

    # -- understanding
    def understand(self, text: str) -> Understanding | None:
        """The nearest-example label of ``text`` (cached), or None without an embedding model."""
        if self.nlu is None or not text.strip():
            return None
        with self._lock:
            cached = self._understood.get(text)
        if cached is not None:
            return cached
        understanding = self.nlu.classify(text)
        with self._lock:
            self._understood[text] = understanding
            while len(self._understood) > 512:
                self._understood.popitem(last=False)
        return understanding

    def ranker(self) -> Any:
        return self.nlu.similarities if self.nlu is not None else None


Decision = str | list[tuple[str, dict[str, Any]]]


def _cannot(view: _View) -> str:
    return "Sorry, I can't do that from here right now. I've noted it; reply 'talk to a person' and our team will help."


# Topic words of a knowledge question, for the article search query.
_VOCABULARY: list[ServiceRef] = [
    ServiceRef(
        -1,
        "botox",
        "neurotoxin",
        ("tox", "dysport", "xeomin", "wrinkle relaxer", "baby botox", "neurotoxin", "lip flip", "masseter"),
    ),
    ServiceRef(-2, "lip filler", "dermal filler", ("lips", "lip injections", "lip augmentation", "juvederm")),
    ServiceRef(-3, "cheek filler", "dermal filler", ("cheeks", "voluma")),
    ServiceRef(-4, "filler", "dermal filler", ("fillers", "dermal filler")),
    ServiceRef(-5, "hydrafacial", "hydrafacial", ("hydra facial", "hydro facial", "facial")),
    ServiceRef(-6, "microneedling", "microneedling", ("micro needling", "skin pen", "collagen induction")),
    ServiceRef(-7, "chemical peel", "chemical peel", ("peel",)),
    ServiceRef(-8, "laser hair removal", "laser hair removal", ("lhr", "laser", "hair removal")),
    ServiceRef(
        -10,
        "laser hair removal large area",
        "laser hair removal",
        ("full legs", "legs", "leg", "my back", "full back", "back hair", "chest hair", "my chest", "large area"),
    ),
    ServiceRef(
        -11,
        "laser hair removal small area",
        "laser hair removal",
        ("underarms", "underarm", "armpits", "upper lip", "chin", "bikini", "bikini line", "small area"),
    ),
    ServiceRef(-9, "consultation", "consultation", ("consult", "free consultation")),
]
# How each vocabulary service is written in articles (for picking sentences about it and not about others).
_WRITTEN_AS: dict[str, tuple[str, ...]] = {
    "laser hair removal large area": ("laser hair removal", "laser", "large area", "legs", "back"),
    "laser hair removal small area": ("laser hair removal", "laser", "small area", "underarms"),
    "botox": ("botox", "dysport", "neurotoxin", "xeomin", "wrinkle relaxing", "tox"),
    "lip filler": ("lip filler", "lips", "lip", "dermal filler"),
    "cheek filler": ("cheek filler", "cheeks", "cheek", "dermal filler"),
    "filler": ("filler", "fillers"),
    "hydrafacial": ("hydrafacial", "facial", "facials"),
    "microneedling": ("microneedling", "microneedle", "micro needling", "collagen"),
    "chemical peel": ("chemical peel", "peel", "peels"),
    "laser hair removal": ("laser hair removal", "laser", "hair removal"),
    "consultation": ("consultation", "consult"),
}


class _Decider:
    """One step's decision (the policy is rebuilt from the messages at every step, like a model)."""

    def __init__(self, view: _View, policy: OfflinePolicy) -> None:
        self.view = view
        self.policy = policy
        slots = view.ctx.slots
        self.pending: dict[str, Any] | None = (
            slots.get("pending_action") if isinstance(slots.get("pending_action"), dict) else None
        )
        self._intent: str | None = None
        self._intent_done = False

    # ----------------------------------------------------------------------------------- helpers
    def call(self, tool: str, /, **arguments: Any) -> Decision:
        if tool not in self.view.tools:
            return _cannot(self.view)
        return [(tool, arguments)]

    def mentions(self, text: str) -> list[str]:
        """Service names the text mentions: against the known catalogue, else the vocabulary."""
        if self.policy._services:
            return [s.name for s in find_service_mentions(text, self.policy._services)]
        catalogue = _catalogue_from_steps(self.view)
        if catalogue:
            return [s.name for s in find_service_mentions(text, catalogue)]
        found = [s.name for s in find_service_mentions(text, _VOCABULARY)]
        if any(name.startswith("laser hair removal ") for name in found):
            found = [n for n in found if n != "laser hair removal"]  # the area says which laser service
        if any(name in ("lip filler", "cheek filler") for name in found):
            found = [n for n in found if n != "filler"]
        return found

    def understanding(self, text: str | None = None) -> Understanding | None:
        return self.policy.understand(self.view.text if text is None else text)

    # ----------------------------------------------------------------------------------- the decision
    def decide(self) -> Decision:
        view = self.view
        text, norm = view.text, view.norm
        pending = self.pending

        # Text is data: attempts to redirect the assistant, or to get at other people's data, get a refusal.
        if detect_injection(text) or self._asks_for_everyones_data():
            return REFUSAL

        # Confirmation of a proposal made in an earlier turn (the loop clears it once the action ran).
        action = str(pending.get("action") or "") if pending else None
        proposed_now = view.last("propose_action")
        if pending and proposed_now is None and is_affirmative(text, action):
            return self.execute_confirmed(pending)
        executed = next((s for s in view.steps if s.name in _CONFIRMED_ACTIONS), None)
        if executed is not None:
            return self.execute_confirmed(_pending_from_step(executed))
        if proposed_now is not None:  # this turn's proposal: put it to the patient
            return self.proposal_text(proposed_now)
        if not norm.strip():
            return (
                "Hi! How can I help? I can book, move or cancel appointments and answer questions about our treatments."
            )
        if self._about_someone_else():
            return CANT_SHARE
        if is_negative(text, action) and not view.steps:
            return (
                "No problem, nothing has been booked or changed. Would another day or time work, or is there anything "
                "else?"
            )

        profile = self.profile_update()
        if profile is not None:
            return profile

        waitlist = self.waitlist_flow()  # issue 16: "put me on the waitlist" after nothing fitted
        if waitlist is not None:
            return waitlist

        intent = self.intent()
        if intent == "handoff":
            step = view.last("handoff_to_staff")
            if step is None:
                return self.call("handoff_to_staff", reason="patient asked to talk to a person", urgency="normal")
            return "Of course. I've asked our team to get back to you here as soon as they can."

        screening = self.screening_flow(intent)
        if screening is not None:
            return screening

        if intent == "symptom" or (
            possible_danger_sign(text)
            and intent not in ("book", "reschedule", "cancel", "my_appointments", "price", "choose", "give_time")
        ):
            return self.to_staff("patient describes a possible problem after a treatment")

        flow = self.flow()
        when = self.effective_when(flow)
        selection = self.pick_offered(when)

        if intent == "cancel" and flow != "book":
            return self.cancel_flow()
        if intent == "reschedule" or (flow == "reschedule" and (when is not None or selection is not None)):
            return self.reschedule_flow()
        if flow == "cancel" and intent in (None, "choose", "give_time", "smalltalk") and not view.steps:
            return self.cancel_flow()
        if intent == "my_appointments":
            return self.my_appointments()
        if intent == "hours":
            answer = self.hours(text)
            if answer is not None:
                return answer

        services = self.mentions(text)
        booking_context = (
            flow == "book"
            or bool(view.ctx.slots.get("offered_slots"))
            or bool(pending and pending.get("action") == "book")
        )
        if selection is not None and booking_context:
            return self.booking_flow(services, when, selection)
        if intent in ("book", "choose", "give_time") and (services or booking_context or when is not None):
            return self.booking_flow(services, when, selection)
        if intent == "book":
            return self.booking_flow(services, when, selection)
        if intent in ("price", "service_info", "faq") or (services and intent in (None, "smalltalk")):
            return self.answer(services)
        if intent == "menu":
            return self.menu()
        if intent == "greeting":
            return (
                "Hi! I'm the clinic's automated assistant. I can book, move or cancel appointments and answer "
                "questions. What can I do for you?"
            )
        if intent == "thanks":
            return "You're welcome! Text us anytime."
        if intent in ("confirm", "smalltalk") and is_affirmative(text):
            return "Great! Is there anything I can help with, like booking a treatment or a question about one?"
        if intent in ("choose", "give_time"):
            return self.booking_flow(services, when, selection)
        if intent == "smalltalk":
            return "Got it! Is there anything I can help with, like booking a treatment or a question about one?"
        return self.answer(services)

    # ----------------------------------------------------------------------------------- understanding
    def _keyword_intent(self) -> str | None:
        norm = self.view.norm
        if _HANDOFF.search(norm) and not re.search(rf"\bcall me (?!{'|'.join(_CALL_ME_NOT)}\b)[a-z]", norm):
            return "handoff"
        if self._logistics_question():
            return "faq"
        if _CANCEL.search(norm) and not _RESCHEDULE.search(norm):
            return "cancel"
        if _RESCHEDULE.search(norm):
            return "reschedule"
        if _MY_APPTS.search(norm) and not _BOOK.search(re.sub(r"my (appointment|appt)s?", "", norm)):
            return "my_appointments"
        if is_hours_question(self.view.text) and re.match(r"^(are|is|r|u|what|when|how|do|you|open)\b", norm):
            return "hours"
        services = self.mentions(self.view.text)
        if _PRICE.search(norm):
            return "price"
        if services and _OFFER_QUESTION.search(norm):
            return "service_info"
        if _MENU.search(norm):
            return "menu"
        if _BOOK.search(norm) or services:
            return "book"
        if _GREETING.match(norm):
            return "greeting"
        if _THANKS.match(norm):
            return "thanks"
        if is_affirmative(self.view.text):
            return "confirm"
        if parse_when(self.view.text, self.view.ctx.now, self.view.ctx.clinic_timezone) or parse_shift(self.view.text):
            return "give_time"
        return None

    def intent(self) -> str | None:
        """What the new message asks for: the NLU label reconciled with the dialogue state and hard cues."""
        if self._intent_done:
            return self._intent
        self._intent_done = True
        view, norm = self.view, self.view.norm
        keyword = self._keyword_intent()
        understood = self.understanding()
        label = understood.label if understood is not None and understood.label else keyword
        if label == "confirm" and not self.pending:
            label = keyword if keyword not in (None, "confirm") else ("confirm" if is_affirmative(view.text) else None)
        if label == "deny" and not self.pending:
            label = keyword or "smalltalk"
        if label in ("reschedule", "cancel") and not (_CHANGE_CUE.search(norm) or _CANCEL.search(norm)):
            label = keyword if keyword not in ("reschedule", "cancel") else label
        if label == "cancel" and not _CANCEL.search(norm) and keyword != "cancel":
            label = keyword
        if label in ("book", "reschedule", "cancel", "my_appointments", "service_info", "give_time", None) and (
            self._logistics_question()
        ):
            label = "faq"
        if label == "give_name":
            label = keyword  # names are read by profile_update; what is left is something else
        if keyword in ("reschedule", "cancel") and label in (
            None,
            "book",
            "give_time",
            "choose",
            "price",
            "service_info",
            "my_appointments",
            "smalltalk",
            "confirm",
        ):
            label = keyword  # "reschedule", "move my", "cancel" said outright
        if label == "reschedule" and not _RESCHEDULE.search(norm) and self.flow() == "book":
            label = "give_time"  # "could we do thursday instead?" about the slot being booked
        if (
            label == "book"
            and re.match(r"^(do|does) (you|u|yall|you guys)\b", norm)
            and not re.search(
                r"\b(opening|openings|available|availability|slots?|time|times|today|tomorrow|"
                r"mon|tue|wed|thu|fri|sat|sun)\w*\b",
                norm,
            )
        ):
            label = "service_info"  # "do you do packages for laser?" asks what is offered, not for a time
        if label == "hours" and not is_hours_question(view.text):
            label = keyword if keyword != "hours" else "faq"
        if label == "handoff" and keyword != "handoff" and not _HANDOFF.search(norm):
            label = keyword or "handoff"
        if label in (None, "smalltalk") and keyword in ("cancel", "reschedule", "book", "price", "hours", "handoff"):
            label = keyword
        self._intent = label
        return label

    def _logistics_question(self) -> bool:
        """A question about how things work ("is there a fee if I reschedule?"), not a request to do them."""
        norm = self.view.norm
        if not _LOGISTICS.search(norm):
            return False
        if _REQUEST_START.search(norm):
            return False
        return bool(_QUESTION_START.search(norm) or "?" in self.view.text and not _REQUEST_START.search(norm))

    def _asks_for_everyones_data(self) -> bool:
        norm = self.view.norm
        return bool((_OUT_OF_SCOPE.search(norm) or _EVERYONE.search(norm)) and _DATA_WORDS.search(norm))

    def _about_someone_else(self) -> bool:
        """A request for another person's details or appointments (issue 14: say plainly we can't share)."""
        norm = self.view.norm
        if _SOMEONE_ELSE.search(norm) and _OTHERS_INFO.search(norm):
            return not re.search(r"\b(recommended|referred|told me|said|says|suggested)\b", norm)
        understood = self.understanding()
        return bool(understood is not None and understood.label == "other_person" and understood.confidence >= 0.7)

    # ----------------------------------------------------------------------------------- state
    def flow(self) -> str | None:
        """The task in progress: the pending proposal, the slots offered, else the earlier messages."""
        pending = self.pending
        if pending and pending.get("action") in ("book", "reschedule", "cancel"):
            return str(pending["action"])
        for earlier in self.view.earlier_user:
            n = _norm(earlier)
            if _CANCEL.search(n) and not _RESCHEDULE.search(n) and not _logistics(n):
                return "cancel"
            if _RESCHEDULE.search(n) and not _logistics(n):
                return "reschedule"
            understood = self.policy.understand(earlier)
            label = understood.label if understood is not None else None
            if label == "reschedule" and _CHANGE_CUE.search(n):
                return "reschedule"
            if _BOOK.search(n) or self.mentions(earlier) or label == "book":
                return "book"
        if self.view.ctx.slots.get("offered_slots") or self.view.ctx.slots.get("service"):
            return "book"
        return None

    def anchor(self, flow: str | None) -> datetime | date | None:
        """What a relative time is relative to: the proposal, the appointment being moved, the day discussed."""
        ctx = self.view.ctx
        pending = self.pending
        if pending and pending.get("start"):
            try:
                return datetime.fromisoformat(str(pending["start"]))
            except ValueError:
                pass
        if flow == "reschedule":
            mine = self.view.last("get_my_appointments")
            if mine is not None:
                chosen = self.which_appointment_of(mine)
                if chosen is not None and chosen.get("start"):
                    return datetime.fromisoformat(str(chosen["start"]))
        offered = [s for s in ctx.slots.get("offered_slots") or [] if isinstance(s, dict) and s.get("start")]
        days = {str(s["start"])[:10] for s in offered}
        if len(days) == 1:
            return date.fromisoformat(days.pop())
        for earlier in self.view.earlier_user:
            when = parse_when(earlier, ctx.now, ctx.clinic_timezone)
            if when is not None and when.date is not None:
                return when.date
        return None

    def discussed_window(self) -> tuple[time, time] | None:
        for earlier in self.view.earlier_user:
            when = parse_when(earlier, self.view.ctx.now, self.view.ctx.clinic_timezone)
            if when is not None and when.window is not None:
                return when.window
        return None

    def effective_when(self, flow: str | None) -> WhenSpec | None:
        """The time the new message asks for, with relative and partial times resolved against the state."""
        ctx = self.view.ctx
        when = parse_when(self.view.text, ctx.now, ctx.clinic_timezone)
        shift = parse_shift(self.view.text)
        if shift is None and when is not None and when.date is None and (when.time or when.window):
            # "any time after 1", "how about 5pm?": on the day already discussed, when there is one (a time that
            # is one of the slots offered is a choice, read by pick_offered).
            if when.window is None and self.pick_offered(when) is not None:
                return when
            base = self.anchor(flow)
            day = base.date() if isinstance(base, datetime) else base
            if day is not None and (flow in ("book", "reschedule") or self.view.ctx.slots.get("offered_slots")):
                return WhenSpec(date=day, time=when.time, window=when.window, note="same day as discussed")
            return when
        if shift is None:
            return when
        return self._apply_shift(shift, when, flow)

    def _apply_shift(self, shift: Shift, when: WhenSpec | None, flow: str | None) -> WhenSpec | None:
        base = self.anchor(flow)
        if base is None:
            return when
        base_dt = base if isinstance(base, datetime) else None
        base_day = base.date() if isinstance(base, datetime) else base
        day = when.date if when is not None and when.date is not None else base_day + timedelta(days=shift.days)
        exact: time | None = None
        window = when.window if when is not None else None
        if when is not None and when.time is not None:
            exact = when.time
        elif base_dt is not None and (shift.same_time or shift.minutes):
            moved = base_dt + timedelta(days=0 if when is not None and when.date else shift.days, minutes=shift.minutes)
            day, exact = moved.date(), moved.time().replace(second=0, microsecond=0)
            if when is not None and when.date is not None:
                day = when.date
        elif shift.later and base_dt is not None and window is None:
            window = (base_dt.time(), DAY_END)
        elif shift.earlier and base_dt is not None and window is None:
            window = (DAY_START, base_dt.time())
        if exact is None and window is None and not shift.same_day:
            window = self.discussed_window()
        return WhenSpec(date=day, time=exact, window=window, note="relative to the conversation")

    def pick_offered(self, when: WhenSpec | None) -> dict[str, Any] | None:
        """A slot of the list offered that the message chooses ("the second one", "3", "the 2pm one", ...)."""
        offered = [s for s in self.view.ctx.slots.get("offered_slots") or [] if isinstance(s, dict)]
        if not offered or self.view.done("check_availability"):
            return None  # only a list offered in an earlier turn can be chosen from
        norm = self.view.norm
        words = norm.replace("#", " ").split()
        if when is not None and when.time is not None:
            matching = [s for s in offered if _slot_matches(s, when)]
            if matching:
                return matching[0]
        if len(words) <= 8:
            m = re.fullmatch(
                r"(?:(?:option|number|no|#)\s*)?([1-9])(?:\s*(?:please|pls|plz|thanks|works|is good|is fine))?", norm
            )
            if m and int(m.group(1)) <= len(offered):
                return offered[int(m.group(1)) - 1]
            m = re.search(r"\b(?:option|number|choice|#)\s*([1-9]|one|two|three|four)\b", norm)
            if m:
                index = int(m.group(1)) - 1 if m.group(1).isdigit() else _ORDINALS[m.group(1)]
                if 0 <= index < len(offered):
                    return offered[index]
            for word in words:
                if word in _ORDINALS and word not in {"one", "two", "three", "four"}:
                    index = _ORDINALS[word]
                    if -len(offered) <= index < len(offered):
                        return offered[index]
            if re.search(r"\b(earliest|soonest|first available|asap)\b", norm):
                return min(offered, key=lambda s: str(s.get("start")))
            if re.search(r"\b(latest)\b", norm):
                return max(offered, key=lambda s: str(s.get("start")))
        if len(words) <= 6:
            for part, (lo, hi) in (("morning", (0, 12)), ("afternoon", (12, 17)), ("evening", (17, 24))):
                if re.search(rf"\b(?:the )?{part}\b", norm):
                    matching = [s for s in offered if lo <= _slot_hour(s) < hi]
                    if matching:
                        return matching[0]
            weekday = re.search(r"\b(mon|tue|wed|thu|fri|sat|sun)[a-z]*\b", norm)
            if weekday and re.search(r"\bone\b", norm):
                matching = [s for s in offered if str(s.get("label", "")).lower().startswith(weekday.group(1))]
                if matching:
                    return matching[0]
            provider = [s for s in offered if _provider_named(norm, str(s.get("provider") or ""))]
            if provider and re.search(r"\b(with|one)\b", norm):
                return provider[0]
            if len(offered) == 1 and is_affirmative(self.view.text):
                return offered[0]
        return None

    # ----------------------------------------------------------------------------------- names
    def profile_update(self) -> Decision | None:
        view = self.view
        email = _EMAIL.search(view.text)
        name, remainder = self.name_in_message()
        if name is None and not email:
            return None
        step = view.last("update_profile")
        if step is None:
            return self.call("update_profile", name=name, email=email.group(0) if email else None)
        if not step.ok:
            return f"Sorry, I couldn't save that ({step.result.get('error')})."
        rest = remainder
        if email:
            rest = rest.replace(email.group(0), " ")
        rest = re.sub(r"^[\s,.;:!-]*(?:and\s+)?(?:my\s+)?(?:email(?:\s+is)?|e-mail)?[\s,.;:!-]*", "", rest).strip()
        if len(_norm(rest).split()) >= 2 and not re.fullmatch(r"(?:btw|thanks|thank you|here|ok)\W*", rest.lower()):
            # The name is saved; now the rest of the message ("..., I'd like to book a hydrafacial").
            return _Decider(_replace_text(view, rest), self.policy).decide_after_profile(name)
        first = f", {name.split()[0]}" if name else ""
        if self._asked_for_name():
            return f"Thanks{first}! I've added your name to the booking. Anything else I can help with?"
        return f"Thanks{first}! I've saved that. How can I help today?"

    def decide_after_profile(self, name: str | None) -> Decision:
        decision = self.decide()
        if isinstance(decision, str) and name and not decision.startswith(("Thanks", "Sorry")):
            return f"Thanks, {name.split()[0]}! {decision}"
        return decision

    def _asked_for_name(self) -> bool:
        return bool(
            re.search(r"\bwhat name\b|\byour name\b|\bname (?:for|on|should)\b", self.view.last_assistant.lower())
        )

    def name_in_message(self) -> tuple[str | None, str]:
        """The patient's name if the message gives one (and the rest of the message), else (None, text)."""
        text = self.view.text.strip()
        patterns = (
            (rf"\bmy name(?:\s+is|'s|s)\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", False),
            (rf"\b(?:name'?s|nombre es|me llamo)\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", False),
            (rf"\bcall me\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", False),
            (rf"\bput it under\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", False),
            (rf"^(?:hi|hey|hello|hola)?[\s,!.]*this is\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", False),
            (rf"^(?:hi|hey|hello|hola)?[\s,!.]*it'?s\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", True),
            (rf"^(?:hi|hey|hello|hola)?[\s,!.]*(?:i'?m|i am|soy)\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", True),
        )
        for pattern, needs_capital in patterns:
            m = re.search(pattern, text, flags=re.IGNORECASE)
            if m is None:
                continue
            name = self._clean_name(m.group(1), needs_capital=needs_capital and not self._asked_for_name())
            if name:
                return name, (text[: m.start()] + " " + text[m.end() :]).strip(" ,.!")
        if self._asked_for_name() and not self._not_a_name_reply():
            plain = re.sub(r"[^\w\s'\-]", " ", text, flags=re.UNICODE).strip()
            words = plain.split()
            if 1 <= len(words) <= 3 and all(re.fullmatch(_NAME_WORD, w) for w in words):
                name = self._clean_name(" ".join(words), needs_capital=False)
                if name and len(name.split()) == len(words):
                    return name, ""
        return None, text

    def _not_a_name_reply(self) -> bool:
        norm = self.view.norm
        if (
            _THANKS.match(norm)
            or _GREETING.match(norm)
            or is_affirmative(self.view.text)
            or is_negative(self.view.text)
        ):
            return True
        understood = self.understanding()
        return bool(
            understood is not None
            and understood.label not in (None, "give_name")
            and understood.confidence >= 0.8
            and understood.label in ("thanks", "confirm", "deny", "smalltalk", "greeting", "faq", "book", "symptom")
        )

    def _clean_name(self, raw: str, *, needs_capital: bool) -> str | None:
        words = raw.split()
        kept: list[str] = []
        for word in words:
            low = word.lower().strip("'-")
            if low in _NOT_NAMES or low in _CALL_ME_NOT or not low.isalpha() and not re.fullmatch(r"[a-z'\-]+", low):
                break
            if needs_capital and not word[:1].isupper():
                break
            if self.mentions(word) or parse_when(word, self.view.ctx.now, self.view.ctx.clinic_timezone):
                break
            kept.append(word)
        if not kept:
            return None
        return " ".join(w[:1].upper() + w[1:] for w in kept)

    # ----------------------------------------------------------------------------------- screening
    def screening_flow(self, intent: str | None) -> Decision | None:
        """Contraindications the patient mentioned: answer with the clinic's position before anything is offered.

        Booking requests go on to check_availability, which the tool executor refuses for a contraindicated
        service (its result carries the clinic's position); questions look the service up first."""
        view = self.view
        mentions = detect_conditions(view.all_user)
        if not mentions:
            return None
        services = self.mentions(view.text)
        in_play = services or [
            s
            for s in (
                (self.pending or {}).get("service_name") or (self.pending or {}).get("service"),
                view.ctx.slots.get("service"),
            )
            if s
        ]
        if intent in ("book", "choose", "give_time") and services and self.pick_offered(None) is None:
            return None  # check_availability screens it (see booking_flow)
        if not in_play:
            if intent in ("menu", "service_info", "book", "faq", "price", None):
                return self.alternatives(mentions)
            return None
        service = str(in_play[0])
        details = next((s for s in view.done("get_service_details") if s.arguments.get("service") == service), None)
        if details is None:
            return self.call("get_service_details", service=service)
        screening = details.result.get("screening")
        if screening:
            return _screening_reply(screening)
        if intent in ("faq", "service_info", "price", None) and re.search(
            r"\b(can i|is it ok|okay|safe|still)\b", view.norm
        ):
            name = details.result.get("name", service)
            return (
                f"Yes - {name} is fine to book for you, as far as our screening goes ({details.result.get('price')}). "
                "Please mention it to your provider at the visit. Would you like me to find you a time?"
            )
        return None

    def alternatives(self, mentions: dict[str, Any]) -> Decision:
        listing = self.view.last("list_services")
        if listing is None:
            return self.call("list_services")
        items = [s for s in listing.result.get("services", []) if isinstance(s, dict)]
        conditions = [c for c in mentions if c not in ("age", "allergy")]
        age = next((m.age for m in mentions.values() if m.condition == "age"), None)

        def excluded(item: dict[str, Any]) -> bool:
            not_for = [str(x) for x in item.get("not_for") or []]
            if any(c in not_for for c in conditions):
                return True
            return age is not None and any(
                x.startswith("under ") and x[6:].isdigit() and age < int(x[6:]) for x in not_for
            )

        blocked = [str(s.get("name")) for s in items if excluded(s)]
        allowed = [str(s.get("name")) for s in items if not excluded(s)]
        what = ", ".join(CONDITION_LABELS.get(c, c) for c in mentions)
        if not blocked:
            return f"Thanks for telling us about {what}. Which treatment are you interested in?"
        text = f"With {what}, we don't offer: {', '.join(blocked)}."
        if allowed:
            text += f" You can still book: {', '.join(allowed)}. Which would you like?"
        return text

    # ----------------------------------------------------------------------------------- staff
    def to_staff(self, reason: str) -> Decision:
        step = self.view.last("handoff_to_staff")
        if step is None:
            return self.call("handoff_to_staff", reason=reason, urgency="urgent")
        return (
            "I'm sorry you're dealing with that. I've alerted our team and a provider will reach out shortly. "
            "If it gets worse, or you have trouble breathing, vision changes or skin turning white or blue, call 911."
        )

    def hours(self, text: str) -> str | None:
        ctx = self.view.ctx
        if not ctx.business_hours:
            return None
        return hours_answer(
            text, now=ctx.now, tz=ctx.clinic_timezone, business_hours=ctx.business_hours, holidays=ctx.holidays
        )

    # ----------------------------------------------------------------------------------- booking
    def booking_flow(self, services: list[str], when: WhenSpec | None, selection: dict[str, Any] | None) -> Decision:
        view = self.view
        slots = view.ctx.slots
        pending = self.pending if self.pending and self.pending.get("action") == "book" else None
        service = (
            services[0]
            if services
            else slots.get("service")
            or (pending or {}).get("service_name")
            or (pending or {}).get("service")
            or self.service_from_history()
        )

        proposal = view.last("propose_action")
        if proposal is not None:
            return self.proposal_text(proposal)

        if selection is not None and service:
            return self.call(
                "propose_action",
                action="book",
                service=service,
                start=selection["start"],
                provider=selection.get("provider"),
                appointment_id=None,
            )

        if not service:
            listing = view.last("list_services")
            if listing is None:
                return self.call("list_services")
            names = ", ".join(s.get("name", "") for s in listing.result.get("services", [])[:6])
            return f"Happy to book you in! Which treatment would you like? We offer: {names}."

        if when is None:
            when = self.when_from_history()
        check = view.last("check_availability")
        if check is None:
            return self.call("check_availability", service=service, provider=None, **_when_args(when, view.ctx))
        if not check.ok:
            if check.result.get("screening"):
                return _screening_reply(check.result["screening"])
            offered = check.result.get("offered")
            if offered:
                return f"Sorry, I couldn't find that treatment. We offer: {', '.join(offered[:6])}. Which one would you like?"
            return (
                f"Sorry, I couldn't check availability just now ({check.result.get('error')}). Want me to ask our team?"
            )
        offered_slots = _within(when, [s for s in check.result.get("slots", []) if isinstance(s, dict)])
        name = check.result.get("service", service)
        if not offered_slots:
            return (
                f"Sorry, I don't see any openings for {name} in that window. "
                f"Would another day or time work, or should I ask our team to help? {WAITLIST_OFFER}"
            )
        requested = _requested_start(when)
        if requested is not None:
            exact = [s for s in offered_slots if s.get("start") == requested]
            if exact and "widened_to" not in check.result.get("searched", {}):
                return self.call(
                    "propose_action",
                    action="book",
                    service=service,
                    start=exact[0]["start"],
                    provider=exact[0].get("provider"),
                    appointment_id=None,
                )
            return (
                f"That time isn't available for {name}. Closest openings: {_format_slots(offered_slots)}. "
                f"Which works? {WAITLIST_OFFER}"
            )
        if "widened_to" in check.result.get("searched", {}):
            return (
                f"Sorry, nothing is open for {name} then. The next openings: {_format_slots(offered_slots)}. "
                f"Which works? {WAITLIST_OFFER}"
            )
        note = (
            " (that's the Friday of next week; tell me if you meant this Friday)"
            if when and when.ambiguous and "next" in (when.note or "")
            else ""
        )
        mine = preferred_note(check.result, offered_slots)  # issue 16: the provider they saw last, first
        return f"Openings for {name}{note}{mine}: {_format_slots(offered_slots)}. Which works for you?"

    def waitlist_flow(self) -> Decision | None:
        """Join the waitlist for the treatment and time discussed; None when the message is not about it."""
        norm = self.view.norm
        if asks_to_leave(norm):
            return self.call_staff_for_waitlist()
        if asks_how_waitlist(norm):
            return WAITLIST_EXPLAIN
        if not asks_to_join(norm):
            return None
        joined = self.view.last("join_waitlist")
        if joined is not None:
            return joined_reply(joined.result)
        services = self.mentions(self.view.text)
        service = services[0] if services else self.view.ctx.slots.get("service") or self.service_from_history()
        if not service:
            return "Happy to add you to the waitlist! Which treatment, and which days or times suit you?"
        when = parse_when(self.view.text, self.view.ctx.now, self.view.ctx.clinic_timezone) or self.when_from_history()
        return self.call("join_waitlist", **join_arguments(str(service), when))

    def call_staff_for_waitlist(self) -> Decision:
        step = self.view.last("handoff_to_staff")
        if step is None:
            return self.call("handoff_to_staff", reason="patient asks to leave the waitlist", urgency="low")
        return "Okay, I've asked our team to take you off the waitlist."

    def service_from_history(self) -> str | None:
        for earlier in self.view.earlier_user:
            found = self.mentions(earlier)
            if found:
                return found[0]
        return None

    def when_from_history(self) -> WhenSpec | None:
        for earlier in self.view.earlier_user:
            when = parse_when(earlier, self.view.ctx.now, self.view.ctx.clinic_timezone)
            if when is not None:
                return when
        return None

    def proposal_text(self, proposal: _Step) -> str:
        if proposal.ok:
            summary = proposal.result.get("summary", "")
            action = proposal.result.get("action")
            verb = {"book": "book", "reschedule": "move it", "cancel": "cancel", "deposit": "send the link"}.get(
                str(action), "go ahead"
            )
            return f"{summary} Reply YES to {verb}."
        if proposal.result.get("screening"):
            return _screening_reply(proposal.result["screening"])
        alternatives = proposal.result.get("alternatives") or []
        if alternatives:
            return f"Sorry, that time is no longer available. Closest openings: {_format_slots(alternatives)}. Which works?"
        return f"Sorry, I couldn't set that up: {proposal.result.get('error')}. Want to try another time?"

    # ----------------------------------------------------------------------------------- confirmed actions
    def execute_confirmed(self, pending: dict[str, Any]) -> Decision:
        view = self.view
        action = pending.get("action")
        if action == "book":
            booked = view.last("book_appointment")
            if booked is None:
                return self.call(
                    "book_appointment",
                    service=pending.get("service"),
                    start=pending.get("start"),
                    provider=pending.get("provider"),
                )
            if not booked.ok:
                return _failed_action(booked)
            result = booked.result
            ask = self.name_question()
            if result.get("status") == "pending_deposit":
                link = view.last("create_deposit_link")
                if link is None:
                    return self.call("create_deposit_link", appointment_id=result["appointment_id"])
                if link.ok:
                    return (
                        f"You're booked: {result.get('service')} with {result.get('provider')} on {result.get('label')}. "
                        f"Please pay the {link.result.get('amount')} deposit to hold it: {link.result.get('url')}{ask}"
                    )
                return (
                    f"You're booked: {result.get('service')} with {result.get('provider')} on {result.get('label')}. "
                    f"A deposit is needed to hold it; our team will send you the payment link.{ask}"
                )
            return (
                f"You're booked: {result.get('service')} with {result.get('provider')} on {result.get('label')}. "
                f"See you then!{ask}"
            )
        if action == "cancel":
            done = view.last("cancel_appointment")
            if done is None:
                return self.call("cancel_appointment", appointment_id=pending.get("appointment_id"), reason=None)
            if not done.ok:
                return _failed_action(done)
            extra = f" {done.result.get('deposit')}." if done.result.get("deposit") else ""
            return f"Done, your {done.result.get('cancelled')} is cancelled. {done.result.get('policy', '')}{extra}".strip()
        if action == "reschedule":
            done = view.last("reschedule_appointment")
            if done is None:
                return self.call(
                    "reschedule_appointment",
                    appointment_id=pending.get("appointment_id"),
                    new_start=pending.get("start"),
                )
            if not done.ok:
                return _failed_action(done)
            return (
                f"Done! Your {done.result.get('service')} is moved to {done.result.get('label')} with "
                f"{done.result.get('provider')}."
            )
        if action == "deposit":
            link = view.last("create_deposit_link")
            if link is None:
                return self.call("create_deposit_link", appointment_id=pending.get("appointment_id"))
            if not link.ok:
                return _failed_action(link)
            return f"Here's your {link.result.get('amount')} deposit link: {link.result.get('url')}"
        return "Sorry, I lost track of what we were confirming. What would you like to do?"

    def name_question(self) -> str:
        """Asked once, when a booking is made and no name is on file (issue 14)."""
        if self.view.ctx.patient_name or "update_profile" not in self.view.tools:
            return ""
        return " What name should I put on the booking?"

    # ----------------------------------------------------------------------------------- cancel / reschedule
    def which_appointment_of(self, mine: _Step) -> dict[str, Any] | None:
        appointments = [a for a in mine.result.get("appointments", []) if isinstance(a, dict)]
        if not appointments:
            return None
        return next(
            (a for t in [self.view.text, *self.view.earlier_user] if (a := self._pick_appointment(appointments, t))),
            None,
        )

    def _pick_appointment(self, appointments: list[dict[str, Any]], text: str) -> dict[str, Any] | None:
        if len(appointments) == 1:
            return appointments[0]
        mentioned = [
            a for a in appointments if find_service_mentions(text, [ServiceRef(0, str(a.get("service", "")), "", ())])
        ]
        if len(mentioned) == 1:
            return mentioned[0]
        when = parse_when(text, self.view.ctx.now, self.view.ctx.clinic_timezone)
        if when is not None and when.date is not None:
            same_day = [a for a in appointments if str(a.get("start", ""))[:10] == when.date.isoformat()]
            if len(same_day) == 1:
                return same_day[0]
        return None

    def which_appointment(self, verb: str, none_text: str) -> Decision | dict[str, Any]:
        """Shared first steps of cancel and reschedule: a pending proposal, the patient's appointments, which one.
        Returns the appointment the patient means, or the next decision (a tool call or a question)."""
        proposal = self.view.last("propose_action")
        if proposal is not None:
            return self.proposal_text(proposal)
        mine = self.view.last("get_my_appointments")
        if mine is None:
            return self.call("get_my_appointments")
        appointments = [a for a in mine.result.get("appointments", []) if isinstance(a, dict)]
        if not appointments:
            return none_text
        chosen = self.which_appointment_of(mine)
        if chosen is None:
            return f"Which appointment would you like to {verb}? {_list_appointments(appointments)}."
        return chosen

    def cancel_flow(self) -> Decision:
        chosen = self.which_appointment(
            "cancel",
            "I don't see any upcoming appointments for you. If you booked by phone, our team can help: reply 'talk "
            "to a person'.",
        )
        if not isinstance(chosen, dict):
            return chosen
        return self.call(
            "propose_action",
            action="cancel",
            service=None,
            start=None,
            provider=None,
            appointment_id=chosen["appointment_id"],
        )

    def reschedule_flow(self) -> Decision:
        chosen = self.which_appointment(
            "move", "I don't see any upcoming appointments to move. Would you like to book a new one?"
        )
        if not isinstance(chosen, dict):
            return chosen
        when = self.reschedule_when(chosen)
        selection = self.pick_offered(when)
        if selection is not None:
            return self.call(
                "propose_action",
                action="reschedule",
                service=None,
                start=selection["start"],
                provider=None,
                appointment_id=chosen["appointment_id"],
            )
        if when is None:
            return (
                f"Sure! Your {chosen.get('service')} is on {chosen.get('label')}. What day and time would work better?"
            )
        check = self.view.last("check_availability")
        if check is None:
            return self.call(
                "check_availability", service=chosen.get("service"), provider=None, **_when_args(when, self.view.ctx)
            )
        if not check.ok and check.result.get("screening"):
            return _screening_reply(check.result["screening"])
        offered = _within(when, [s for s in check.result.get("slots", []) if isinstance(s, dict)])
        if not check.ok or not offered:
            return "Sorry, I don't see openings then. Would another day work?"
        requested = _requested_start(when)
        exact = [s for s in offered if s.get("start") == requested]
        if exact:
            return self.call(
                "propose_action",
                action="reschedule",
                service=None,
                start=exact[0]["start"],
                provider=None,
                appointment_id=chosen["appointment_id"],
            )
        return f"Openings for your {chosen.get('service')}: {_format_slots(offered)}. Which works?"

    def reschedule_when(self, chosen: dict[str, Any]) -> WhenSpec | None:
        ctx = self.view.ctx
        shift = parse_shift(self.view.text)
        when = parse_when(self.view.text, ctx.now, ctx.clinic_timezone)
        start = datetime.fromisoformat(str(chosen.get("start")))
        if shift is not None:
            base_day = start.date()
            day = when.date if when is not None and when.date is not None else base_day + timedelta(days=shift.days)
            if when is not None and when.time is not None:
                return WhenSpec(date=day, time=when.time)
            if shift.same_time or shift.minutes:
                moved = start + timedelta(
                    days=0 if when is not None and when.date else shift.days, minutes=shift.minutes
                )
                return WhenSpec(date=day if when is not None and when.date else moved.date(), time=moved.time())
            if shift.later:
                return WhenSpec(date=day, window=(start.time(), DAY_END))
            if shift.earlier:
                return WhenSpec(date=day, window=(DAY_START, start.time()))
            return WhenSpec(date=day, window=when.window if when is not None else None)
        if when is None:
            return None
        # "move my Friday appointment" names the current day, not the new one.
        current = str(chosen.get("start", ""))[:10]
        if (
            when.date is not None
            and when.date.isoformat() == current
            and when.time is None
            and not ctx.slots.get("offered_slots")
        ):
            return None
        if when.date is None and when.time is not None and not ctx.slots.get("offered_slots"):
            return WhenSpec(date=start.date(), time=when.time, window=when.window)
        return when

    def my_appointments(self) -> Decision:
        mine = self.view.last("get_my_appointments")
        if mine is None:
            return self.call("get_my_appointments")
        appointments = [a for a in mine.result.get("appointments", []) if isinstance(a, dict)]
        if not appointments:
            return "You don't have any upcoming appointments with us. Would you like to book one?"
        lines = "; ".join(f"{a.get('service')} with {a.get('provider')} on {a.get('label')}" for a in appointments[:3])
        due = [a for a in appointments if a.get("deposit_due")]
        tail = f" A {due[0]['deposit_due']} deposit is still due." if due else ""
        lead = "Your next appointment" if len(appointments) == 1 else "Your upcoming appointments"
        return f"{lead}: {lines}.{tail}"

    # ----------------------------------------------------------------------------------- answers
    def answer(self, services: list[str]) -> Decision:
        """Answers to the questions of the message: prices and durations from the services, the rest from the
        knowledge base (one search per question), each quoted as its relevant sentence."""
        view = self.view
        parts = split_questions(view.text)
        questions = [p for p in parts if is_question(p)]
        parts = questions if questions and len(questions) < len(parts) else parts
        if len(parts) <= 1:
            parts = [view.text]
        plan: list[tuple[str, str]] = []  # (kind, question)
        for part in parts[:4]:
            n = _norm(part)
            if is_hours_question(part) and self.hours(part) is not None and not services:
                plan.append(("hours", part))
            elif _PRICE.search(n) and services and not re.search(r"\b(fee|fees|deposit)\b", n):
                plan.append(("price", part))
            elif (
                re.search(r"\bhow long\b.*\b(take|appointment|session|treatment|visit|is it|is a)\b", n)
                and not re.search(r"\blast|lasts\b", n)
                and services
            ):
                plan.append(("duration", part))
            elif re.search(r"\bdeposit\b", n) and services and not re.search(r"\b(refund|back|cancel)\b", n):
                plan.append(("deposit", part))
            elif (
                services
                and re.search(r"\b(do you|do u|do yall|you guys) (do|offer|have|sell)\b", n)
                and not (_extra_topic(n, services))
            ):
                plan.append(("offer", part))
            else:
                plan.append(("kb", part))
        wanted_details = (
            [s for s in services[:3]]
            if any(k != "kb" and k != "hours" for k, _ in plan) or (services and any(k == "kb" for k, _ in plan))
            else []
        )
        missing_details = [
            s
            for s in wanted_details
            if s not in {str(d.arguments.get("service")) for d in view.done("get_service_details")}
        ]
        queries = [self.kb_query(part, services) for kind, part in plan if kind == "kb"]
        searched = {str(s.arguments.get("query")) for s in view.done("search_knowledge")}
        missing_queries = [q for q in dict.fromkeys(queries) if q not in searched][:3]
        calls: list[tuple[str, dict[str, Any]]] = []
        if "get_service_details" in view.tools:
            calls += [("get_service_details", {"service": s}) for s in missing_details]
        if "search_knowledge" in view.tools:
            calls += [("search_knowledge", {"query": q}) for q in missing_queries]
        if calls:
            return calls
        return self.compose(plan, services)

    def kb_query(self, part: str, services: list[str]) -> str:
        if part == self.view.text:
            return expand_query(part)  # one question: as the patient wrote it, with the clinic's words for it
        if _clinic_topic(part):
            # A clinic policy question ("do I get it back if I cancel?"): the other parts name its subject.
            others = " ".join(w for w in _norm(self.view.text).split() if w in _POLICY_NOUNS and w not in _norm(part))
            return expand_query(f"{part} {others}".strip())
        if not services or self.mentions(part):
            subject = self.subject(part) if not services else ""
            return expand_query(f"{part} {subject}".strip())
        return expand_query(f"{services[0]} {part}")

    def subject(self, part: str) -> str:
        """What a pronoun in ``part`` refers to ("how much is it per month?" after "the glow club"): the content
        words of the message's first question."""
        if not re.search(r"\b(it|that|this|they|them|one)\b", _norm(part)):
            return ""
        first = split_questions(self.view.text)[0]
        if first == part:
            return ""
        words = [w for w in _norm(first).split() if w not in _QUESTION_WORDS and len(w) > 2]
        return " ".join(words[:4])

    def compose(self, plan: list[tuple[str, str]], services: list[str]) -> Decision:
        view = self.view
        details = {str(s.arguments.get("service")): s for s in view.done("get_service_details")}
        results: list[tuple[str, dict[str, Any]]] = []  # (query, result)
        for step in view.done("search_knowledge"):
            results.append((str(step.arguments.get("query")), step.result))
        answers: list[str] = []
        cited: list[str] = []
        said_service = False
        priced: set[tuple[str, str]] = set()
        used: list[str] = []
        for kind, part in plan:
            if kind == "hours":
                answer = self.hours(part)
                if answer:
                    answers.append(answer)
                continue
            if kind in ("price", "offer", "duration", "deposit"):
                for service in services[:3]:
                    found = details.get(service)
                    if found is None or (kind in ("price", "offer") and (service, "price") in priced):
                        continue
                    answers.append(
                        _service_sentence(
                            found, kind, with_name=len(services) > 1 or not said_service, compact=len(plan) > 1
                        )
                    )
                    said_service = True
                    if kind in ("price", "offer"):
                        priced.add((service, "price"))
                continue
            query = self.kb_query(part, services)
            about = [] if _clinic_topic(part) else services
            sentence, title, picked = self.best_sentences(part, query, results, details, about, used)
            if sentence:
                answers.append(sentence)
                used.extend(picked)
                if title:
                    cited.append(title)
        answers = [a for a in dict.fromkeys(a.strip() for a in answers) if a]
        if not answers:
            if possible_danger_sign(view.text):
                return self.to_staff("patient describes a possible problem after a treatment")
            if services and not details:
                return HONEST
            return HONEST
        reply = " ".join(answers)
        if len(answers) == 1 and cited and len(reply) + len(cited[0]) + 20 <= 320:
            reply += f" (From our guide: {cited[0]})"
        elif any(k in ("price", "offer") for k, _ in plan) and len(reply) <= 260:
            reply += " Would you like me to find you a time?"
        return reply

    def best_sentences(
        self,
        question: str,
        query: str,
        results: list[tuple[str, dict[str, Any]]],
        details: dict[str, _Step],
        services: list[str],
        used: Sequence[str] = (),
    ) -> tuple[str, str | None, list[str]]:
        """The sentence(s) of the retrieved articles that answer ``question``, the article's title, the
        candidates picked (quoted from the best-ranked article first: issue 14, no pasted articles)."""
        hits = [r for q, res in results if q == query for r in res.get("results", []) if isinstance(r, dict)]
        if not hits:
            hits = [r for _, res in results for r in res.get("results", []) if isinstance(r, dict)]
        candidates: list[str] = []
        origin: dict[str, str] = {}
        bonus: dict[str, float] = {}
        asked = _written_forms(services)
        for rank, hit in enumerate(hits[:3]):
            title = str(hit.get("title") or "")
            about_service = any(re.search(rf"(?<![a-z]){re.escape(a)}(?![a-z])", title.lower()) for a in asked)
            for sentence in _contextual_sentences(str(hit.get("snippet") or ""), title, asked):
                candidates.append(sentence)
                origin.setdefault(sentence, title)
                # The best-ranked article first; an article about the service asked about counts as naming it.
                named_here = any(re.search(rf"(?<![a-z]){re.escape(a)}(?![a-z])", sentence.lower()) for a in asked)
                bonus.setdefault(sentence, (0.2, 0.08, 0.0)[rank] + (0.35 if about_service and not named_here else 0.0))
        for service in services[:1]:
            step = details.get(service)
            if step is not None and step.ok:
                for field_name in ("prep", "description"):
                    for sentence in split_sentences(str(step.result.get(field_name) or "")):
                        tagged = f"[{service}] {sentence}"
                        candidates.append(tagged)
                        origin.setdefault(tagged, "")
        if not candidates:
            return "", None, []
        others = [
            w for name, forms in _WRITTEN_AS.items() if not any(name == s or name in s for s in services) for w in forms
        ]
        avoid = [o for o in others if o not in asked] if services else []
        focus = question
        for form in sorted(asked, key=len, reverse=True):
            focus = re.sub(rf"(?<![a-z]){re.escape(form)}(?![a-z])", " ", focus, flags=re.IGNORECASE)
        picked = pick_sentences(
            query,
            candidates,
            focus=" ".join(focus.split()) or question,
            ranker=self.policy.ranker(),
            must_mention=asked,
            avoid=avoid,
            limit=1,
            max_chars=230,
            bonus=bonus,
            exclude=used,
        )
        if not picked:
            return "", None, []
        text = " ".join(_strip_context(p) for p in picked)
        text = _direct(question, text)
        return text, origin.get(picked[0]) or None, picked

    def menu(self) -> Decision:
        listing = self.view.last("list_services")
        if listing is None:
            return self.call("list_services")
        items = [s for s in listing.result.get("services", []) if isinstance(s, dict)]
        text = "; ".join(f"{s.get('name')} {s.get('price')}" for s in items[:6])
        return f"We offer: {text}. Want details on one, or shall I find you a time?"


# --------------------------------------------------------------------------------------------- helpers
_CONFIRMED_ACTIONS = {
    "book_appointment": "book",
    "cancel_appointment": "cancel",
    "reschedule_appointment": "reschedule",
    "create_deposit_link": "deposit",
}


def _pending_from_step(step: _Step) -> dict[str, Any]:
    args = step.arguments
    return {
        "action": _CONFIRMED_ACTIONS[step.name],
        "service": args.get("service"),
        "start": args.get("start") or args.get("new_start"),
        "provider": args.get("provider"),
        "appointment_id": args.get("appointment_id"),
    }


_QUESTION_WORDS = _wordset(
    "what whats how hows when where why who which is are do does did can could will would should included "
    "include about tell the your you for with and much many"
)
_POLICY_NOUNS = _wordset(
    "deposit deposits fee fees refund cancel cancellation reschedule parking park hours insurance payment pay late"
)


def _extra_topic(norm: str, services: list[str]) -> bool:
    """Words beyond "do you offer <service>" ("packages", "for men"): a question for the knowledge base."""
    service_words = {w for s in _written_forms(services) for w in s.split()}
    rest = [
        w
        for w in norm.split()
        if w not in service_words
        and w
        not in {"do", "you", "u", "yall", "guys", "offer", "have", "sell", "any", "a", "an", "the", "there", "here"}
    ]
    return len(rest) > 0


def _clinic_topic(part: str) -> bool:
    """A question about the clinic's policies or logistics rather than about a treatment."""
    return bool(
        re.search(
            r"\b(refund|refunded|get it back|cancel|cancell?ation|reschedul\w*|late|parking|park|validate|insurance|"
            r"hsa|fsa|payment|pay with|financing|gift cards?|hours|open|close)\b",
            _norm(part),
        )
    )


def _logistics(norm: str) -> bool:
    return bool(_LOGISTICS.search(norm) and _QUESTION_START.search(norm) and not _REQUEST_START.search(norm))


def _replace_text(view: _View, text: str) -> _View:
    return _View(
        text=text,
        norm=_norm(text),
        earlier_user=view.earlier_user,
        steps=view.steps,
        tools=view.tools,
        ctx=view.ctx,
        all_user=view.all_user,
        last_assistant=view.last_assistant,
        services=view.services,
    )


def _catalogue_from_steps(view: _View) -> list[ServiceRef]:
    step = view.last("list_services")
    if step is None or not step.ok:
        return []
    return [
        ServiceRef(i, s.get("name", ""), s.get("category", ""), ())
        for i, s in enumerate(step.result.get("services", []))
        if isinstance(s, dict)
    ]


def _screening_reply(screening: dict[str, Any]) -> str:
    position = str(screening.get("position") or "").strip()
    suggest = [str(s) for s in screening.get("suggest") or [] if s]
    service = screening.get("service") or "that treatment"
    text = position or f"Based on what you've told us, we can't offer {service} right now."
    if suggest:
        text += f" I can book {' or '.join(_a(s) for s in suggest[:2])} instead - would you like that?"
    else:
        text += " Text us when that has changed and I'll find you a time, or reply 'talk to a person'."
    return text


def _a(name: str) -> str:
    lower = name.lower()
    if lower.startswith("consultation"):
        return "a free consultation"
    return f"a {name}"


def _service_sentence(step: _Step, kind: str, *, with_name: bool, compact: bool = False) -> str:
    r = step.result
    if not step.ok:
        offered = r.get("offered") or []
        return f"We don't offer {step.arguments.get('service')}" + (
            f" (we do: {', '.join(offered[:5])})." if offered else "."
        )
    name = r.get("name") or step.arguments.get("service")
    price = str(r.get("price") or "")
    if kind == "duration":
        return f"A {name} appointment takes about {r.get('duration_min')} minutes."
    if kind == "deposit":
        if r.get("deposit"):
            return f"{name} needs a {r['deposit']} deposit to book; it's applied to your treatment."
        return f"No deposit is needed to book {name}."
    variants = price_variants(str(r.get("description") or ""), price)
    extra = (" " + " ".join(v[:1].upper() + v[1:] for v in variants[:2])) if variants else ""
    deposit = f", {r['deposit']} deposit to book" if r.get("deposit") else ""
    if compact:  # one answer among several: the prices only
        variants_text = "; ".join(v.rstrip(".") for v in variants[:2])
        price_text = f"{price}; {variants_text[:1].lower()}{variants_text[1:]}" if variants_text else price
        return f"{'Yes, we offer ' if kind == 'offer' else ''}{name}: {price_text}."
    if kind == "offer":
        return f"Yes, we offer {name}: {price} ({r.get('duration_min')} min{deposit}).{extra}"
    return f"{name}: {price} ({r.get('duration_min')} min{deposit}).{extra}" if with_name else f"{price}.{extra}"


def _written_forms(services: list[str]) -> list[str]:
    forms: list[str] = []
    for service in services:
        key = service.lower()
        match = next((k for k in _WRITTEN_AS if k == key), None) or next(
            (k for k in _WRITTEN_AS if k in key or key in k), None
        )
        forms += list(_WRITTEN_AS.get(match, ())) if match else [key]
        forms.append(key)
    return list(dict.fromkeys(forms))


def _contextual_sentences(snippet: str, title: str, asked: list[str]) -> list[str]:
    """Sentences of a chunk; a sentence without a service name inherits its paragraph's service or its list's
    label (kept as a bracketed prefix that ``_strip_context`` removes before the sentence is quoted).  A list of
    short items ("We accept: Visa...; Apple Pay and Google Pay; Cash") is one sentence."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", snippet):
        context = ""
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        bullets = [line for line in lines if line.startswith(("-", "*", "•"))]
        short_list = bool(bullets) and all(len(b) <= 45 for b in bullets)
        merged: list[str] = []
        for line in lines:
            item = line.lstrip("-*• ").strip()
            if line.startswith(("-", "*", "•")) and merged and merged[-1].rstrip().endswith(":") and short_list:
                merged[-1] = f"{merged[-1]} {item.rstrip('.')}"
            elif line.startswith(("-", "*", "•")) and merged and short_list and re.search(r":\s", merged[-1]):
                merged[-1] = f"{merged[-1]}; {item.rstrip('.')}"
            elif line.startswith(("-", "*", "•")) and merged and merged[-1].rstrip().endswith(":"):
                context = merged[-1].rstrip(": ")
                merged.append(f"[{context}] {item}")
            elif line.startswith(("-", "*", "•")) and context:
                merged.append(f"[{context}] {item}")
            else:
                merged.append(line)
        context = ""
        for line in merged:
            for sentence in split_sentences(line) if not line.startswith("[") else [line]:
                named = [a for a in asked if re.search(rf"(?<![a-z]){re.escape(a)}(?![a-z])", sentence.lower())]
                label = re.match(r"^([A-Z][A-Za-z /&'-]{2,40}):\s", sentence)
                if named or label or sentence.startswith("["):
                    if label and not sentence.startswith("["):
                        context = label.group(1)
                    elif named and not sentence.startswith("["):
                        context = named[0]
                    out.append(sentence)
                elif context:
                    out.append(f"[{context}] {sentence}")
                else:
                    low = title.lower()
                    inherited = next((a for a in asked if a in low), "")
                    out.append(f"[{inherited}] {sentence}" if inherited else sentence)
    return out


def _strip_context(sentence: str) -> str:
    return re.sub(r"^\[[^\]]*\]\s*", "", sentence)


_YES_NO = re.compile(
    r"^(?:do|does) (?:you|u|yall|you guys|your|the clinic) (?:\w+ )?(?:take|accept|have|offer|sell|validate|do|bill|"
    r"expire|treat|allow|charge)\b|^(?:are|is) (?:you|your|the)\b|^do (?:your|the) \w+ (?:\w+ )?expire\b"
)
_NEGATED = re.compile(r"\b(not|no|never|dont|don't|do not|does not|doesn't|cannot|can't|won't)\b", re.IGNORECASE)


def _direct(question: str, answer: str) -> str:
    """Yes/no questions get their yes or no first (issue 14: answer the question asked in the first sentence)."""
    q = _norm(question)
    if not _YES_NO.match(q) or answer.lower().startswith(("yes", "no")):
        return answer
    asked = {w for w in q.split() if len(w) > 3} - {"there", "your", "with", "have", "take", "accept", "does", "what"}
    if not asked & set(_norm(answer).split()):
        return answer
    prefix = "No - " if _NEGATED.search(answer) else "Yes - "
    return prefix + answer[:1].lower() + answer[1:] if not answer[:2].isupper() else prefix + answer


def _failed_action(step: _Step) -> str:
    if step.result.get("screening"):
        return _screening_reply(step.result["screening"])
    alternatives = step.result.get("alternatives") or []
    if alternatives:
        return f"Sorry, that slot was just taken. Closest openings: {_format_slots(alternatives)}. Which works?"
    return f"Sorry, that didn't go through ({step.result.get('error')}). Want me to ask our team to help?"


def _list_appointments(appointments: list[dict[str, Any]]) -> str:
    return "; ".join(f"{a.get('service')} on {a.get('label')}" for a in appointments[:4])


def _when_args(when: WhenSpec | None, ctx: TurnContext) -> dict[str, Any]:
    args: dict[str, Any] = {"date_from": None, "date_to": None, "time_of_day": None, "preferred_time": None}
    if when is None:
        return args
    if when.date is not None:
        args["date_from"] = when.date.isoformat()
        args["date_to"] = (when.until or when.date).isoformat()
    if when.time is not None:
        args["preferred_time"] = when.time.strftime("%H:%M")
        if when.date is None:
            today = ctx.now.astimezone(ZoneInfo(ctx.clinic_timezone)).date()
            args["date_from"] = today.isoformat()
    elif when.window is not None:
        lo, hi = when.window
        if (lo, hi) in ((time(9), time(12)), (time(12), time(17)), (time(17), time(21))):
            args["time_of_day"] = "morning" if lo.hour < 12 else ("afternoon" if lo.hour < 17 else "evening")
        elif lo >= time(12) and lo < time(15) and hi >= time(17):
            args["time_of_day"] = "afternoon"  # "after 1": a spread of afternoon slots, filtered by _within
        else:
            args["preferred_time"] = (lo if lo > DAY_START else hi).strftime("%H:%M")
    return args


def _within(when: WhenSpec | None, slots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slots inside the asked window ("after 1", "earlier that day"); all of them when none is inside."""
    if when is None or when.window is None or when.time is not None:
        return slots
    lo, hi = when.window
    inside = [s for s in slots if lo <= _slot_time(s) < hi]
    return inside if inside else []


def _slot_time(slot: dict[str, Any]) -> time:
    try:
        return datetime.fromisoformat(str(slot.get("start"))).time()
    except ValueError:
        return time(0)


def _slot_hour(slot: dict[str, Any]) -> int:
    return _slot_time(slot).hour


def _provider_named(norm: str, provider: str) -> bool:
    words = [w for w in _norm(provider).replace("dr.", "").split() if len(w) > 2]
    return any(re.search(rf"\b{re.escape(w)}\b", norm) for w in words)


def _slot_matches(slot: dict[str, Any], when: WhenSpec | None) -> bool:
    if when is None or (when.time is None and when.date is None):
        return False
    try:
        start = datetime.fromisoformat(str(slot.get("start")))
    except ValueError:
        return False
    if when.date is not None and start.date() != when.date:
        return False
    return not (when.time is not None and start.time().replace(second=0) != when.time)


def _format_slots(slots: list[dict[str, Any]], limit: int = 4) -> str:
    parts = [f"{i}) {s.get('label')} ({s.get('provider')})" for i, s in enumerate(slots[:limit], 1)]
    return "; ".join(parts)


def _requested_start(when: WhenSpec | None) -> str | None:
    if when is None or when.time is None or when.date is None:
        return None
    return f"{when.date.isoformat()}T{when.time.strftime('%H:%M')}"
