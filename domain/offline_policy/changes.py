"""Cancel and reschedule flows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from domain.offline_policy.dialogue_state import _DialogueState
from domain.offline_policy.replies import _format_slots, _list_appointments, _screening_reply
from domain.offline_policy.slots import _requested_start, _when_args, _within
from domain.offline_policy.view import Decision
from domain.timeparse import DAY_END, DAY_START, WhenSpec, parse_shift, parse_when


class _Changes(_DialogueState):
    """Cancel and reschedule: which appointment, and the new time."""

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
