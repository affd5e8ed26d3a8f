"""Service matching: names, synonyms, category synonyms, misspellings."""

from __future__ import annotations

import pytest

from domain.catalog import ServiceRef, category_of, find_service_mentions, match_service

BOTOX = ServiceRef(1, "Botox", "Neurotoxins")
DYSPORT = ServiceRef(2, "Dysport", "Neurotoxins")
LIP = ServiceRef(3, "Lip Filler", "Dermal Fillers")
CHEEK = ServiceRef(4, "Cheek Filler", "Dermal Fillers")
HYDRA = ServiceRef(5, "Signature HydraFacial", "Facials")
MICRO = ServiceRef(6, "Microneedling", "Skin")
PEEL = ServiceRef(7, "Chemical Peel", "Skin")
LHR = ServiceRef(8, "Laser Hair Removal - Small Area", "Laser")
CONSULT = ServiceRef(9, "Consultation", "Consult")
RESURFACING = ServiceRef(10, "Laser Resurfacing", "Laser")
SERVICES = [BOTOX, DYSPORT, LIP, CHEEK, HYDRA, MICRO, PEEL, LHR, CONSULT, RESURFACING]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("botox", BOTOX),
        ("Can I get BOTOX on friday?", BOTOX),
        ("tox", BOTOX),
        ("wrinkle relaxer", BOTOX),
        ("neurotoxin", BOTOX),
        ("dysport", DYSPORT),
        ("xeomin please", BOTOX),  # category only: first neurotoxin
        ("lip filler", LIP),
        ("my lips", LIP),
        ("cheek filler", CHEEK),
        ("juvederm", LIP),
        ("restylane", LIP),
        ("filler", LIP),
        ("hydrafacial", HYDRA),
        ("hydra facial", HYDRA),
        ("a facial", HYDRA),
        ("microneedling", MICRO),
        ("micro needling", MICRO),
        ("collagen induction therapy", MICRO),
        ("peel", PEEL),
        ("chemical peels", PEEL),
        ("laser hair removal", LHR),
        ("lhr on my legs", LHR),
        ("laser", LHR),
        ("laser resurfacing", RESURFACING),
        ("consult", CONSULT),
        ("free consultation?", CONSULT),
    ],
)
def test_match_service(text: str, expected: ServiceRef) -> None:
    assert match_service(text, SERVICES) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("botex", BOTOX),
        ("hydrafacal", HYDRA),
        ("micro-neddling", MICRO),
        ("microneedleing", MICRO),
        ("juvaderm", LIP),
        ("restalyne", LIP),
        ("disport", DYSPORT),
        ("consultaton", CONSULT),
    ],
)
def test_misspellings_match_by_fuzzy(text: str, expected: ServiceRef) -> None:
    assert match_service(text, SERVICES) == expected


@pytest.mark.parametrize(
    "text",
    ["see you later", "I'm all filled up", "hello", "what are your hours", "", "can I bring my kid", "racial"],
)
def test_no_match(text: str) -> None:
    assert match_service(text, SERVICES) is None


def test_several_mentions_each_once() -> None:
    found = find_service_mentions("I want botox and lip filler, maybe a hydrafacial", SERVICES)
    assert set(found) == {BOTOX, LIP, HYDRA}
    assert len(found) == 3


def test_overlapping_mention_is_one() -> None:
    # "lip filler" is one mention: not Lip Filler + every other filler.
    assert find_service_mentions("lip filler", SERVICES) == [LIP]


def test_generic_mention_lists_all_candidates() -> None:
    assert find_service_mentions("filler", SERVICES) == [LIP, CHEEK]
    assert find_service_mentions("laser", SERVICES) == [LHR, RESURFACING]


def test_specific_phrase_does_not_reach_services_only_generically_in_category() -> None:
    assert find_service_mentions("lhr", SERVICES) == [LHR]


def test_service_own_synonyms() -> None:
    special = ServiceRef(20, "Glow Package", "Packages", synonyms=("the glow", "bridal glow"))
    services = [*SERVICES, special]
    assert match_service("I'd like the bridal glow", services) == special


def test_name_beats_category_synonym() -> None:
    services = [DYSPORT, BOTOX]  # input order must not matter when a name matches
    assert match_service("botox", services) == BOTOX


def test_only_offered_services_match() -> None:
    assert match_service("botox", [HYDRA, PEEL]) is None


@pytest.mark.parametrize(
    ("phrase", "category"),
    [
        ("tox", "neurotoxin"),
        ("Lip Filler", "dermal filler"),
        ("hydra facial", "hydrafacial"),
        ("LHR", "laser hair removal"),
        ("pizza", None),
    ],
)
def test_category_of(phrase: str, category: str | None) -> None:
    assert category_of(phrase) == category


def test_long_service_name_matches_by_name() -> None:
    full = ServiceRef(30, "Laser Hair Removal - Small Area Plus", "Laser")
    assert match_service("laser hair removal small area plus please", [LHR, full]) == full
