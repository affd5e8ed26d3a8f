"""The offline dialogue policy: a deterministic rules engine behind the ``ChatModel`` interface.

Why: with no LLM configured the product must still book, answer and hand off,
and it must do so through exactly the same path as the LLM — the same tools,
the same confirmation rule, the same audit.  So this "model" reads the
messages (the patient's texts, earlier turns, and the tool results of this
turn) plus the TurnContext, and answers with tool calls or a final text, one
step at a time, the way a function-calling LLM would.

It is honest about being rules: when it cannot tell what the patient wants it
says so and offers the options it has and a person.  Text in a message is
data, never an instruction: an "ignore your instructions" message gets a plain
refusal and no tool call.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from domain.agent_state import is_affirmative, is_negative
from domain.catalog import ServiceRef, find_service_mentions
from domain.ports import ChatMessage, ModelReply, ToolCall, TurnContext
from domain.safety import detect_injection
from domain.timeparse import WhenSpec, parse_when

NAME = "offline-rules"

# --------------------------------------------------------------------------------------------- vocabulary
_CANCEL = re.compile(r"\b(cancel|cancell?ing|cancelar|cancela|anular)\b")
_RESCHEDULE = re.compile(
    r"\b(reschedul\w*|re schedul\w*|move (my|the|it)|change (my|the) (appointment|appt|booking|time|cita)|"
    r"push (it|my appointment) back|different (time|day)|another (time|day)|reprogramar|cambiar (mi|la) cita)\b"
)
_MY_APPTS = re.compile(
    r"\b(my (appointments?|appts?|bookings?|visits?)|when is my|do i have (an? )?(appointment|appt|booking)|"
    r"what time is my|mis citas|mi cita)\b"
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
_PRICE = re.compile(r"\b(cost|costs|price|prices|pricing|how much|charge|fee|fees|\$|cuanto|precio)\b")
_OFFER_QUESTION = re.compile(
    r"\b(do you (do|offer|have)|do u (do|offer)|what is|whats|tell me about|info on|details)\b"
)
_MENU = re.compile(
    r"\b(what (services|treatments) |services|treatments|menu|what do you (do|offer)|what can i (get|book))\b"
)
_GREETING = re.compile(r"^(hi|hello|hey|hiya|good (morning|afternoon|evening)|hola|buenas|yo)\b[\s!.,]*$")
_THANKS = re.compile(r"^(thanks|thank you|thx|ty|gracias|ok thanks|great thanks|perfect thanks|cool)\b[\s!.,]*$")
_NAME = re.compile(r"\b(?:my name is|this is|i am|im|call me)\s+([a-z][a-z'\-]+(?:\s+[a-z][a-z'\-]+)?)\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_OUT_OF_SCOPE = re.compile(
    r"\b(other|another|all|every|any|your)\s+(\w+\s+)?(clients|patients|customers|people|users|members)\b"
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
    "earliest": 0,
    "primero": 0,
    "segundo": 1,
    "tercero": 2,
}
_NOT_NAMES = frozenset(
    {
        "here",
        "interested",
        "looking",
        "wondering",
        "not",
        "so",
        "just",
        "a",
        "the",
        "going",
        "trying",
        "free",
        "available",
        "new",
        "back",
        "running",
        "late",
        "sorry",
        "good",
        "fine",
    }
)

REPLY_YES = "Reply YES to confirm."


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
    tool_names = {t.get("function", {}).get("name", "") for t in tools}
    text = "\n".join(new_texts)
    return _View(text=text, norm=_norm(text), earlier_user=earlier, steps=steps, tools=tool_names, ctx=ctx)


# --------------------------------------------------------------------------------------------- policy
class OfflinePolicy:
    """``ChatModel`` implemented by rules (see module docstring)."""

    name = NAME

    def __init__(self, services: Sequence[ServiceRef] | None = None) -> None:
        # Optional catalogue for matching before list_services ran; without it the policy asks the tools.
        self._services = list(services or ())
        self._counter = 0

    def complete(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[dict[str, Any]],
        context: TurnContext,
    ) -> ModelReply:
        view = _read(messages, tools, context)
        decision = _decide(view, self._services)
        if isinstance(decision, str):
            return ModelReply(content=decision, model=NAME)
        calls = []
        for name, arguments in decision:
            self._counter += 1
            calls.append(ToolCall(id=f"rule_{self._counter}", name=name, arguments=json.dumps(arguments)))
        return ModelReply(content=None, tool_calls=tuple(calls), model=NAME)


Decision = str | list[tuple[str, dict[str, Any]]]


def _call(view: _View, tool: str, /, **arguments: Any) -> Decision:
    if tool not in view.tools:
        return _cannot(view)
    return [(tool, arguments)]


def _cannot(view: _View) -> str:
    return "Sorry, I can't do that from here right now. I've noted it; reply 'talk to a person' and our team will help."


def _decide(view: _View, known_services: list[ServiceRef]) -> Decision:
    text, norm = view.text, view.norm
    slots = view.ctx.slots
    pending = slots.get("pending_action") if isinstance(slots.get("pending_action"), dict) else None

    # Text is data: attempts to redirect the assistant get a refusal and no tool call.
    if (
        detect_injection(text)
        or _OUT_OF_SCOPE.search(norm)
        and re.search(
            r"\b(phone|number|numbers|email|info|information|appointments|names|address|data|records|details)\b", norm
        )
    ):
        return (
            "Sorry, I can only help with your own appointments and questions about our clinic. "
            "I can't share other people's information or change how I work."
        )

    # Confirmation of a proposal made in an earlier turn (the loop clears it once the action ran).
    if pending and is_affirmative(text):
        return _execute_confirmed(view, pending)
    executed = next((s for s in view.steps if s.name in _CONFIRMED_ACTIONS), None)
    if executed is not None:
        return _execute_confirmed(view, _pending_from_step(executed))
    if not norm.strip():
        return "Hi! How can I help? I can book, move or cancel appointments and answer questions about our treatments."
    if is_negative(text) and not view.steps:
        return (
            "No problem, nothing has been booked or changed. Would another day or time work, or is there anything else?"
        )

    if _HANDOFF.search(norm):
        step = view.last("handoff_to_staff")
        if step is None:
            return _call(view, "handoff_to_staff", reason="patient asked to talk to a person", urgency="normal")
        return "Of course. I've asked our team to get back to you here as soon as they can."

    if _CANCEL.search(norm) and not _RESCHEDULE.search(norm):
        return _cancel_flow(view)
    if _RESCHEDULE.search(norm):
        return _reschedule_flow(view)
    if _MY_APPTS.search(norm) and not _BOOK.search(norm.replace("my appointment", "")):
        return _my_appointments(view)

    profile = _profile_update(view)
    if profile is not None:
        return profile

    services_mentioned = _mentions(view, known_services, text)
    wants_price = bool(_PRICE.search(norm))
    offering_question = bool(_OFFER_QUESTION.search(norm))
    when = parse_when(text, view.ctx.now, view.ctx.clinic_timezone)
    selection = _pick_offered(view, when)

    # Continuing an earlier flow: the patient answers with a time, a choice or a service only.
    flow = _earlier_flow(view)
    if flow == "reschedule" and (when or selection is not None):
        return _reschedule_flow(view)
    if flow == "cancel" and not services_mentioned and not when and not view.steps:
        return _cancel_flow(view)

    if (
        services_mentioned
        and (wants_price or (offering_question and when is None))
        and not (when and _BOOK.search(norm))
    ):
        return _service_info(view, services_mentioned, wants_price)
    booking_words = bool(_BOOK.search(norm))
    if (
        services_mentioned
        or selection is not None
        or (when and (flow == "book" or slots.get("service") or slots.get("offered_slots")))
        or (booking_words and (when or flow == "book"))
    ):
        return _booking_flow(view, services_mentioned, when, selection)
    if booking_words and not _is_question_about_policy(norm):
        return _booking_flow(view, services_mentioned, when, selection)
    if _MENU.search(norm) or (wants_price and not services_mentioned):
        if wants_price and view.last("search_knowledge") is None and not _MENU.search(norm):
            return _faq(view)
        return _menu(view)
    if _GREETING.match(norm):
        return "Hi! I'm the clinic's automated assistant. I can book, move or cancel appointments and answer questions. What can I do for you?"
    if _THANKS.match(norm):
        return "You're welcome! Text us anytime."
    if is_affirmative(text):
        return "Great! Is there anything I can help with, like booking a treatment or a question about one?"
    return _faq(view)


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


def _is_question_about_policy(norm: str) -> bool:
    return bool(re.search(r"\b(policy|policies|refund|deposit|late|fee|parking|hours|open|close|pay)\b", norm))


def _earlier_flow(view: _View) -> str | None:
    for earlier in view.earlier_user:
        n = _norm(earlier)
        if _CANCEL.search(n) and not _RESCHEDULE.search(n):
            return "cancel"
        if _RESCHEDULE.search(n):
            return "reschedule"
        if _BOOK.search(n) or _mentions(view, [], earlier):
            return "book"
    if view.ctx.slots.get("offered_slots") or view.ctx.slots.get("service"):
        return "book"
    return None


def _mentions(view: _View, known: list[ServiceRef], text: str) -> list[str]:
    """Service names the text mentions: against the known catalogue, else the raw phrase for the tools to match."""
    if known:
        return [s.name for s in find_service_mentions(text, known)]
    catalogue = _catalogue_from_steps(view)
    if catalogue:
        return [s.name for s in find_service_mentions(text, catalogue)]
    # Without a catalogue, use the category vocabulary (botox, filler, facial...) to find a phrase.
    found = find_service_mentions(text, _VOCABULARY)
    return [s.name for s in found]


_VOCABULARY: list[ServiceRef] = [
    ServiceRef(-1, "botox", "neurotoxin", ("tox", "dysport", "xeomin", "wrinkle relaxer", "baby botox", "neurotoxin")),
    ServiceRef(-2, "lip filler", "dermal filler", ("lips", "lip injections", "lip augmentation", "juvederm")),
    ServiceRef(-3, "cheek filler", "dermal filler", ("cheeks", "voluma")),
    ServiceRef(-4, "filler", "dermal filler", ("fillers", "dermal filler")),
    ServiceRef(-5, "hydrafacial", "hydrafacial", ("hydra facial", "hydro facial", "facial")),
    ServiceRef(-6, "microneedling", "microneedling", ("micro needling", "skin pen", "collagen induction")),
    ServiceRef(-7, "chemical peel", "chemical peel", ("peel",)),
    ServiceRef(-8, "laser hair removal", "laser hair removal", ("lhr", "laser", "hair removal")),
    ServiceRef(-9, "consultation", "consultation", ("consult", "free consultation")),
]


def _catalogue_from_steps(view: _View) -> list[ServiceRef]:
    step = view.last("list_services")
    if step is None or not step.ok:
        return []
    return [
        ServiceRef(i, s.get("name", ""), s.get("category", ""), ())
        for i, s in enumerate(step.result.get("services", []))
        if isinstance(s, dict)
    ]


# --------------------------------------------------------------------------------------------- flows
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
    if when.window is not None:
        lo = when.window[0]
        args["time_of_day"] = "morning" if lo.hour < 12 else ("afternoon" if lo.hour < 17 else "evening")
    return args


def _slot_matches(slot: dict[str, Any], when: WhenSpec | None, tz: str) -> bool:
    if when is None or (when.time is None and when.date is None):
        return False
    try:
        start = datetime.fromisoformat(str(slot.get("start")))
    except ValueError:
        return False
    if when.date is not None and start.date() != when.date:
        return False
    return not (when.time is not None and start.time().replace(second=0) != when.time)


def _pick_offered(view: _View, when: WhenSpec | None) -> dict[str, Any] | None:
    offered = [s for s in view.ctx.slots.get("offered_slots") or [] if isinstance(s, dict)]
    if not offered:
        return None
    words = view.norm.split()
    if len(words) <= 6:
        for word in words:
            if word in _ORDINALS and (word not in {"one", "two", "three", "four"} or "the" in words):
                index = _ORDINALS[word]
                if -len(offered) <= index < len(offered):
                    return offered[index]
    if when is not None and (when.time is not None):
        matching = [s for s in offered if _slot_matches(s, when, view.ctx.clinic_timezone)]
        if matching:
            return matching[0]
    return None


def _format_slots(slots: list[dict[str, Any]], limit: int = 4) -> str:
    parts = [f"{s.get('label')} ({s.get('provider')})" for s in slots[:limit]]
    return "; ".join(parts)


def _requested_start(when: WhenSpec | None, args: dict[str, Any]) -> str | None:
    if when is None or when.time is None or not args.get("date_from") or when.date is None:
        return None
    return f"{when.date.isoformat()}T{when.time.strftime('%H:%M')}"


def _service_from_history(view: _View) -> str | None:
    for earlier in view.earlier_user:
        found = _mentions(view, [], earlier)
        if found:
            return found[0]
    return None


def _when_from_history(view: _View) -> WhenSpec | None:
    for earlier in view.earlier_user:
        when = parse_when(earlier, view.ctx.now, view.ctx.clinic_timezone)
        if when is not None:
            return when
    return None


def _booking_flow(
    view: _View, services: list[str], when: WhenSpec | None, selection: dict[str, Any] | None
) -> Decision:
    slots = view.ctx.slots
    service = services[0] if services else slots.get("service") or _service_from_history(view)

    proposal = view.last("propose_action")
    if proposal is not None:
        return _proposal_text(view, proposal)

    if selection is not None and service:
        return _call(
            view,
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
            return _call(view, "list_services")
        names = ", ".join(s.get("name", "") for s in listing.result.get("services", [])[:6])
        return f"Happy to book you in! Which treatment would you like? We offer: {names}."

    if when is None:
        when = _when_from_history(view)
    check = view.last("check_availability")
    if check is None:
        args = _when_args(when, view.ctx)
        return _call(view, "check_availability", service=service, provider=None, **args)
    if not check.ok:
        offered = check.result.get("offered")
        if offered:
            return (
                f"Sorry, I couldn't find that treatment. We offer: {', '.join(offered[:6])}. Which one would you like?"
            )
        return f"Sorry, I couldn't check availability just now ({check.result.get('error')}). Want me to ask our team?"
    offered_slots = [s for s in check.result.get("slots", []) if isinstance(s, dict)]
    if not offered_slots:
        return (
            f"Sorry, I don't see any openings for {check.result.get('service', service)} in that window. "
            "Would another week work, or should I ask our team to help?"
        )
    requested = _requested_start(when, _when_args(when, view.ctx))
    if requested is not None:
        exact = [s for s in offered_slots if s.get("start") == requested]
        if exact and "widened_to" not in check.result.get("searched", {}):
            return _call(
                view,
                "propose_action",
                action="book",
                service=service,
                start=exact[0]["start"],
                provider=exact[0].get("provider"),
                appointment_id=None,
            )
        return (
            f"That time isn't available for {check.result.get('service', service)}. Closest openings: "
            f"{_format_slots(offered_slots)}. Which works?"
        )
    if "widened_to" in check.result.get("searched", {}):
        return (
            f"Sorry, nothing is open for {check.result.get('service', service)} then. The next openings: "
            f"{_format_slots(offered_slots)}. Which works?"
        )
    note = (
        " (that's the Friday of next week; tell me if you meant this Friday)"
        if when and when.ambiguous and "next" in (when.note or "")
        else ""
    )
    return f"Openings for {check.result.get('service', service)}{note}: {_format_slots(offered_slots)}. Which works for you?"


def _proposal_text(view: _View, proposal: _Step) -> str:
    if proposal.ok:
        summary = proposal.result.get("summary", "")
        action = proposal.result.get("action")
        verb = {"book": "book", "reschedule": "move it", "cancel": "cancel", "deposit": "send the link"}.get(
            str(action), "go ahead"
        )
        return f"{summary} Reply YES to {verb}."
    alternatives = proposal.result.get("alternatives") or []
    if alternatives:
        return f"Sorry, that time is no longer available. Closest openings: {_format_slots(alternatives)}. Which works?"
    return f"Sorry, I couldn't set that up: {proposal.result.get('error')}. Want to try another time?"


def _execute_confirmed(view: _View, pending: dict[str, Any]) -> Decision:
    action = pending.get("action")
    if action == "book":
        booked = view.last("book_appointment")
        if booked is None:
            return _call(
                view,
                "book_appointment",
                service=pending.get("service"),
                start=pending.get("start"),
                provider=pending.get("provider"),
            )
        if not booked.ok:
            return _failed_action(booked)
        result = booked.result
        if result.get("status") == "pending_deposit":
            link = view.last("create_deposit_link")
            if link is None:
                return _call(view, "create_deposit_link", appointment_id=result["appointment_id"])
            if link.ok:
                return (
                    f"You're booked: {result.get('service')} with {result.get('provider')} on {result.get('label')}. "
                    f"Please pay the {link.result.get('amount')} deposit to hold it: {link.result.get('url')}"
                )
            return (
                f"You're booked: {result.get('service')} with {result.get('provider')} on {result.get('label')}. "
                "A deposit is needed to hold it; our team will send you the payment link."
            )
        return f"You're booked: {result.get('service')} with {result.get('provider')} on {result.get('label')}. See you then!"
    if action == "cancel":
        done = view.last("cancel_appointment")
        if done is None:
            return _call(view, "cancel_appointment", appointment_id=pending.get("appointment_id"), reason=None)
        if not done.ok:
            return _failed_action(done)
        extra = f" {done.result.get('deposit')}." if done.result.get("deposit") else ""
        return f"Done, your {done.result.get('cancelled')} is cancelled. {done.result.get('policy', '')}{extra}".strip()
    if action == "reschedule":
        done = view.last("reschedule_appointment")
        if done is None:
            return _call(
                view,
                "reschedule_appointment",
                appointment_id=pending.get("appointment_id"),
                new_start=pending.get("start"),
            )
        if not done.ok:
            return _failed_action(done)
        return f"Done! Your {done.result.get('service')} is moved to {done.result.get('label')} with {done.result.get('provider')}."
    if action == "deposit":
        link = view.last("create_deposit_link")
        if link is None:
            return _call(view, "create_deposit_link", appointment_id=pending.get("appointment_id"))
        if not link.ok:
            return _failed_action(link)
        return f"Here's your {link.result.get('amount')} deposit link: {link.result.get('url')}"
    return "Sorry, I lost track of what we were confirming. What would you like to do?"


def _failed_action(step: _Step) -> str:
    alternatives = step.result.get("alternatives") or []
    if alternatives:
        return f"Sorry, that slot was just taken. Closest openings: {_format_slots(alternatives)}. Which works?"
    return f"Sorry, that didn't go through ({step.result.get('error')}). Want me to ask our team to help?"


def _pick_appointment(view: _View, appointments: list[dict[str, Any]], text: str) -> dict[str, Any] | None:
    if len(appointments) == 1:
        return appointments[0]
    mentioned = [
        a for a in appointments if find_service_mentions(text, [ServiceRef(0, str(a.get("service", "")), "", ())])
    ]
    if len(mentioned) == 1:
        return mentioned[0]
    when = parse_when(text, view.ctx.now, view.ctx.clinic_timezone)
    if when is not None and when.date is not None:
        same_day = [a for a in appointments if str(a.get("start", ""))[:10] == when.date.isoformat()]
        if len(same_day) == 1:
            return same_day[0]
    return None


def _list_appointments(appointments: list[dict[str, Any]]) -> str:
    return "; ".join(f"{a.get('service')} on {a.get('label')}" for a in appointments[:4])


def _which_appointment(view: _View, verb: str, none_text: str) -> Decision | dict[str, Any]:
    """Shared first steps of cancel and reschedule: a pending proposal, the patient's appointments, which one.
    Returns the appointment the patient means, or the next decision (a tool call or a question)."""
    proposal = view.last("propose_action")
    if proposal is not None:
        return _proposal_text(view, proposal)
    mine = view.last("get_my_appointments")
    if mine is None:
        return _call(view, "get_my_appointments")
    appointments = [a for a in mine.result.get("appointments", []) if isinstance(a, dict)]
    if not appointments:
        return none_text
    chosen = next((a for t in [view.text, *view.earlier_user] if (a := _pick_appointment(view, appointments, t))), None)
    if chosen is None:
        return f"Which appointment would you like to {verb}? {_list_appointments(appointments)}."
    return chosen


def _cancel_flow(view: _View) -> Decision:
    chosen = _which_appointment(
        view,
        "cancel",
        "I don't see any upcoming appointments for you. If you booked by phone, our team can help: reply 'talk to a person'.",
    )
    if not isinstance(chosen, dict):
        return chosen
    return _call(
        view,
        "propose_action",
        action="cancel",
        service=None,
        start=None,
        provider=None,
        appointment_id=chosen["appointment_id"],
    )


def _reschedule_flow(view: _View) -> Decision:
    chosen = _which_appointment(
        view, "move", "I don't see any upcoming appointments to move. Would you like to book a new one?"
    )
    if not isinstance(chosen, dict):
        return chosen
    # The new time: from this message, else from the slots offered earlier in this flow.
    when = _reschedule_when(view, chosen)
    selection = _pick_offered(view, when)
    if selection is not None:
        return _call(
            view,
            "propose_action",
            action="reschedule",
            service=None,
            start=selection["start"],
            provider=None,
            appointment_id=chosen["appointment_id"],
        )
    if when is None:
        return f"Sure! Your {chosen.get('service')} is on {chosen.get('label')}. What day and time would work better?"
    check = view.last("check_availability")
    if check is None:
        return _call(
            view, "check_availability", service=chosen.get("service"), provider=None, **_when_args(when, view.ctx)
        )
    offered = [s for s in check.result.get("slots", []) if isinstance(s, dict)]
    if not check.ok or not offered:
        return "Sorry, I don't see openings then. Would another day work?"
    requested = _requested_start(when, _when_args(when, view.ctx))
    exact = [s for s in offered if s.get("start") == requested]
    if exact:
        return _call(
            view,
            "propose_action",
            action="reschedule",
            service=None,
            start=exact[0]["start"],
            provider=None,
            appointment_id=chosen["appointment_id"],
        )
    return f"Openings for your {chosen.get('service')}: {_format_slots(offered)}. Which works?"


def _reschedule_when(view: _View, chosen: dict[str, Any]) -> WhenSpec | None:
    when = parse_when(view.text, view.ctx.now, view.ctx.clinic_timezone)
    if when is None:
        return None
    # "move my Friday appointment" names the current day, not the new one.
    current = str(chosen.get("start", ""))[:10]
    if (
        when.date is not None
        and when.date.isoformat() == current
        and when.time is None
        and not view.ctx.slots.get("offered_slots")
    ):
        return None
    return when


def _my_appointments(view: _View) -> Decision:
    mine = view.last("get_my_appointments")
    if mine is None:
        return _call(view, "get_my_appointments")
    appointments = [a for a in mine.result.get("appointments", []) if isinstance(a, dict)]
    if not appointments:
        return "You don't have any upcoming appointments with us. Would you like to book one?"
    lines = "; ".join(f"{a.get('service')} with {a.get('provider')} on {a.get('label')}" for a in appointments[:3])
    due = [a for a in appointments if a.get("deposit_due")]
    tail = f" A {due[0]['deposit_due']} deposit is still due." if due else ""
    return f"Your upcoming appointments: {lines}.{tail}"


def _service_info(view: _View, services: list[str], wants_price: bool) -> Decision:
    done = view.done("get_service_details")
    asked = {str(s.arguments.get("service")) for s in done}
    missing = [s for s in services[:3] if s not in asked]
    if missing:
        return (
            [("get_service_details", {"service": s}) for s in missing]
            if "get_service_details" in view.tools
            else _cannot(view)
        )
    parts: list[str] = []
    for step in done:
        r = step.result
        if not step.ok:
            offered = r.get("offered") or []
            parts.append(
                f"We don't offer {step.arguments.get('service')}"
                + (f" (we do: {', '.join(offered[:5])})" if offered else "")
                + "."
            )
            continue
        deposit = f", {r['deposit']} deposit to book" if r.get("deposit") else ""
        parts.append(f"Yes, we offer {r.get('name')}: {r.get('price')} ({r.get('duration_min')} min{deposit}).")
    return " ".join(parts) + " Would you like me to find you a time?"


def _menu(view: _View) -> Decision:
    listing = view.last("list_services")
    if listing is None:
        return _call(view, "list_services")
    items = [s for s in listing.result.get("services", []) if isinstance(s, dict)]
    text = "; ".join(f"{s.get('name')} {s.get('price')}" for s in items[:6])
    return f"We offer: {text}. Want details on one, or shall I find you a time?"


def _faq(view: _View) -> Decision:
    search = view.last("search_knowledge")
    if search is None:
        return _call(view, "search_knowledge", query=view.text[:300])
    results = [r for r in search.result.get("results", []) if isinstance(r, dict)]
    if not results:
        return (
            "Sorry, I'm an automated assistant and I don't have an answer for that. I can book, move or cancel "
            "appointments, or reply 'talk to a person' and our team will get back to you."
        )
    top = results[0]
    snippet = _first_sentences(str(top.get("snippet", "")), 230)
    return f"{snippet} (From our guide: {top.get('title')})"


def _first_sentences(text: str, limit: int) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    out = ""
    for sentence in sentences:
        if out and len(out) + 1 + len(sentence) > limit:
            break
        out = f"{out} {sentence}".strip()
        if len(out) >= limit * 0.6:
            break
    return out if len(out) <= limit else out[: limit - 3].rsplit(" ", 1)[0] + "..."


def _profile_update(view: _View) -> Decision | None:
    email = _EMAIL.search(view.text)
    match = _NAME.search(view.norm)
    name = None
    if match and match.group(1).split()[0] not in _NOT_NAMES:
        name = " ".join(w.capitalize() for w in match.group(1).split())
        if name.split()[-1].lower() in _NOT_NAMES:
            name = name.split()[0]
    if not email and not (name and re.match(r"^(my name is|this is|im|i am)\b", view.norm)):
        return None
    step = view.last("update_profile")
    if step is None:
        return _call(view, "update_profile", name=name, email=email.group(0) if email else None)
    if not step.ok:
        return f"Sorry, I couldn't save that ({step.result.get('error')})."
    who = f", {name}" if name else ""
    return f"Thanks{who}! I've saved that. How can I help today?"
