"""The automations' rules on an in-memory store (no database): what text each due visit gets, who gets a
suppressed row and why, who waits for quiet hours to end, the footer on a first marketing text, once per dedupe
key across scans, and how long a reminder stays valid."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.audience import RecipientFacts
from domain.templates import Template
from worker.automations.rules import (
    AUTOMATION_PRIORITY,
    AutomationPlan,
    AutomationSpec,
    Created,
    DueVisit,
    SendingClinic,
    dedupe_key,
    plan_texts,
    reminder_until,
    scan,
)
from worker.outbox.rows import OutboxRow

LA = "America/Los_Angeles"
DAY = datetime(2026, 3, 2, 18, tzinfo=UTC)  # 10:00 in Los Angeles
NIGHT = datetime(2026, 3, 3, 6, tzinfo=UTC)  # 22:00 there
VISIT = datetime(2026, 3, 3, 23, tzinfo=UTC)  # Tue 3pm there
CLINIC = SendingClinic(
    name="Glow",
    phone="+14155550000",
    timezone=LA,
    policies={"marketing_cap_per_week": 2, "opt_out_footer": "Reply STOP to opt out."},
    sms="+14155550123",
)


def spec(kind: str, template: str, **settings: object) -> AutomationSpec:
    return AutomationSpec(kind, Template.parse(template), dict(settings))


def visit(appointment_id: int, consent: str = "opted_in", marketing: str = "none", **facts: object) -> DueVisit:
    return DueVisit(
        appointment_id=appointment_id,
        recipient=RecipientFacts(
            client_id=appointment_id * 10,
            phone=f"+1415555{appointment_id:04d}",
            consent_state=consent,
            marketing_consent=marketing,
            **facts,  # type: ignore[arg-type]
        ),
        name="Dana Smith",
        starts_at=VISIT,
        service_name="Botox",
        service_category="neurotoxin",
        provider_name="Dr. Lee",
    )


REMINDER = spec("reminder_24h", "Hi {first_name}, see you {when} for {service_name} at {clinic_name}.")


def test_a_due_reminder_is_rendered_for_the_patient_and_keyed_to_the_appointment_at_its_start():
    plan = plan_texts(CLINIC, REMINDER, [visit(1)], DAY)

    (text,) = plan.texts
    assert text.suppressed_because == "" and plan.waiting == 0
    row = text.row
    assert row.body.startswith("Hi Dana, see you ") and "for Botox at Glow." in row.body
    assert (row.kind, row.to_address, row.from_address, row.priority) == (
        "automation",
        "+14155550001",
        "+14155550123",
        AUTOMATION_PRIORITY,
    )
    assert row.dedupe_key == "auto:reminder_24h:appt:1:at:20260303T230000Z"  # VISIT, in UTC
    assert row.meta == {"automation": "reminder_24h", "appointment_id": 1, "marketing": False}


def test_a_text_that_names_the_visits_time_is_keyed_by_its_start_and_a_follow_up_by_the_visit_alone():
    """A reminder is the same text only for the same start: the visit moved, its key is new (due again); the
    same start, in any zone, is the same key (a rescan creates nothing).  Texts about a visit that is over (or the
    client's last one) never move with it: one per visit."""
    moved = VISIT + timedelta(days=1, hours=2)
    for kind in ("confirmation", "reminder_24h", "reminder_2h", "reminder_48h", "deposit_reminder"):
        assert dedupe_key(kind, 7, VISIT) == f"auto:{kind}:appt:7:at:20260303T230000Z"
        assert dedupe_key(kind, 7, VISIT.astimezone(ZoneInfo(LA))) == dedupe_key(kind, 7, VISIT)
        assert dedupe_key(kind, 7, moved) == f"auto:{kind}:appt:7:at:20260305T010000Z"
    for kind in ("aftercare", "review_request", "no_show_followup", "rebook_nudge", "win_back"):
        assert dedupe_key(kind, 7, VISIT) == dedupe_key(kind, 7, moved) == f"auto:{kind}:appt:7"


def test_a_recipient_we_must_not_text_gets_a_suppressed_row_with_the_reason():
    plan = plan_texts(CLINIC, REMINDER, [visit(1, consent="opted_out"), visit(2, sms_status="invalid")], DAY)

    assert [t.suppressed_because for t in plan.texts] == [
        "automation not sent: opted_out",
        "automation not sent: invalid_number",
    ]


def test_in_quiet_hours_nothing_is_created_yet():
    plan = plan_texts(CLINIC, REMINDER, [visit(1), visit(2)], NIGHT)

    assert plan.texts == [] and plan.waiting == 2


def test_marketing_needs_a_grant_and_a_first_marketing_text_carries_the_footer():
    review = spec("review_request", "Thanks {first_name}! Review us: {review_url}", review_url="https://r.example")

    plan = plan_texts(
        CLINIC, review, [visit(1), visit(2, marketing="granted"), visit(3, marketing="granted", marketing_ever=1)], DAY
    )

    first, second, third = plan.texts
    assert first.suppressed_because == "automation not sent: no_consent"
    assert second.row.body == "Thanks Dana! Review us: https://r.example Reply STOP to opt out."
    assert third.row.body == "Thanks Dana! Review us: https://r.example"  # not their first: no footer
    assert second.row.meta["marketing"] is True


def test_the_weekly_marketing_cap_suppresses():
    nudge = spec("win_back", "We miss you, {first_name}!")

    (text,) = plan_texts(CLINIC, nudge, [visit(1, marketing="granted", marketing_last_7d=2)], DAY).texts

    assert text.suppressed_because == "automation not sent: frequency_cap"


def test_aftercare_tips_follow_the_service_category():
    aftercare = spec("aftercare", "{aftercare_tip}", tips={"neurotoxin": "No lying down for 4 hours."})

    (text,) = plan_texts(CLINIC, aftercare, [visit(1)], DAY).texts

    assert text.row.body == "No lying down for 4 hours."


def test_a_reminder_stays_valid_until_the_next_shorter_one_is_due():
    day_before = spec("reminder_24h", "x", offset_hours=24)
    two_hours = spec("reminder_2h", "x", offset_hours=2)

    assert reminder_until(day_before, [day_before, two_hours]) == timedelta(hours=2)
    assert reminder_until(two_hours, [day_before, two_hours]) == timedelta(minutes=30)
    assert reminder_until(day_before, [day_before]) == timedelta(minutes=30)


@dataclass
class FakeAutomations:
    """``AutomationStore`` in memory: the visits each kind is due for, and the outbox's unique dedupe keys."""

    specs: list[AutomationSpec]
    due: dict[str, list[DueVisit]] = field(default_factory=dict)
    rows: dict[str, tuple[int, OutboxRow, str]] = field(default_factory=dict)  # dedupe key -> id, row, suppressed

    def sending_clinic(self, clinic_id: int) -> tuple[SendingClinic, list[AutomationSpec]]:
        return CLINIC, list(self.specs)

    def create_due(
        self,
        clinic_id: int,
        spec: AutomationSpec,
        specs: Sequence[AutomationSpec],
        now: datetime,
        plan: Callable[[Sequence[DueVisit]], AutomationPlan],
    ) -> tuple[Created, int] | None:
        if spec.kind not in self.due:
            return None
        planned = plan(self.due[spec.kind])
        created = Created()
        for text in planned.texts:
            assert text.row.dedupe_key is not None
            if text.row.dedupe_key in self.rows:
                continue  # the unique key: a second scan's insert is a no-op
            outbox_id = len(self.rows) + 1
            self.rows[text.row.dedupe_key] = (outbox_id, text.row, text.suppressed_because)
            if text.suppressed_because:
                created.suppressed += 1
            else:
                created.outbox_ids.append(outbox_id)
        return created, planned.waiting


def test_a_scan_creates_each_text_once_and_counts_what_it_suppressed_and_left_waiting():
    review = spec("review_request", "Review us, {first_name}")
    store = FakeAutomations(
        [REMINDER, review, spec("unknown_kind", "x")],
        due={"reminder_24h": [visit(1), visit(2, consent="opted_out")], "review_request": [visit(3)]},
    )

    first = scan(store, 1, DAY)
    again = scan(store, 1, DAY + timedelta(minutes=5))

    assert first.outbox_ids == [1] and first.suppressed == 2  # opted out; no marketing grant
    assert again.outbox_ids == [] and again.suppressed == 0
    assert sorted(store.rows) == [
        "auto:reminder_24h:appt:1:at:20260303T230000Z",
        "auto:reminder_24h:appt:2:at:20260303T230000Z",
        "auto:review_request:appt:3",
    ]


def test_a_scan_in_quiet_hours_creates_nothing_and_the_morning_scan_does():
    store = FakeAutomations([REMINDER], due={"reminder_24h": [visit(1)]})

    night = scan(store, 1, NIGHT)
    morning = scan(store, 1, NIGHT + timedelta(hours=10))

    assert (night.outbox_ids, night.waiting) == ([], 1)
    assert (morning.outbox_ids, morning.waiting) == ([1], 0)
