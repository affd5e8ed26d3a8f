"""Contraindication screening: what the patient says about themselves, against the clinic's rules."""

from __future__ import annotations

import pytest

from domain.screening import Contraindication, conditions_not_for, detect_conditions, parse_contraindications, screen

RULES = parse_contraindications(
    [
        {"condition": "pregnancy", "position": "Not while pregnant.", "suggest": ["hydrafacial", "consultation"]},
        {"condition": "breastfeeding", "position": "Not while pregnant.", "suggest": ["hydrafacial"]},
        {"condition": "cold_sore", "position": "We reschedule an active cold sore."},
        {"condition": "blood_thinners", "position": "Consultation first.", "suggest": ["consultation"]},
        {"condition": "accutane", "position": "Six months off Accutane."},
        {"condition": "allergy", "position": "Provider review first.", "ingredients": ["lidocaine", "hyaluronic acid"]},
        {"condition": "age", "position": "18 and older.", "min_age": 18},
        {"condition": "made_up", "position": "ignored"},
    ]
)


@pytest.mark.parametrize(
    ("texts", "conditions"),
    [
        (["hi im pregnant, can i get botox next week?"], {"pregnancy"}),
        (["I'm 5 months pregnant. do u do lip filler?"], {"pregnancy"}),
        (["expecting my first baby in june!"], {"pregnancy"}),
        (["estoy embarazada, puedo hacerme botox?"], {"pregnancy"}),
        (["currently breastfeeding my 3 month old"], {"breastfeeding"}),
        (["nursing mom here 🤱"], {"breastfeeding"}),
        (["oh wait I have a cold sore on my lip right now"], {"cold_sore"}),
        (["I take warfarin every day"], {"blood_thinners"}),
        (["can i get botox if i'm on eliquis?"], {"blood_thinners"}),
        (["on accutane rn"], {"accutane"}),
        (["I'm allergic to lidocaine."], {"allergy"}),
        (["im 16 can i get lip filler"], {"age"}),
        (["i have a rash all over my cheeks right now"], {"skin_lesion"}),
    ],
)
def test_conditions_the_patient_states(texts: list[str], conditions: set[str]) -> None:
    assert set(detect_conditions(texts)) == conditions


@pytest.mark.parametrize(
    "texts",
    [
        ["my sister is pregnant and wants botox"],
        ["I get cold sores a lot, is lip filler ok?"],
        ["I'm not pregnant"],
        ["I'm 5 months pregnant", "actually I had the baby in january, I'm not breastfeeding"],
        ["I finished accutane 2 years ago"],
        ["I'm not allergic to anything"],
        ["I'm 32 and thinking about baby botox"],
        ["the nursing home is near you?"],
        ["can I come back in two weeks"],
    ],
)
def test_statements_that_do_not_screen(texts: list[str]) -> None:
    assert {c for c in detect_conditions(texts) if c != "age"} == set()
    ages = [m.age for m in detect_conditions(texts).values() if m.condition == "age"]
    assert all(age >= 18 for age in ages if age is not None)


def test_a_later_statement_revokes_an_earlier_one_and_vice_versa() -> None:
    assert "pregnancy" not in detect_conditions(["I'm pregnant", "update: not pregnant anymore"])
    assert "pregnancy" in detect_conditions(["I'm not pregnant", "wait, I just found out I'm pregnant!!"])


def test_recent_accutane_still_counts() -> None:
    assert "accutane" in detect_conditions(["stopped accutane 2 months ago"])


def test_screen_hits_the_clinics_rules_with_its_wording() -> None:
    result = screen("Botox", RULES, detect_conditions(["I'm pregnant and breastfeeding my first"]))
    assert result.blocked and result.conditions == ("pregnancy", "breastfeeding")
    assert result.position == "Not while pregnant."  # the clinic's wording, once
    assert result.suggest == ("hydrafacial", "consultation")


def test_age_and_allergy_rules_read_their_parameters() -> None:
    assert screen("Filler", RULES, detect_conditions(["im 16"])).blocked
    assert not screen("Filler", RULES, detect_conditions(["im 19"])).blocked
    assert screen("Filler", RULES, detect_conditions(["I'm allergic to lidocaine"])).blocked
    assert not screen("Filler", RULES, detect_conditions(["I'm allergic to latex"])).blocked


def test_no_rules_no_screening() -> None:
    assert not screen("Consultation", (), detect_conditions(["I'm pregnant"])).blocked


def test_unknown_conditions_in_the_data_are_ignored_and_the_listing_is_compact() -> None:
    assert all(isinstance(r, Contraindication) for r in RULES) and len(RULES) == 7
    assert conditions_not_for(RULES) == [
        "pregnancy",
        "breastfeeding",
        "cold_sore",
        "blood_thinners",
        "accutane",
        "allergy",
        "under 18",
    ]
