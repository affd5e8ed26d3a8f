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

# Words that may sit between the verb and the colour ("went completely white", "is still kind of blue").
_DEGREE = (
    r"(?:really|very|kind of|kinda|a bit|a little|all|so|super|slightly|sort of|pretty|quite|completely|totally|"
    r"almost|still)"
)
# Body words for "<body> is/are white|pale".  Not "skin" or "face": "my skin is pale" / "my face is white" is how
# people describe their complexion ("my skin is pale, can I do laser?"), so those two count only with a place
# ("the skin is white where she injected").  Not "it": a pronoun counts only with a change verb (rule below).
_BODY_PALE = r"(?:lip|lips|nose|area|spot|spots|patch|patches|cheek|cheeks|chin|forehead|site|tissue|tip)"
_PALE = r"(?:white|whitish|pale)"
# A prediction about how a treatment will leave the skin ("is it going to look white after the peel?") is a
# question in advance, not a report.  Narrow on purpose: only "going to|gonna|will|would" + look/be/turn/go/get/
# become + colour + "after|afterwards|later|post"; without the "after" ("how long is it going to look white?") it
# presumes the colour is already there, so it still flags.
_PREDICTED = (
    rf"(?:going to|gonna|will|would)\s+(?:look|be|turn|go|get|become)\s+(?:{_DEGREE}\s+){{0,2}}{_COLOUR}"
    r"\s+(?:after|afterwards?|later|post)\b"
)

_BODY_ES = r"(?:labios?|piel|nariz|zona|area|mejillas?|barbilla|menton|frente|parte|punta|cara)"
_COLOUR_ES = r"(?:blanc[oa]s?|palid[oa]s?|morad[oa]s?|azul(?:es)?|gris(?:es)?|amoratad[oa]s?|negr[oa]s?|grisace[oa]s?)"

_RULES: tuple[tuple[Urgency, str, re.Pattern[str]], ...] = tuple(
    (urgency, category, re.compile(pattern))
    for urgency, category, pattern in (
        # --- emergencies: call 911
        (
            Urgency.EMERGENCY,
            "breathing",
            rf"\b{_CANT}\s+(?:really\s+|quite\s+|even\s+|properly\s+|fully\s+)?(?:breathe|breath|breathing|breathin)\b",
        ),
        # "I can barely breathe", "hardly able to breathe", "barely breathing": barely/hardly is a report of
        # breathing trouble, however the rest of the sentence goes.
        (
            Urgency.EMERGENCY,
            "breathing",
            r"\b(?:barely|hardly|scarcely)\s+(?:able to\s+)?(?:breathe|breath|breathing|breathin|swallow)\b",
        ),
        (
            Urgency.EMERGENCY,
            "breathing",
            r"\b(?:short(?:ness)? of breath|out of breath|wheezing|gasping|suffocating)\b",
        ),
        (Urgency.EMERGENCY, "breathing", r"\bthroat\s+(?:is\s+|feels\s+)?(?:closing|swelling|swollen|tight)"),
        (Urgency.EMERGENCY, "breathing", rf"\b{_CANT}\s+(?:really\s+|even\s+|properly\s+)?swallow"),
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
        # "everything is blurry", "my eyes are blurry", "my eye went fuzzy".  The subject is what keeps this
        # precise ("the photos are blurry" has none); "everything is blurry in the photo" is still excluded.
        (
            Urgency.EMERGENCY,
            "vision",
            rf"\b(?:everything|everythings|things|eye|eyes|vision|eyesight|sight)\s+"
            rf"(?:is|are|s|went|gone|has gone|have gone|going|getting|got|looks?|looking|seems?|feels?)\s+"
            rf"(?:{_DEGREE}\s+){{0,2}}(?:blurr?y|blurred|fuzzy)\b"
            r"(?!\s+(?:in|on)\s+(?:the|this|that|your|my|these|those)\s+"
            r"(?:photos?|pics?|pictures?|images?|videos?|screenshots?|screen|camera)\b)"
            r"|\bblurr?y\s+eyes?\b|\bseeing\s+(?:double|blurry|everything double)\b",
        ),
        (
            Urgency.EMERGENCY,
            "chest_pain",
            r"\bchest\s+(?:pain|pains|hurts|is hurting|tight|tightness|pressure)\b|\bheart attack\b",
        ),
        (
            Urgency.EMERGENCY,
            "vascular_occlusion",
            rf"\b{_BODY}\b(?:\s+(?!{_PREDICTED})\w+){{0,4}}?\s+"
            r"(?:turning|turned|going|gone|went|getting|got|became|becoming|looks|look|looking|stay|staying|stayed|"
            r"(?:start|starts|started|starting|began|begun|beginning)\s+to\s+(?:turn|go|get|look|become))\s+"
            rf"(?:{_DEGREE}\s+){{0,2}}{_COLOUR}\b",
        ),
        (
            Urgency.EMERGENCY,
            "vascular_occlusion",
            rf"\b{_BODY}\s+(?:is|are)\s+(?:{_DEGREE}\s+){{0,2}}{_DUSKY}\b",
        ),
        # "my lip is white", "my lips are pale".  Flags a lip that is simply pale by nature too ("my lips are pale,
        # would filler help?") — a staff call, where missing a blanched lip costs tissue; "naturally pale" is not
        # a degree word, so that phrasing passes.
        (
            Urgency.EMERGENCY,
            "vascular_occlusion",
            rf"\b{_BODY_PALE}\s+(?:is|are)\s+(?:{_DEGREE}\s+){{0,2}}{_PALE}\b"
            rf"|\b(?:skin|face)\s+(?:is|are)\s+(?:{_DEGREE}\s+){{0,2}}{_PALE}\s+"
            r"(?:where|around|near|next to|above|below|under|by)\b",
        ),
        # "its turning white", "theyre going blue", "they look pale".  A pronoun can mean anything, so only with a
        # change verb directly after it and a dusky/white/pale colour ("they look great", "its going well" pass).
        # Not grey: "theyre going grey" is as often brows or hair as skin; with a body word it still flags.
        (
            Urgency.EMERGENCY,
            "vascular_occlusion",
            r"\b(?:its|it|theyre|theyve|they|them)\s+(?:is\s+|are\s+|has\s+|have\s+|been\s+|all\s+|still\s+|now\s+){0,2}"
            r"(?:turning|turned|going|gone|went|getting|got|look|looks|looking)\s+"
            rf"(?:{_DEGREE}\s+){{0,2}}(?:blue|bluish|purple|purplish|dusky|mottled|blanched|{_PALE})\b",
        ),
        (Urgency.EMERGENCY, "vascular_occlusion", rf"\b(?:{_DUSKY}|white)\s+(?:patch|patches|blotch|blotches)\b"),
        (Urgency.EMERGENCY, "vascular_occlusion", r"\bblanch(?:ing|ed)?\b|\bmottl(?:ed|ing)\b|\blivedo\b"),
        (
            Urgency.EMERGENCY,
            "unconscious",
            r"\b(?:fainted|passed out|unconscious|unresponsive|collapsed|blacked out|seizure)\b",
        ),
        # About to faint: "I feel faint", "I think Im going to pass out", "about to pass out".  "faint" alone is not
        # enough ("a faint bruise"), and "going to" needs "im" before it so that a question about needles ("am I
        # going to pass out?") is not read as a report.
        (
            Urgency.EMERGENCY,
            "unconscious",
            rf"\b(?:feel|feels|feeling|felt)\s+(?:{_DEGREE}\s+){{0,2}}(?:faint|like fainting|like passing out)\b"
            r"|\b(?:im|i am)\s+(?:\w+\s+)?(?:going to|gonna|about to)\s+(?:faint|pass out|black out|collapse)\b"
            r"|\babout to (?:faint|pass out|black out|collapse)\b"
            r"|\b(?:im|keep|keeps|kept)\s+(?:fainting|passing out|blacking out)\b",
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
        # "apenas puedo respirar", "me cuesta mucho respirar", "no puedo ni respirar", "casi no respiro"
        (
            Urgency.EMERGENCY,
            "breathing",
            r"\bapenas (?:puedo )?(?:respirar|respiro|tragar)\b|\bno puedo ni (?:respirar|tragar)\b"
            r"|\bme cuesta (?:mucho |trabajo |bastante |un poco )(?:respirar|tragar)\b|\b(?:casi|ya) no respiro\b",
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
            r"\b(?:veo|vision|vista) (?:todo |muy |un poco |algo ){0,2}(?:borros[oa]|doble|nublad[oa]|oscur[oa]|negr[oa])\b"
            r"|\btodo (?:se ve|se me ve|lo veo|esta) (?:muy |un poco |algo )?(?:borroso|doble|nublado)\b"
            r"|\bojos? (?:esta |estan )?(?:muy |un poco |algo )?borros[oa]s?\b|\bse me (?:nubla|nublo) la vista\b"
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
        # The counterpart of the English pronoun rule: Spanish drops the subject ("se esta poniendo blanco").
        # Only with a change verb, and without grey: "se esta poniendo gris" is as often hair as skin.
        (
            Urgency.EMERGENCY,
            "vascular_occlusion",
            r"\bse (?:me |le |te )?(?:esta |estan |ha |han )?(?:poniendo|puesto|puso|pusieron|volviendo|vuelto|volvio|"
            r"quedando|quedo|tornando)\s+(?:muy\s+|todo\s+|toda\s+)?"
            r"(?:blanc[oa]s?|palid[oa]s?|morad[oa]s?|azul(?:es)?|amoratad[oa]s?)\b",
        ),
        (
            Urgency.EMERGENCY,
            "unconscious",
            r"\bme desmaye\b|\bdesmayo\b|\bdesmayad[oa]\b|\bperdi el conocimiento\b|\binconsciente\b|\bconvulsion",
        ),
        # About to faint: "me voy a desmayar", "siento que me voy a desmayar", "me siento desmayar", "me estoy
        # desmayando".  Spanish cannot tell "¿me voy a desmayar?" (a question about needles) from the report, so it
        # flags both: a staff call, not a miss.
        (
            Urgency.EMERGENCY,
            "unconscious",
            r"\b(?:me voy a|a punto de)\s+(?:desmayar|desmayarme|perder el conocimiento)\b"
            r"|\bme siento (?:como |muy |medio |un poco )?(?:desmayar|desvanecer|desfallecer)\b|\bdesmayando\b",
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
