"""One step's decision: the layers put together, and the order in which they are asked."""

from __future__ import annotations

import re

from domain.agent_state import is_affirmative, is_negative
from domain.offline_policy.answers import _Answers
from domain.offline_policy.booking import _Booking
from domain.offline_policy.changes import _Changes
from domain.offline_policy.view import _CONFIRMED_ACTIONS, Decision, _pending_from_step, _replace_text
from domain.offline_policy.vocabulary import _EMAIL, CANT_SHARE, REFUSAL, _norm
from domain.safety import detect_injection, possible_danger_sign


class _Decider(_Booking, _Changes, _Answers):
    """One step's decision (the policy is rebuilt from the messages at every step, like a model)."""

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
