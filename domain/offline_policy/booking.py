"""The booking flow: screening, alternatives, the proposal and the confirmed action."""

from __future__ import annotations

import re
from typing import Any

from domain.offline_policy.dialogue_state import _DialogueState
from domain.offline_policy.replies import _failed_action, _format_slots, _screening_reply
from domain.offline_policy.slots import _requested_start, _when_args, _within
from domain.offline_policy.view import Decision, _Step
from domain.screening import CONDITION_LABELS, detect_conditions
from domain.timeparse import WhenSpec, parse_when
from domain.waitlist_dialogue import EXPLAIN as WAITLIST_EXPLAIN
from domain.waitlist_dialogue import OFFER as WAITLIST_OFFER
from domain.waitlist_dialogue import asks_how as asks_how_waitlist
from domain.waitlist_dialogue import asks_to_join, asks_to_leave, join_arguments, joined_reply, preferred_note


class _Booking(_DialogueState):
    """Booking: screening, alternatives, the proposal and the confirmed action."""

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

    # ----------------------------------------------------------------------------------- confirmed actions
    def execute_confirmed(self, pending: dict[str, Any]) -> Decision:
        view = self.view
        action = pending.get("action")
        if action == "book":
            booked = self.done_or_call(
                "book_appointment",
                service=pending.get("service"),
                start=pending.get("start"),
                provider=pending.get("provider"),
            )
            if not isinstance(booked, _Step):
                return booked
            result = booked.result
            ask = self.name_question()
            head = f"You're booked: {result.get('service')} with {result.get('provider')} on {result.get('label')}."
            if result.get("status") != "pending_deposit":
                return f"{head} See you then!{ask}"
            link = view.last("create_deposit_link")
            if link is None:
                return self.call("create_deposit_link", appointment_id=result["appointment_id"])
            if link.ok:
                return f"{head} Please pay the {link.result.get('amount')} deposit to hold it: {link.result.get('url')}{ask}"
            return f"{head} A deposit is needed to hold it; our team will send you the payment link.{ask}"
        if action == "cancel":
            done = self.done_or_call("cancel_appointment", appointment_id=pending.get("appointment_id"), reason=None)
            if not isinstance(done, _Step):
                return done
            extra = f" {done.result.get('deposit')}." if done.result.get("deposit") else ""
            return f"Done, your {done.result.get('cancelled')} is cancelled. {done.result.get('policy', '')}{extra}".strip()
        if action == "reschedule":
            done = self.done_or_call(
                "reschedule_appointment", appointment_id=pending.get("appointment_id"), new_start=pending.get("start")
            )
            if not isinstance(done, _Step):
                return done
            return (
                f"Done! Your {done.result.get('service')} is moved to {done.result.get('label')} with "
                f"{done.result.get('provider')}."
            )
        if action == "deposit":
            made = self.done_or_call("create_deposit_link", appointment_id=pending.get("appointment_id"))
            if not isinstance(made, _Step):
                return made
            return f"Here's your {made.result.get('amount')} deposit link: {made.result.get('url')}"
        return "Sorry, I lost track of what we were confirming. What would you like to do?"

    def done_or_call(self, tool: str, /, **arguments: Any) -> _Step | Decision:
        """This turn's successful ``tool`` step; else the call that makes it (not made yet) or the failure's reply."""
        step = self.view.last(tool)
        if step is None:
            return self.call(tool, **arguments)
        return step if step.ok else _failed_action(step)

    def name_question(self) -> str:
        """Asked once, when a booking is made and no name is on file (issue 14)."""
        if self.view.ctx.patient_name or "update_profile" not in self.view.tools:
            return ""
        return " What name should I put on the booking?"
