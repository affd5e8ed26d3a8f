"""The system prompt carries what a model needs to act like the offline policy does: date and time zone, hours,
holidays, the patient's name, the conversation state and its known details (as JSON).  The CI fake model reads it
back (``tests/support/openai_policy.py``), so this also pins the contract between the two."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.availability import parse_hours
from domain.conversation import ClinicProfile, PatientProfile
from domain.prompt import build_system_prompt, describe_hours
from tests.support.openai_policy import context_from_prompt

CLINIC = ClinicProfile(
    id=1,
    name="Glow MedSpa",
    timezone="America/Los_Angeles",
    phone="+14155550100",
    address="2150 Fillmore Street",
    business_hours={"mon": [["09:00", "19:00"]], "sat": [["09:00", "15:00"]], "sun": []},
    holidays=["2026-12-25", {"date": "2027-01-01"}],
    policies={"cancellation_window_hours": 24},
)


def test_a_model_can_read_the_facts_back_from_the_prompt() -> None:
    slots = {"pending_action": {"action": "book", "start": "2027-03-04T15:00"}, "offered_slots": [{"label": "x"}]}
    prompt = build_system_prompt(
        CLINIC,
        PatientProfile(client_id=1, name="Ana Ruiz", email=None, consent_state="opted_in"),
        now=datetime(2027, 3, 2, 18, 0, tzinfo=UTC),
        agent_state="confirming",
        slots={**slots, "_internal": 1},
        channel="sms",
    )
    context = context_from_prompt(prompt)
    assert context.clinic_timezone == "America/Los_Angeles"
    assert context.now.isoformat() == "2027-03-02T10:00:00-08:00"
    assert context.agent_state == "confirming" and context.slots == slots  # JSON, internal keys left out
    assert context.patient_name == "Ana Ruiz"
    assert context.holidays == ("2026-12-25", "2027-01-01")
    assert context.business_hours["mon"] == ["09:00-19:00"] and context.business_hours["sun"] == []
    assert "Screening:" in prompt and "first sentence" in prompt


def test_an_unknown_patient_and_no_details_read_back_as_none() -> None:
    prompt = build_system_prompt(
        CLINIC,
        PatientProfile(client_id=1, name=None, email=None, consent_state="opted_in"),
        now=datetime(2027, 3, 2, 18, 0, tzinfo=UTC),
        agent_state="idle",
        slots={},
        channel="chat",
    )
    context = context_from_prompt(prompt)
    assert context.patient_name is None and context.slots == {} and context.agent_state == "idle"


def test_the_hours_the_prompt_states_are_the_hours_availability_books():
    # Shapes the clinic's hours JSON may take: the prompt reads them as slot-finding does (domain.availability),
    # so the model never quotes a day closed that offers slots, or a split day as one range.
    hours = {"sat": {"start": "10:00", "end": "14:00"}, "mon": ["09:00-12:00", "13:00-17:00"], "2": ["09:00", "18:00"]}
    assert describe_hours(hours) == (
        "Mon 09:00-12:00, 13:00-17:00; Tue closed; Wed 09:00-18:00; Thu closed; Fri closed; Sat 10:00-14:00; Sun closed"
    )
    assert {h.weekday for h in parse_hours(hours)} == {0, 2, 5}
