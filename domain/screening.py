"""Contraindication screening: what the patient said about their health, against the clinic's own rules.

Why a deterministic domain function: a pregnant patient must never be offered, or booked into, a treatment
the clinic does not give during pregnancy — whatever the model (offline policy or LLM) decides to do.  So the
clinic's contraindications are data (per service, in the clinic's own wording), the patient's statements are
read by plain rules that err towards screening, and the same ``screen`` is used by the offline policy (to
answer with the clinic's position) and by the tool executor (which refuses availability, proposals and
bookings of a contraindicated service and tells the model why).  Never probabilistic: a hard guard.

Conditions the clinic data may name (``CONDITIONS``) and what the patient says that raises them:
- ``pregnancy``: "I'm pregnant", "5 months pregnant", "expecting a baby", "embarazada";
- ``breastfeeding``: "breastfeeding", "nursing mom", "pumping", "amamantando";
- ``cold_sore``: an active one ("I have a cold sore", "cold sore on my lip right now"); a history alone
  ("I get cold sores") is not active;
- ``skin_lesion``: a rash, open wound or cut, breakout or sunburn at the treatment area;
- ``blood_thinners``: warfarin, Eliquis, Xarelto, daily aspirin, "blood thinners", ...;
- ``accutane``: isotretinoin in the last six months (stopped longer ago does not count);
- ``allergy``: "allergic to <substance>", where the substance is an ingredient the service lists;
- ``age``: a stated age ("I'm 16", "15 years old", "tengo 15 años") below the service's ``min_age``.

Later statements revoke earlier ones ("I had the baby", "not breastfeeding anymore", "the rash is gone").
A statement about someone else ("my sister is pregnant") does not screen the patient.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.timeparse.words import WORD_NUMBERS

CONDITIONS: tuple[str, ...] = (
    "pregnancy",
    "breastfeeding",
    "cold_sore",
    "skin_lesion",
    "blood_thinners",
    "accutane",
    "allergy",
    "age",
)
# How a condition reads in a sentence ("... during pregnancy", "... while breastfeeding").
CONDITION_LABELS: dict[str, str] = {
    "pregnancy": "pregnancy",
    "breastfeeding": "breastfeeding",
    "cold_sore": "an active cold sore",
    "skin_lesion": "a rash, cut or breakout at the treatment area",
    "blood_thinners": "blood thinners",
    "accutane": "recent Accutane (isotretinoin)",
    "allergy": "an allergy to an ingredient",
    "age": "age",
}


@dataclass(frozen=True)
class Contraindication:
    """One clinic rule for one service: when ``condition`` applies, the service is not offered."""

    condition: str
    position: str  # the clinic's own wording, told to the patient
    suggest: tuple[str, ...] = ()  # service slugs offered instead (a consultation, a safe alternative)
    min_age: int | None = None  # condition "age": treated from this age
    ingredients: tuple[str, ...] = ()  # condition "allergy": what the treatment contains

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"condition": self.condition, "position": self.position}
        if self.suggest:
            out["suggest"] = list(self.suggest)
        if self.min_age is not None:
            out["min_age"] = self.min_age
        if self.ingredients:
            out["ingredients"] = list(self.ingredients)
        return out


@dataclass(frozen=True)
class Mention:
    """A condition the patient stated about themselves (``detail``: the allergen, or the age)."""

    condition: str
    detail: str = ""
    age: int | None = None


@dataclass(frozen=True)
class Screening:
    """What applies to one service: the contraindications hit (empty: the service may be offered)."""

    service: str
    hits: tuple[Contraindication, ...] = ()
    mentions: tuple[Mention, ...] = field(default=())

    @property
    def blocked(self) -> bool:
        return bool(self.hits)

    @property
    def position(self) -> str:
        """The clinic's wording of every rule hit, once each."""
        seen: list[str] = []
        for hit in self.hits:
            if hit.position and hit.position not in seen:
                seen.append(hit.position)
        return " ".join(seen)

    @property
    def suggest(self) -> tuple[str, ...]:
        out: list[str] = []
        for hit in self.hits:
            out += [s for s in hit.suggest if s not in out]
        return tuple(out)

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.condition for h in self.hits))


# ---------------------------------------------------------------------------------------------- parsing data
def parse_contraindications(raw: Any) -> tuple[Contraindication, ...]:
    """The stored JSON list (services.contraindications) as Contraindications; unknown conditions are skipped."""
    out: list[Contraindication] = []
    for item in raw or ():
        if not isinstance(item, Mapping) or item.get("condition") not in CONDITIONS:
            continue
        min_age = item.get("min_age")
        out.append(
            Contraindication(
                condition=str(item["condition"]),
                position=str(item.get("position") or ""),
                suggest=tuple(str(s) for s in item.get("suggest") or ()),
                min_age=int(min_age) if isinstance(min_age, int | float | str) and str(min_age).isdigit() else None,
                ingredients=tuple(str(i).lower() for i in item.get("ingredients") or ()),
            )
        )
    return tuple(out)


# ---------------------------------------------------------------------------------------------- reading the patient
def _normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    plain = plain.replace("\u2019", "'").replace("'", "")
    plain = re.sub(r"[^a-z0-9.!?,;\n ]+", " ", plain)
    return " ".join(plain.split())


def _clauses(text: str) -> list[str]:
    return [c.strip() for c in re.split(r"[.!?;\n]+|,\s*(?:but|and|so)\b", _normalise(text)) if c.strip()]


_OTHERS = (
    r"(?:she|shes|he|hes|her|his|they|theyre|my (?:sister|friend|wife|daughter|mom|mother|mum|cousin|coworker|"
    r"co worker|girlfriend|gf|partner|bestie|bff|niece|aunt|son|husband|boyfriend|bf|sister in law|roommate)s?)"
)
_NEGATION = r"(?:not|no longer|never been|never|isnt|arent|wasnt)"

_PATTERNS: dict[str, tuple[str, ...]] = {
    "pregnancy": (
        r"\bpregnant\b",
        r"\bpregnancy\b",
        r"\bpreggo\b|\bpreggers\b",
        r"\bexpecting (?:a baby|my first|our first|a little|twins|a girl|a boy|baby)\b",
        r"\b(?:im|i am) expecting\b",
        r"\bembarazada\b|\bembarazo\b",
    ),
    "breastfeeding": (
        r"\bbreast ?feeding\b|\bbreast ?feed\b|\bbreastfed\b",
        r"\bnursing\b(?! (?:home|school|student|degree|job|staff|assistant|program|license))",
        r"\blactating\b|\bpumping\b",
        r"\bamamantando\b|\blactancia\b|\bdando (?:el )?pecho\b",
    ),
    "cold_sore": (
        r"\b(?:have|got|has|with|theres|there is|getting|breaking out with|currently have|got a)\b(?: \w+){0,3} "
        r"(?:cold sores?|fever blisters?|herpes)\b",
        r"\b(?:cold sores?|fever blisters?)\b(?: \w+){0,4} (?:right now|rn|currently|today|on my lip|just came|came up"
        r"|popped up|coming up|flaring)\b",
        r"\btengo (?:un |una )?(?:herpes|fuego|calentura)\b",
    ),
    "skin_lesion": (
        r"\b(?:a |have a |got a )?rash\b",
        r"\bopen (?:wound|cut|sore)s?\b|\bcut on my\b|\bscab\b",
        r"\bbreakout\b|\bbreaking out\b|\bacne cysts?\b|\bcystic acne\b",
        r"\bsunburn(?:ed|t)?\b",
        r"\bsarpullido\b|\berupcion\b|\bherida abierta\b|\bquemadura de sol\b",
    ),
    "blood_thinners": (
        r"\bblood thinn(?:er|ers|ing)\b",
        r"\banticoagulants?\b|\banticoagulantes?\b",
        r"\b(?:warfarin|coumadin|jantoven|eliquis|apixaban|xarelto|rivaroxaban|pradaxa|dabigatran|heparin|lovenox"
        r"|enoxaparin|plavix|clopidogrel|brilinta|ticagrelor|savaysa)\b",
        r"\b(?:daily|baby|low dose|low-dose) aspirin\b|\baspirin (?:every day|daily|each day)\b",
    ),
    "accutane": (
        r"\b(?:accutane|isotretinoin|isotretinoina|absorica|claravis|amnesteem|roaccutane|myorisan|zenatane)\b",
    ),
}
_REVOKE: dict[str, tuple[str, ...]] = {
    "pregnancy": (
        rf"\b{_NEGATION} (?:\w+ )?(?:pregnant|embarazada)\b",
        r"\bpregnant anymore\b",
        r"\bhad (?:the|my|our) (?:baby|little one|daughter|son)\b|\bgave birth\b|\bdelivered\b|\bpostpartum\b",
        r"\bya di a luz\b|\bno estoy embarazada\b",
    ),
    "breastfeeding": (
        rf"\b{_NEGATION} (?:\w+ )?(?:breast ?feeding|nursing|pumping)\b",
        r"\b(?:stopped|done|finished|quit) (?:breast ?feeding|nursing|pumping)\b",
        r"\b(?:breast ?feeding|nursing|pumping) anymore\b|\bweaned\b",
        r"\bya no (?:estoy )?amamant",
    ),
    "cold_sore": (r"\bcold sore (?:is |has )?(?:gone|healed|cleared)\b", r"\bno cold sores?\b"),
    "skin_lesion": (r"\b(?:rash|breakout|sunburn|cut) (?:is |has )?(?:gone|healed|cleared)\b", r"\bno rash\b"),
    "blood_thinners": (
        rf"\b{_NEGATION} (?:on |taking |take )?(?:any )?(?:blood thinners?|anticoagulants?)\b",
        r"\b(?:dont|do not) take (?:any )?(?:blood thinners?|anticoagulants?)\b",
    ),
    "accutane": (rf"\b{_NEGATION} (?:on )?(?:accutane|isotretinoin)\b",),
}
_ACCUTANE_STOPPED = re.compile(
    r"\b(?:finished|stopped|off|quit|done with|came off|last dose(?: of)?(?: accutane| isotretinoin)? was)\b"
    r"(?: \w+){0,4}? (?:(\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|several|few|couple)"
    r"(?: of)? (years?|yrs?|months?|mos?))\b"
)
_WORD_NUMBERS = {**WORD_NUMBERS, "several": 3}  # "stopped accutane several months ago"
_ALLERGY = re.compile(
    r"\b(?:allergic|alergic|allergy|allergies|alergica|alergico|alergia)\b(?: (?:to|a|al|de))? (?P<what>[a-z ]{2,40})"
)
_AGE = (
    re.compile(
        r"\b(?:im|i am|i m)\s+(?:only\s+|just\s+)?(\d{1,2})\b(?!\s*(?:weeks?|wks?|months?|mos?|units?|mins?|minutes?|"
        r"hours?|hrs?|days?|am|pm|th|st|nd|rd|:|%|percent|lbs?|kg|cm|ft|inches|syringes?|sessions?))"
    ),
    re.compile(r"\b(\d{1,2})\s*(?:years? old|yrs? old|yr old|year old|yo|y o)\b"),
    re.compile(r"\btengo (\d{1,2}) (?:anos|ano)\b"),
)


def _about_someone_else(clause: str, start: int) -> bool:
    return re.search(rf"\b{_OTHERS}\b", clause[:start]) is not None


def _accutane_long_ago(clause: str) -> bool | None:
    """True: stopped six months or more ago; False: stopped more recently; None: no stop mentioned."""
    m = _ACCUTANE_STOPPED.search(clause)
    if not m:
        return None
    raw, unit = m.group(1), m.group(2)
    count = int(raw) if raw.isdigit() else _WORD_NUMBERS.get(raw, 1)
    return unit.startswith("y") or count >= 6


def mentions_in(text: str) -> dict[str, Mention | None]:
    """Conditions one message raises (a Mention) or revokes (None), in the order stated."""
    found: dict[str, Mention | None] = {}
    for clause in _clauses(text):
        for condition in ("pregnancy", "breastfeeding", "cold_sore", "skin_lesion", "blood_thinners", "accutane"):
            if any(re.search(p, clause) for p in _REVOKE.get(condition, ())):
                found[condition] = None
                continue
            for pattern in _PATTERNS[condition]:
                m = re.search(pattern, clause)
                if m is None or _about_someone_else(clause, m.start()):
                    continue
                if condition == "accutane" and _accutane_long_ago(clause):
                    found[condition] = None
                else:
                    found[condition] = Mention(condition)
                break
        allergy = _ALLERGY.search(clause)
        negated = re.search(r"\bnot (?:allergic|alergic)\b|\bno (?:known )?allerg", clause)
        if allergy and not negated and not _about_someone_else(clause, allergy.start()):
            found["allergy"] = Mention("allergy", detail=allergy.group("what").strip())
        for age_pattern in _AGE:
            found_age = age_pattern.search(clause)
            if found_age and not _about_someone_else(clause, found_age.start()):
                age = int(found_age.group(1))
                if 5 <= age <= 99:
                    found["age"] = Mention("age", detail=str(age), age=age)
                break
    return found


def detect_conditions(texts: Iterable[str]) -> dict[str, Mention]:
    """What the patient's messages (oldest first) say is true of them now: later statements win."""
    current: dict[str, Mention] = {}
    for text in texts:
        for condition, mention in mentions_in(text or "").items():
            if mention is None:
                current.pop(condition, None)
            else:
                current[condition] = mention
    return current


# ---------------------------------------------------------------------------------------------- the screen
def _allergy_hits(rule: Contraindication, mention: Mention) -> bool:
    what = mention.detail
    return any(re.search(rf"\b{re.escape(ingredient)}\b", what) for ingredient in rule.ingredients if ingredient)


def screen(service: str, rules: Sequence[Contraindication], mentions: Mapping[str, Mention]) -> Screening:
    """The clinic's rules for ``service`` that the patient's stated conditions hit."""
    hits: list[Contraindication] = []
    for rule in rules:
        mention = mentions.get(rule.condition)
        if mention is None:
            continue
        if rule.condition == "age":
            if rule.min_age is None or mention.age is None or mention.age >= rule.min_age:
                continue
        elif rule.condition == "allergy" and not _allergy_hits(rule, mention):
            continue
        hits.append(rule)
    return Screening(service=service, hits=tuple(hits), mentions=tuple(mentions.values()))


def screen_texts(service: str, rules: Sequence[Contraindication], texts: Iterable[str]) -> Screening:
    """``screen`` over the patient's messages (oldest first)."""
    return screen(service, rules, detect_conditions(texts))


def conditions_not_for(rules: Sequence[Contraindication]) -> list[str]:
    """The conditions a service is not offered with (for a compact catalogue listing)."""
    out: list[str] = []
    for rule in rules:
        label = f"under {rule.min_age}" if rule.condition == "age" and rule.min_age else rule.condition
        if label not in out:
            out.append(label)
    return out
