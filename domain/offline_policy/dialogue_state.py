"""Dialogue state: the time discussed, moved or kept, and what earlier turns said."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from domain.offline_policy.understanding import _Understanding
from domain.timeparse import DAY_END, DAY_START, Shift, WhenSpec, parse_shift, parse_when


class _DialogueState(_Understanding):
    """The dialogue state read against the message: the time discussed, moved or kept, and what earlier turns said."""

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
