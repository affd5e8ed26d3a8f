"""Medical-safety and prompt-injection screens on inbound text.

Why: a patient describing breathing trouble or a blanching lip after filler
must get an immediate, safe, non-diagnostic reply and a human, whatever the
model would have said.  The screen runs before the model, is deterministic,
and errs towards flagging (a false alarm costs a staff call; a miss can cost
tissue or a life).

``detect_injection`` flags obvious prompt-injection attempts for auditing and
to steer the offline policy.  It is never the only defence: tools are scoped by
state and by the conversation's own clinic and patient.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from domain.segments import to_gsm_friendly


class Urgency(StrEnum):
    EMERGENCY = "emergency"  # call 911
    URGENT = "urgent"  # call the clinic now


@dataclass(frozen=True)
class SafetyFlag:
    """What was detected: a level and a category label (never the message text)."""

    urgency: Urgency
    category: str


_CANT = (
    r"(?:cant|can not|cannot|couldnt|could not|unable to|hard to|struggling to|trouble|difficulty|problems?|hard time)"
)
_CANT_SEE_OBJECT = (
    r"(?:the|a|an|your|any|it|where|how|what|when|if|why|whether|you|him|her|them|that|this|which|"
    r"dr|doctor|link|my (?:appointment|booking|confirmation|receipt|invoice|deposit|email|message|text)s?)"
)
_BODY = r"(?:skin|lip|lips|nose|area|spot|spots|patch|patches|face|cheek|cheeks|chin|forehead|site|tissue|it|tip)"
_DUSKY = r"(?:blue|bluish|grey|gray|greyish|grayish|purple|purplish|dusky|mottled|blanched)"
_COLOUR = (
    r"(?:white|whitish|pale|blue|bluish|grey|gray|greyish|grayish|purple|purplish|dusky|blotchy|mottled|blanched|black)"
)

_BODY_ES = r"(?:labios?|piel|nariz|zona|area|mejillas?|barbilla|menton|frente|parte|punta|cara)"
_COLOUR_ES = r"(?:blanc[oa]s?|palid[oa]s?|morad[oa]s?|azul(?:es)?|gris(?:es)?|amoratad[oa]s?|negr[oa]s?|grisace[oa]s?)"

_RULES: tuple[tuple[Urgency, str, re.Pattern[str]], ...] = tuple(
    (urgency, category, re.compile(pattern))
    for urgency, category, pattern in (
        # --- emergencies: call 911
        (Urgency.EMERGENCY, "breathing", rf"\b{_CANT}\s+(?:breathe|breath|breathing|breathin)\b"),
        (
            Urgency.EMERGENCY,
            "breathing",
            r"\b(?:short(?:ness)? of breath|out of breath|wheezing|gasping|suffocating)\b",
        ),
        (Urgency.EMERGENCY, "breathing", r"\bthroat\s+(?:is\s+|feels\s+)?(?:closing|swelling|swollen|tight)"),
        (Urgency.EMERGENCY, "breathing", rf"\b{_CANT}\s+swallow"),
        (Urgency.EMERGENCY, "breathing", r"\b(?:tongue|throat)\s+(?:is\s+)?swell"),
        (Urgency.EMERGENCY, "breathing", r"\banaphyla"),
        (
            Urgency.EMERGENCY,
            "vision",
            r"\b(?:vision|eyesight|sight)\s+(?:is\s+)?(?:change|changes|changed|loss|lost|blurr|going|went|gone|weird|dark|black|spotty)",
        ),
        (Urgency.EMERGENCY, "vision", r"\b(?:blurr?y|blurred|double|loss of|lost my|losing my|losing|no)\s+vision\b"),
        (
            Urgency.EMERGENCY,
            "vision",
            rf"\b(?:cant|can not|cannot|couldnt|could not)\s+see\b(?!\s+{_CANT_SEE_OBJECT}\b)",
        ),
        (Urgency.EMERGENCY, "vision", r"\b(?:go|going|gone|went)\s+blind\b|\bblind\s+(?:in|spot)"),
        (
            Urgency.EMERGENCY,
            "chest_pain",
            r"\bchest\s+(?:pain|pains|hurts|is hurting|tight|tightness|pressure)\b|\bheart attack\b",
        ),
        (
            Urgency.EMERGENCY,
            "vascular_occlusion",
            rf"\b{_BODY}\b(?:\s+\w+){{0,4}}?\s+(?:turning|turned|going|gone|getting|got|became|becoming|looks|look|looking)\s+(?:really\s+|very\s+|kind of\s+|kinda\s+|a bit\s+|all\s+)?{_COLOUR}\b",
        ),
        (
            Urgency.EMERGENCY,
            "vascular_occlusion",
            rf"\b{_BODY}\s+(?:is|are)\s+(?:really\s+|very\s+|kind of\s+|kinda\s+|a bit\s+|all\s+)?{_DUSKY}\b",
        ),
        (Urgency.EMERGENCY, "vascular_occlusion", rf"\b(?:{_DUSKY}|white)\s+(?:patch|patches|blotch|blotches)\b"),
        (Urgency.EMERGENCY, "vascular_occlusion", r"\bblanch(?:ing|ed)?\b|\bmottl(?:ed|ing)\b|\blivedo\b"),
        (
            Urgency.EMERGENCY,
            "unconscious",
            r"\b(?:fainted|passed out|unconscious|unresponsive|collapsed|blacked out|seizure)\b",
        ),
        (Urgency.EMERGENCY, "stroke", r"\b(?:face\s+(?:is\s+)?drooping|slurred speech|stroke)\b"),
        # --- urgent: call the clinic now
        (
            Urgency.URGENT,
            "allergic_reaction",
            r"\ballergic\s+reaction\b|\bhives\b|\b(?:having|had)\s+(?:a|an)\s+(?:bad\s+)?reaction\b",
        ),
        (Urgency.URGENT, "swelling", r"\b(?:swelling|swollen|swelled|puffy)\s+(?:after|from|since)\b"),
        (
            Urgency.URGENT,
            "swelling",
            r"\b(?:is|are|r|so|really|very|super|still|getting|got|keeps|extremely|badly)\s+(?:really\s+|very\s+|so\s+)?(?:swollen|swelling|swelled)\b",
        ),
        (
            Urgency.URGENT,
            "swelling",
            r"\b(?:lots of|a lot of|severe|bad|major|huge|massive)\s+swelling\b|\bswelled up\b|\bswollen shut\b",
        ),
        (
            Urgency.URGENT,
            "pain",
            r"\b(?:severe|extreme|excruciating|unbearable|terrible|intense|horrible|awful|sharp|really bad|so much|a lot of|lots of|worst)\s+(?:pain|burning|throbbing)\b",
        ),
        (
            Urgency.URGENT,
            "pain",
            r"\bhurts?\s+(?:so|really|very|like)\s+(?:bad|badly|much|hell)\b|\bin (?:so much|a lot of) pain\b",
        ),
        (Urgency.URGENT, "infection", r"\b(?:infection|infected|pus|oozing|abscess|fever|feverish|chills)\b"),
        (Urgency.URGENT, "blister", r"\bblister(?:s|ing|ed)?\b|\bburn(?:ed|t)?\s+(?:my|skin|from|after)\b|\bburns\b"),
        # --- Spanish (the carrier keywords are already bilingual; so are the danger signs)
        (
            Urgency.EMERGENCY,
            "breathing",
            r"\b(?:no puedo|me cuesta|dificultad para|problemas para) (?:respirar|tragar)\b",
        ),
        (Urgency.EMERGENCY, "breathing", r"\bme falta (?:el )?aire\b|\bme ahogo\b|\bahogandome\b|\banafila"),
        (
            Urgency.EMERGENCY,
            "breathing",
            r"\b(?:se me )?(?:cierra|cerrando|cerrada|apretada|hinchada) (?:la )?garganta\b"
            r"|\bgarganta (?:se me )?(?:esta |siento )?(?:cerrando|cerrada|apretada|hinchada)\b"
            r"|\blengua (?:muy )?hinchada\b|\bse me hincha la lengua\b",
        ),
        (
            Urgency.EMERGENCY,
            "vision",
            r"\b(?:veo|vision|vista) (?:muy )?(?:borros[oa]|doble|nublad[oa]|oscur[oa]|negr[oa])\b"
            r"|\bno veo\b(?! (?:el|la|los|las|donde|como|cuando|si|mi cita|tu|su|nada de)\b)"
            r"|\b(?:perdi|perdiendo|pierdo) (?:la )?(?:vista|vision)\b",
        ),
        (Urgency.EMERGENCY, "chest_pain", r"\b(?:dolor|presion|opresion) (?:en el|de|en) pecho\b|\binfarto\b"),
        (
            Urgency.EMERGENCY,
            "vascular_occlusion",
            rf"\b{_BODY_ES}\b(?:\s+\w+){{0,4}}?\s+(?:muy\s+)?{_COLOUR_ES}\b"
            rf"|\b(?:poniendo|puesto|puso|volviendo|vuelto|quedando|quedo|tornando)\s+{_COLOUR_ES}\b(?:\s+\w+){{0,3}}?\s+{_BODY_ES}\b",
        ),
        (
            Urgency.EMERGENCY,
            "unconscious",
            r"\bme desmaye\b|\bdesmayo\b|\bdesmayad[oa]\b|\bperdi el conocimiento\b|\binconsciente\b|\bconvulsion",
        ),
        (Urgency.EMERGENCY, "stroke", r"\bderrame cerebral\b|\bcara caida\b|\bno puedo hablar bien\b"),
        (
            Urgency.URGENT,
            "allergic_reaction",
            r"\breaccion alergica\b|\bronchas\b|\burticaria\b|\bme pica (?:todo|mucho|muchisimo)\b|\bcomezon\b",
        ),
        (
            Urgency.URGENT,
            "swelling",
            r"\b(?:muy|mucha|bastante|demasiad[oa]|super) (?:hinchad[oa]s?|inflamad[oa]s?|hinchazon|inflamacion)\b"
            r"|\b(?:hinchad[oa]s?|inflamad[oa]s?|hinchazon|inflamacion) (?:despues|desde)\b",
        ),
        (
            Urgency.URGENT,
            "pain",
            r"\b(?:me )?duele (?:mucho|muchisimo|demasiado|horrible|un monton)\b"
            r"|\bdolor (?:muy )?(?:fuerte|intenso|insoportable|terrible|horrible)\b|\bmucho dolor\b",
        ),
        (Urgency.URGENT, "infection", r"\b(?:infeccion|infectad[oa]|pus|fiebre|absceso|escalofrios)\b"),
        (Urgency.URGENT, "blister", r"\bampollas?\b|\bquemadura\b(?! de sol)|\bme queme\b"),
    )
)


def _normalise(text: str) -> str:
    friendly = to_gsm_friendly(text)
    if friendly.isascii():  # nothing to decompose: no ASCII character has a decomposition or is combining
        plain = friendly.lower().replace("'", "")
    else:
        decomposed = unicodedata.normalize("NFKD", friendly)
        plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower().replace("'", "")
    return " ".join(_NOT_WORD.sub(" ", plain).split())


_NOT_WORD = re.compile(r"[^a-z0-9]+")
# Every rule in one pattern: most messages match none, and one search says so (the rules are then read one by one
# only for a message that matches some rule, to rank them as below).
_ANY_RULE = re.compile("|".join(f"(?:{pattern.pattern})" for _, _, pattern in _RULES))


def detect_emergency(text: str) -> SafetyFlag | None:
    """The most urgent safety flag in ``text``, or None.

    Emergencies (breathing, vision, chest pain, signs of vascular occlusion,
    loss of consciousness) rank above urgent signs (swelling, severe pain,
    infection, allergic reaction, blisters).
    """
    normalised = _normalise(text)
    if not _ANY_RULE.search(normalised):
        return None
    found: SafetyFlag | None = None
    for urgency, category, pattern in _RULES:
        if pattern.search(normalised):
            if urgency is Urgency.EMERGENCY:
                return SafetyFlag(urgency, category)
            if found is None and not _only_asked_in_advance(text, pattern):
                found = SafetyFlag(urgency, category)
    return found


# A question about what a treatment will be like ("will there be a lot of swelling after?") is not a report of a
# reaction.  Only the urgent signs may be read this way; an emergency sign is flagged however it is phrased.
_IN_ADVANCE = re.compile(
    r"^(?:will|would|could|does|do|is|are) (?:there|i|it|people|patients|botox|filler|it usually|there usually|"
    r"most people)\b.*\b(?:be|get|have|cause|expect|usually|normally)\b|^(?:how (?:much|long|bad)|what if|should i expect)\b"
)


def _only_asked_in_advance(text: str, pattern: re.Pattern[str]) -> bool:
    """Every sentence that matches ``pattern`` is a question about the future, not a report."""
    raw = [part for part in re.split(r"(?<=[.!?])\s+|\n+", text) if part.strip()]
    hits = [part for part in raw if pattern.search(_normalise(part))]
    return bool(hits) and all("?" in part and _IN_ADVANCE.search(_normalise(part)) for part in hits)


# ---------------------------------------------------------------- possible danger signs
# Softer than the rules above: words that, in a message the agent could not otherwise understand, suggest the
# patient is describing a problem with their body.  Such a message goes to staff, never to a generic "I don't
# know" (issue 14).  English and Spanish.
_SIGNS = re.compile(
    r"\b(?:numb|numbness|tingl\w*|lump|lumps|bump|bumps|knot|nodule|hard spot|bruis\w*|redness|red spot|itch\w*|"
    r"rash|tight|burning|burns|hurt|hurts|hurting|pain|painful|sore|swell\w*|swollen|droop\w*|uneven|asymmetr\w*|"
    r"lopsided|blister\w*|bleed\w*|ooz\w*|headache|dizzy|nause\w*|discolou?r\w*|dent|weird|strange|off)\b"
    r"|\b(?:bulto|bultos|bolita|dolor|duele|hinchad\w*|hinchazon|moreton\w*|morad\w*|rojez|roj[oa]|pica|picazon|"
    r"comezon|caid[oa]|entumecid\w*|hormigueo|sangr\w*|mareo|mareada|marea|ardor|arde|raro|rara|extrano)\b"
)
# A report about oneself ("my lip feels", "there's a lump", "tengo un bulto"), not a question about what to expect.
_REPORT = re.compile(
    r"\b(?:my|i have|ive got|i got|i feel|i felt|i noticed|im having|im getting|theres|there is|there are|it feels|"
    r"feels|looks|since|where (?:she|he|they|you) (?:injected|did)|tengo|me salio|me salieron|me duele|siento|mi|mis|"
    r"desde)\b"
)
_AFFECTED = re.compile(
    r"\b(?:lip|lips|face|cheek|cheeks|eye|eyes|eyelid|brow|brows|forehead|chin|jaw|nose|skin|area|spot|arm|leg|legs|"
    r"underarm|underarms|neck|injection|injected|filler|botox|tox|peel|laser|treatment|needling|facial|"
    r"labio|labios|cara|mejilla|ojo|ojos|parpado|ceja|frente|barbilla|nariz|piel|zona|relleno|tratamiento|"
    r"inyeccion|laser)\b"
)


def possible_danger_sign(text: str) -> bool:
    """A first-person report of something wrong with a treated area ("my lip feels numb", "tengo un bulto en el
    labio") — not an emergency by the rules above, but not something to answer with "I don't know" either."""
    normalised = _normalise(text)
    return bool(_SIGNS.search(normalised) and _REPORT.search(normalised) and _AFFECTED.search(normalised))


# With a photo, the photo is the report: a word about a reaction is enough (no "my ..." needed).
_PHOTO_WORDS = re.compile(r"\b(?:reaction|reacting|reaccion|allerg\w*|alergi\w*)\b")


def photo_concern(text: str) -> SafetyFlag | None:
    """The safety flag for a message that carries a photo: an emergency or urgent sign by the rules above, or — the
    photo being the patient's own report of a treated area — any danger-sign word ("swelling", "blister",
    "bruise", "rash", "reaction"), which alone would not flag a text.  An adverse reaction (urgent), or None."""
    found = detect_emergency(text)
    if found is not None:
        return found
    normalised = _normalise(text)
    if _SIGNS.search(normalised) or _PHOTO_WORDS.search(normalised):
        return SafetyFlag(Urgency.URGENT, "photo_reaction")
    return None


def emergency_reply(flag: SafetyFlag, clinic_name: str, clinic_phone: str) -> str:
    """Immediate safe reply: where to get help now; no diagnosis, no advice beyond that."""
    if flag.urgency is Urgency.EMERGENCY:
        text = (
            f"{clinic_name}: Please call 911 or go to the nearest emergency room now. "
            f"We've alerted our team and will follow up. Clinic: {clinic_phone}."
        )
    else:
        text = (
            f"{clinic_name}: Please call the clinic now at {clinic_phone} so a provider can help you. "
            "We've alerted our team. If you have trouble breathing, vision changes or chest pain, call 911."
        )
    return to_gsm_friendly(text)


# ---------------------------------------------------------------- prompt injection
_INJECTION = tuple(
    re.compile(p)
    for p in (
        r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+)?(?:of\s+)?(?:your|the|previous|prior|above|earlier|these|those|my previous)\s+(?:\w+\s+)?(?:instructions|rules|prompts?|guidelines|directions|programming|policies)\b",
        r"\byou\s+are\s+now\b",
        r"\b(?:system|developer|hidden|initial)\s+(?:prompt|message|instructions)\b",
        r"\b(?:reveal|show|print|repeat|tell me)\s+(?:me\s+)?(?:your|the)\s+(?:instructions|prompt|rules|system)\b",
        r"\b(?:developer|dan|god|admin|debug)\s+mode\b|\bjailbreak\b",
        r"\bpretend\s+(?:to be|you are|youre)\b|\bact as\s+(?:an?\s+)?(?:admin|administrator|developer|system|staff|doctor)\b",
        r"\b(?:other|another|all|every|any)\s+(?:\w+\s+)?(?:clients|patients|customers|peoples?|users|members)s?\s+(?:\w+\s+)?(?:phone|phones|numbers?|info|information|data|records|appointments|emails?|names|addresses|details)\b",
        # "what's the phone number of your other clients": the data first, then whose
        r"\b(?:phone|phones|numbers?|info|information|data|records|appointments|emails?|names|addresses|details)\s+(?:\w+\s+){0,3}(?:other|another|all|every)\s+(?:\w+\s+)?(?:clients|patients|customers|people|users|members)\b",
        r"\b(?:list|give me|send me|show me|export|dump)\s+(?:all\s+|every\s+)?(?:the\s+)?(?:patients|clients|customers|users)\b",
        r"\bcancel\s+(?:every|all)\s+(?:of\s+)?(?:the\s+)?(?:appointments?|bookings?|appts?)\b",
        r"\bcancel\s+(?:everyones|everybodys|all patients|all clients|other patients|other peoples)\b",
        r"\bignore\s+(?:everything|all)\s+(?:above|before|previous|prior)\b",
        r"\b(?:delete|drop|wipe)\s+(?:all|every|the)\s+(?:\w+\s+)?(?:appointments|patients|records|data|database|tables?)\b",
    )
)


_ANY_INJECTION = re.compile("|".join(f"(?:{pattern.pattern})" for pattern in _INJECTION))


def detect_injection(text: str) -> bool:
    """True for obvious prompt-injection or data-exfiltration attempts (audit signal only)."""
    return _ANY_INJECTION.search(_normalise(text)) is not None
