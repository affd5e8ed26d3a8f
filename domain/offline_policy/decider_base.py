"""The common part of one step's decision (the layers below build on it)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from domain.agent_state import is_affirmative
from domain.answering import hours_answer
from domain.catalog import ServiceRef, find_service_mentions
from domain.nlu import Understanding
from domain.offline_policy.replies import _failure_reply
from domain.offline_policy.slots import _provider_named, _slot_hour, _slot_matches
from domain.offline_policy.view import Decision, _cannot, _catalogue_from_steps, _Step, _View
from domain.offline_policy.vocabulary import _ORDINALS, _VOCABULARY
from domain.timeparse import WhenSpec, parse_when

if TYPE_CHECKING:
    from domain.offline_policy.policy import OfflinePolicy


class _DeciderBase:
    """One step's decision, the common part: the view, the policy, the pending action, and the helpers every layer uses."""

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

    def menu(self) -> Decision:
        listing = self.view.last("list_services")
        if listing is None:
            return self.call("list_services")
        items = [s for s in listing.result.get("services", []) if isinstance(s, dict)]
        text = "; ".join(f"{s.get('name')} {s.get('price')}" for s in items[:6])
        return f"We offer: {text}. Want details on one, or shall I find you a time?"

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

    def proposal_text(self, proposal: _Step) -> str:
        if proposal.ok:
            summary = proposal.result.get("summary", "")
            action = proposal.result.get("action")
            verb = {"book": "book", "reschedule": "move it", "cancel": "cancel", "deposit": "send the link"}.get(
                str(action), "go ahead"
            )
            return f"{summary} Reply YES to {verb}."
        return _failure_reply(
            proposal.result,
            "that time is no longer available",
            f"Sorry, I couldn't set that up: {proposal.result.get('error')}. Want to try another time?",
        )

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
