"""The declarative clinic file: validation, normalisation, diff and export round trip (no database)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from medspa.settings import REPO_ROOT
from worker.clinic_config import (
    ClinicConfigError,
    desired_state,
    diff_states,
    dump_yaml,
    load_clinic_file,
    parse_clinic,
    state_to_file,
)

EXAMPLE = REPO_ROOT / "clinics" / "example-new-clinic.yaml"
GLOW = REPO_ROOT / "clinics" / "glow-medspa.yaml"


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def error_for(data: dict[str, Any]) -> str:
    with pytest.raises(ClinicConfigError) as caught:
        parse_clinic(data, "x.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_example_file_is_valid_and_normalised() -> None:
    spec = load_clinic_file(EXAMPLE)
    assert spec.phone_numbers.front_desk == "+15035550100"  # "(503) 555-0100" parsed by libphonenumber
    assert spec.phone_numbers.on_call == "+15035550199"
    assert [n.number for n in spec.phone_numbers.sms] == ["+15035550123"]
    assert spec.business_hours["mon"] == [] and spec.business_hours["thu"] == [["10:00", "20:00"]]
    lena = next(p for p in spec.providers if p.slug == "lena-brandt")
    assert lena.working_hours["thu"] == [["10:00", "14:00"], ["15:00", "20:00"]]
    state = desired_state(spec)
    assert state.clinic["public_key"] == "willow-skin-public"
    assert state.clinic["holidays"] == ["2026-11-26", "2026-12-25", "2027-01-01"]
    assert state.clinic["policies"]["quiet_hours"] == {"start": "08:00", "end": "21:00"}
    assert state.providers["hana-okafor"]["skills"] == ["consultation", "neurotoxin"]
    assert state.automations["review_request"]["enabled"] is False


def test_glow_file_describes_the_seeded_demo_clinic() -> None:
    state = desired_state(load_clinic_file(GLOW))
    assert state.clinic["timezone"] == "America/Los_Angeles"
    assert list(state.sms_numbers) == ["+14155550123"]
    assert len(state.services) == 9 and state.services["neurotoxin"]["price_cents"] == 1400
    assert set(state.providers) == {"maya-chen", "jordan-lee", "sofia-ramirez", "priya-nair"}
    assert state.providers["priya-nair"]["working_hours"]["mon"] == [["09:00", "13:00"], ["14:00", "17:00"]]
    assert len(state.automations) == 9


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(timezone="Mars/Olympus_Mons"), "unknown time zone 'Mars/Olympus_Mons'"),
        (lambda d: d["phone_numbers"].update(sms=["+1 555 555 0123"]), "invalid phone number '+1 555 555 0123'"),
        (lambda d: d["phone_numbers"].update(front_desk="call us"), "invalid phone number 'call us'"),
        (lambda d: d["providers"][0].update(skills=["lasers"]), "unknown service 'lasers'"),
        (lambda d: d["services"][0].update(price=12), "services[neurotoxin].price: unknown field"),
        (lambda d: d["services"][1].update(duration_min=0), "services[signature-facial].duration_min"),
        (lambda d: d["business_hours"].update(tue=["18:00-10:00"]), "business_hours: tue: time range 18:00-10:00 ends"),
        (lambda d: d["policies"].update(quiet_hours={"start": "21:00", "end": "08:00"}), "must start before it ends"),
        (lambda d: d["business_hours"].update(tue=["10:00-14:00", "13:00-18:00"]), "overlap"),
        (lambda d: d["business_hours"].update(funday=["10:00-14:00"]), "unknown day 'funday'"),
        (lambda d: d.update(slug="Willow Skin"), "invalid slug"),
        (lambda d: d.update(chat_origins=["https://willowskin.example/chat"]), "invalid chat origin"),
        (lambda d: d["automations"]["confirmation"].update(template="Hi {first name"), "template"),
        (lambda d: d["services"].append(copy.deepcopy(d["services"][0])), "service 'neurotoxin' is listed twice"),
        (lambda d: d.pop("phone_numbers"), "phone_numbers: required field is missing"),
        (
            lambda d: d["services"][0]["contraindications"].append({"condition": "flu", "position": "no"}),
            "services[neurotoxin].contraindications[3].condition",
        ),
        (
            lambda d: d["services"][0]["contraindications"].append({"condition": "age", "position": "18+"}),
            "condition age needs min_age",
        ),
        (
            lambda d: d["services"][0]["contraindications"][0].update(suggest=["nap"]),
            "contraindication pregnancy suggests unknown service 'nap'",
        ),
    ],
)
def test_bad_input_is_one_clear_line(edit: Any, expected: str) -> None:
    data = example()
    edit(data)
    assert expected in error_for(data)


def test_unquoted_yaml_times_are_read_as_times() -> None:
    # YAML 1.1 turns an unquoted 21:00 into the integer 1260.
    data = yaml.safe_load("start: 08:00\nend: 21:00\nhours: [[09:00, 21:00]]\n")
    assert data["end"] == 1260
    spec = example()
    spec["policies"]["quiet_hours"] = {"start": data["start"], "end": data["end"]}
    spec["business_hours"] = {"mon": data["hours"]}
    state = desired_state(parse_clinic(spec))
    assert state.clinic["policies"]["quiet_hours"] == {"start": "08:00", "end": "21:00"}
    assert state.clinic["business_hours"]["mon"] == [["09:00", "21:00"]]


def test_same_state_has_no_diff_and_a_price_edit_is_one_line() -> None:
    current = desired_state(parse_clinic(example()))
    current.clinic_id = 7
    assert diff_states(current, desired_state(parse_clinic(example()))) == []
    edited = example()
    edited["services"][2]["price_cents"] = 9900
    changes = diff_states(current, desired_state(parse_clinic(edited)))
    assert [c.line() for c in changes] == ["~ service dermaplaning: price_cents 9500 -> 9900"]


def test_diff_lines_for_hours_policies_removals_and_numbers() -> None:
    current = desired_state(parse_clinic(example()))
    edited = example()
    edited["business_hours"]["sat"] = ["10:00-14:00"]
    edited["policies"]["late_cancel_fee_cents"] = 5000
    edited["providers"] = edited["providers"][:1]
    del edited["automations"]["confirmation"]
    edited["phone_numbers"]["sms"] = ["+1 503 555 0177"]
    lines = [c.line() for c in diff_states(current, desired_state(parse_clinic(edited)))]
    assert lines == [
        "~ clinic willow-skin: business_hours sat 09:00-15:00 -> 10:00-14:00",
        "~ clinic willow-skin: policies.late_cancel_fee_cents 4000 -> 5000",
        "+ sms number +15035550177",
        "- sms number +15035550123: stops routing to this clinic",
        "- provider lena-brandt: deactivated (history kept)",
        "~ automation confirmation: enabled true -> false (not in the file)",
    ]


def test_new_clinic_diff_lists_what_will_be_created() -> None:
    lines = [c.line() for c in diff_states(None, desired_state(parse_clinic(example())))]
    assert lines[0] == "+ clinic willow-skin: Willow Skin Studio, America/Los_Angeles"
    assert "+ service dermaplaning: Dermaplaning, $95.00" in lines
    assert "+ provider lena-brandt: Lena Brandt, skills: consultation, dermaplaning, signature-facial" in lines


@pytest.mark.parametrize("path", [EXAMPLE, GLOW], ids=["example", "glow"])
def test_export_round_trips(path: Path, tmp_path: Path) -> None:
    state = desired_state(load_clinic_file(path))
    exported = tmp_path / "exported.yaml"
    exported.write_text(dump_yaml(state_to_file(state)))
    again = desired_state(load_clinic_file(exported))
    assert diff_states(again, state) == []
    assert again.clinic == state.clinic and again.services == state.services


def test_contraindications_are_clinic_data_per_service() -> None:
    glow = desired_state(load_clinic_file(GLOW))
    rules = {c["condition"]: c for c in glow.services["neurotoxin"]["contraindications"]}
    assert {"pregnancy", "breastfeeding", "blood_thinners", "allergy", "age"} <= set(rules)
    assert rules["age"]["min_age"] == 18 and "hydrafacial" in rules["pregnancy"]["suggest"]
    assert "pregnant" in rules["pregnancy"]["position"]
    assert glow.services["consultation"]["contraindications"] == []
    # the stored form leaves empty parameters out (what services.contraindications holds)
    assert "ingredients" not in rules["pregnancy"] and rules["allergy"]["ingredients"]


def test_a_contraindication_edit_is_one_diff_line() -> None:
    current = desired_state(load_clinic_file(GLOW))
    data = yaml.safe_load(GLOW.read_text())
    data["services"][0]["contraindications"][0] = {"condition": "pregnancy", "position": "Not during pregnancy."}
    changes = diff_states(current, desired_state(parse_clinic(data)))
    assert [c.subject for c in changes] == ["service neurotoxin"]
    assert changes[0].detail.startswith("contraindications ")


def test_the_file_schema_knows_exactly_the_conditions_the_screen_reads() -> None:
    from domain.screening import CONDITIONS
    from worker.clinic_config import SCREENING_CONDITIONS, ContraindicationSpec

    assert tuple(SCREENING_CONDITIONS) == CONDITIONS
    assert set(ContraindicationSpec.model_fields["condition"].annotation.__args__) == set(CONDITIONS)


def test_missed_call_and_vision_settings_are_stored_only_when_written():
    plain = desired_state(parse_clinic(example())).clinic["policies"]
    assert "missed_calls" not in plain and "vision_model" not in plain
    data = example()
    data.setdefault("policies", {})["missed_calls"] = {"forward_during_hours": True, "forward_to": "(415) 555-0111"}
    data["policies"]["vision_model"] = False
    policies = desired_state(parse_clinic(data)).clinic["policies"]
    assert policies["missed_calls"]["forward_to"] == "+14155550111"
    assert policies["missed_calls"]["daily_cap"] == 1 and policies["vision_model"] is False
    data["policies"]["missed_calls"] = {"daily_cap": 50}
    with pytest.raises(ClinicConfigError, match="missed_calls.daily_cap"):
        parse_clinic(data, "x.yaml")


def test_the_console_edits_the_settings_part_of_the_file_by_the_same_rules() -> None:
    from worker.clinic_config import parse_settings, settings_changes, settings_values

    settings = parse_settings({"business_hours": {"mon": "09:00-12:00, 13:00-17:00"}, "holidays": ["2031-12-25"]})
    values = settings_values(settings)
    assert values["business_hours"]["mon"] == [["09:00", "12:00"], ["13:00", "17:00"]]
    assert values["business_hours"]["sun"] == [] and values["holidays"] == ["2031-12-25"]
    assert values["policies"]["quiet_hours"] == {"start": "08:00", "end": "21:00"}, "the file's defaults"
    with pytest.raises(ClinicConfigError, match="policies.deposit_hold_minutes"):
        parse_settings({"policies": {"deposit_hold_minutes": 0}})
    with pytest.raises(ClinicConfigError, match="slug: unknown field"):
        parse_settings({"slug": "not-editable-here"})
    edited = settings_values(parse_settings({**values, "holidays": []}))
    lines = [c.line() for c in settings_changes("glow", values, edited)]
    assert lines == ['~ clinic glow: holidays ["2031-12-25"] -> []']


def test_the_older_late_fee_name_is_read_as_the_fee_and_never_kept_beside_it() -> None:
    data = example()
    data["policies"].pop("late_cancel_fee_cents", None)
    data["policies"]["late_fee_cents"] = 2500
    policies = desired_state(parse_clinic(data, "x.yaml")).clinic["policies"]
    assert policies["late_cancel_fee_cents"] == 2500 and "late_fee_cents" not in policies

    data["policies"]["late_cancel_fee_cents"] = 1000
    assert "write only late_cancel_fee_cents" in error_for(data)
