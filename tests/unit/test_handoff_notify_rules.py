"""The handoff notification rules (domain/handoff_notify.py): batching, staff quiet hours, urgent bypass, who is
texted, and what the text says (no patient data)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.handoff_notify import NotifyPolicy, PendingAlert, QuietHours, parse_hhmm, plan, sms_recipients, summary

LA = "America/Los_Angeles"
ONCALL = "+14155550199"
NIGHT = QuietHours(time(21), time(7))


def _policy(quiet: QuietHours | None = NIGHT, window: int = 120) -> NotifyPolicy:
    return NotifyPolicy((ONCALL, "+14155550142"), ("desk@glow.example",), quiet, timedelta(seconds=window), LA, ONCALL)


def _local(hour: int, minute: int = 0, day: int = 10) -> datetime:
    return datetime(2031, 3, day, hour, minute, tzinfo=ZoneInfo(LA)).astimezone(UTC)


def _alert(i: int, at: datetime, urgency: str = "normal") -> PendingAlert:
    return PendingAlert(i, 100 + i, urgency, at)


def test_alerts_within_the_window_of_the_first_go_out_together():
    t0 = _local(14)
    pending = [_alert(1, t0), _alert(2, t0 + timedelta(seconds=40)), _alert(3, t0 + timedelta(seconds=100))]
    waiting = plan(pending, _policy(), t0 + timedelta(seconds=101))
    assert waiting.send == () and waiting.wait_until == t0 + timedelta(seconds=120) and waiting.why == "batching"
    due = plan(pending, _policy(), t0 + timedelta(seconds=120))
    assert [a.id for a in due.send] == [1, 2, 3]
    assert plan([], _policy(), t0).send == () and plan([], _policy(), t0).wait_until is None


def test_quiet_hours_hold_normal_alerts_until_they_end_and_urgent_ones_go_at_once():
    night = _local(23, 30)
    pending = [_alert(1, _local(22)), _alert(2, night)]
    held = plan(pending, _policy(), night)
    assert held.send == () and held.wait_until == _local(7, 0, day=11) and held.why == "quiet hours"
    early = plan(pending, _policy(), _local(3, 0, day=11))
    assert early.wait_until == _local(7, 0, day=11)
    assert [a.id for a in plan(pending, _policy(), _local(7, 0, day=11)).send] == [1, 2]
    urgent = plan([*pending, _alert(3, night, "emergency")], _policy(), night)
    assert [a.id for a in urgent.send] == [3] and urgent.why == "urgent", "urgent alone, at once; the rest wait"
    assert plan(pending, _policy(quiet=None), night).send != ()


def test_quiet_hours_within_one_day_and_parsing():
    lunch = QuietHours(parse_hhmm("12:00"), parse_hhmm("13:30"))
    assert lunch.contains(time(12, 0)) and lunch.contains(time(13, 29)) and not lunch.contains(time(13, 30))
    assert not QuietHours(time(9), time(9)).contains(time(9))
    for bad in ("24:00", "7:00", "ab:cd", ""):
        with pytest.raises(ValueError):
            parse_hhmm(bad)


def test_the_turns_own_page_is_not_repeated_for_urgent_alerts():
    at = _local(10)
    assert sms_recipients((_alert(1, at, "urgent"),), _policy()) == ("+14155550142",)
    assert sms_recipients((_alert(1, at),), _policy()) == (ONCALL, "+14155550142")


def test_the_text_carries_counts_and_ids_never_patient_data():
    at = _local(10)
    one = summary("Glow", (_alert(1, at, "urgent"),), "https://console.example/clinics/1/inbox")
    assert one == "Glow: new urgent handoff (conversation 101). Open the inbox: https://console.example/clinics/1/inbox"
    many = summary("Glow", tuple(_alert(i, at, "urgent" if i == 2 else "normal") for i in range(1, 4)), "u")
    assert many.startswith("Glow: 3 new handoffs, 1 urgent (101, 102, 103).")
