"""The offline policy's vocabulary: the keyword patterns, the words that are not names, the fixed replies and
the service words of knowledge questions.
"""

from __future__ import annotations

import re
import unicodedata

from domain.catalog import ServiceRef


# --------------------------------------------------------------------------------------------- vocabulary
def _wordset(words: str) -> frozenset[str]:
    """A set of words written as one space-separated string (long vocabularies stay readable)."""
    return frozenset(words.split())


_CANCEL = re.compile(r"\b(cancel|cancell?ing|cancelar|cancela|anular|cant make it|can not make it|wont make it)\b")
_RESCHEDULE = re.compile(
    r"\b(reschedul\w*|re schedul\w*|move (my|the|it)|change (my|the) (appointment|appt|booking|time|cita)|"
    r"push (it|my appointment|my appt|my \w+) back|push (it|my \w+) to|different (time|day)|another (time|day)|"
    r"reprogramar|cambiar (mi|la) cita)\b"
)
_CHANGE_CUE = re.compile(
    r"\b(reschedul\w*|move|moving|change|switch|push|bump|instead|different|another|earlier|later|sooner|"
    r"cant make|can not make|reprogramar|cambiar|mover)\b"
)
_MY_APPTS = re.compile(
    r"\b(my (appointments?|appts?|bookings?|visits?|next one)|when is my|whens my|do i have (an? )?(appointment|appt|booking)|"
    r"what time is my|am i (still )?booked|mis citas|mi cita)\b"
)
_HANDOFF = re.compile(
    r"\b(talk|speak|chat) (to|with) (a |an |the |someone|somebody|person|human|staff|agent|real|manager|nurse|doctor)|"
    r"\b(real|actual|live) (person|human)\b|\bhuman\b|\brepresentative\b|\bcall me\b|\bagent\b|"
    r"\bhablar con (alguien|una persona)\b"
)
_BOOK = re.compile(
    r"\b(book|booking|schedule|appointment|appt|available|availability|openings?|slots?|come in|reserve|"
    r"get (in|a|some)|sign me up|i want|id like|i would like|can i (get|do|come)|reservar|agendar|cita|turno)\b"
)
_PRICE = re.compile(r"\b(cost|costs|price|prices|pricing|how much|charge|fee|fees|\$|cuanto|precio|expensive)\b")
_OFFER_QUESTION = re.compile(
    r"\b(do you (do|offer|have)|do u (do|offer|have)|what is|whats|tell me about|info on|details)\b"
)
_MENU = re.compile(
    r"\b(what (services|treatments) |services|treatments|menu|what do you (do|offer)|what can i (get|book))\b"
)
_GREETING = re.compile(r"^(hi+|hello|hey+|hiya|good (morning|afternoon|evening)|hola|buenas|yo)\b[\s!.,]*$")
_THANKS = re.compile(
    r"^(thanks|thank you|thx|ty|gracias|ok thanks|great thanks|perfect thanks|cool|appreciate it)\b[\s!.,a-z]*$"
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_OUT_OF_SCOPE = re.compile(
    r"\b(other|another|all|every|any|your)\s+(\w+\s+)?(clients|patients|customers|people|users|members)\b"
)
_EVERYONE = re.compile(r"\b(everyone|everybody|anyone|all the people|who else)\b")
_DATA_WORDS = re.compile(
    r"\b(phone|number|numbers|email|emails|info|information|appointments|names|address|data|records|details)\b"
)
_RELATIVE = (
    r"(?:sister|brother|mom|mother|mum|dad|father|husband|hubby|wife|partner|boyfriend|girlfriend|bf|gf|friend|"
    r"daughter|son|cousin|coworker|co worker|aunt|uncle|grandma|grandmother|roommate|fiance|fiancee|niece|nephew|"
    r"bestie|bff|neighbor)"
)
_SOMEONE_ELSE = re.compile(
    rf"\b(?:my|her|his)\s+(?:\w+\s+)?{_RELATIVE}s?\b|\bmy {_RELATIVE}\s+[a-z]+\b|\b(?:she|he)\s+(?:is|was)\s+(?:coming|booked)"
)
_OTHERS_INFO = re.compile(
    r"\b(appointment|appointments|appt|booked|booking|bookings|coming in|come in|number|phone|email|details|"
    r"schedule|scheduled|time is|what time|when is|when s|paid|pay|record|records|booked her|booked his)\b"
)
_LOGISTICS = re.compile(
    r"\b(fee|fees|charge|charged|penalty|policy|policies|refund|refundable|parking|park|bring|wear|prepare|prep|"
    r"arrive|arrival|early|late|shave|pay|payment|hsa|fsa|insurance|walk ins?|walk in|eat|drink|"
    r"work out|exercise|makeup|advance|ahead|deposit|how long|kids?|children|child|wheelchair|forms?)\b|"
    r"\b(before|after) (i|my|the|a|an|your|botox|filler|treatment|appointment|coming|getting|laser|peel|"
    r"microneedling|facial|it)\b"
)
_QUESTION_START = re.compile(
    r"^(is|are|do|does|did|what|whats|how|hows|why|where|wheres|who|should|will|would|if|any)\b|"
    r"^can i (pay|bring|wear|park|eat|drink|work out|exercise|shower|use|get a refund)\b"
)
_REQUEST_START = re.compile(
    r"^(can|could|may|would) (i|you|we) (book|get|come|move|reschedule|cancel|change|switch|push|schedule|make)\b|"
    r"^(i|id|i d|we) (want|need|would like|wanna|like|have) to\b|^(please|pls|plz) |^(book|schedule|cancel|move|"
    r"reschedule|change|push)\b"
)
_ORDINALS = {
    "first": 0,
    "1st": 0,
    "one": 0,
    "second": 1,
    "2nd": 1,
    "two": 1,
    "third": 2,
    "3rd": 2,
    "three": 2,
    "fourth": 3,
    "4th": 3,
    "four": 3,
    "last": -1,
    "primero": 0,
    "primera": 0,
    "segundo": 1,
    "segunda": 1,
    "tercero": 2,
    "tercera": 2,
}
# Words after "I'm" / "it's" / "call me" that are not names (issue 14: "I'm pregnant" is not a name).
_NOT_NAMES = _wordset(
    "here interested looking wondering not so just a the going trying free available new back running "
    "late sorry good fine pregnant allergic breastfeeding nursing expecting thinking curious planning "
    "hoping ready nervous scared worried excited happy sure ok okay also still currently on off in at "
    "from with your my his her their calling texting writing messaging asking due taking diabetic sick "
    "ill booked coming getting having doing feeling over under about around almost only really very super "
    "kinda kind sort totally definitely probably maybe actually literally basically honestly out home "
    "away busy stuck confused unsure considering wanting needing hungry tired fine great well alright "
    "allright cool glad this that there what who when where how why able unable afraid after before both "
    "either neither if anyway any some no yes yeah yep hi hello hey urgent important please pls asap "
    "tomorrow today tonight later soon now then again too still interested interested wonder reaching "
    "following regarding re following in interested open closed dr doctor patient client returning first "
    "second new existing male female single married engaged divorced vegan vegetarian pretty gonna going "
    "gunna bout tryna wanna lol btw and thanks thank thx ty cool perfect awesome sounds nope nah bye kk "
    "xx xo x sure good great"
)
_CALL_ME_NOT = _wordset(
    "back asap please pls now later when at tomorrow today tonight on after before if about sometime "
    "anytime soon right again instead first"
)
_NAME_WORD = r"[A-Za-z][A-Za-z'\-]{0,24}"

REPLY_YES = "Reply YES to confirm."
CANT_SHARE = (
    "Sorry, I can't share or look up anyone else's details, appointments or contact information. "
    "They're welcome to text us from their own phone, and I'm happy to help with your own appointments."
)
REFUSAL = (
    "Sorry, I can only help with your own appointments and questions about our clinic. "
    "I can't share other people's information or change how I work."
)
HONEST = (
    "Sorry, I'm an automated assistant and I don't have an answer for that. I can book, move or cancel "
    "appointments, or reply 'talk to a person' and our team will get back to you."
)


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace("\u2019", "'").replace("'", "")
    return " ".join(re.sub(r"[^a-z0-9@$:/.\- ]+", " ", text).split())


# Topic words of a knowledge question, for the article search query.
_VOCABULARY: list[ServiceRef] = [
    ServiceRef(
        -1,
        "botox",
        "neurotoxin",
        ("tox", "dysport", "xeomin", "wrinkle relaxer", "baby botox", "neurotoxin", "lip flip", "masseter"),
    ),
    ServiceRef(-2, "lip filler", "dermal filler", ("lips", "lip injections", "lip augmentation", "juvederm")),
    ServiceRef(-3, "cheek filler", "dermal filler", ("cheeks", "voluma")),
    ServiceRef(-4, "filler", "dermal filler", ("fillers", "dermal filler")),
    ServiceRef(-5, "hydrafacial", "hydrafacial", ("hydra facial", "hydro facial", "facial")),
    ServiceRef(-6, "microneedling", "microneedling", ("micro needling", "skin pen", "collagen induction")),
    ServiceRef(-7, "chemical peel", "chemical peel", ("peel",)),
    ServiceRef(-8, "laser hair removal", "laser hair removal", ("lhr", "laser", "hair removal")),
    ServiceRef(
        -10,
        "laser hair removal large area",
        "laser hair removal",
        ("full legs", "legs", "leg", "my back", "full back", "back hair", "chest hair", "my chest", "large area"),
    ),
    ServiceRef(
        -11,
        "laser hair removal small area",
        "laser hair removal",
        ("underarms", "underarm", "armpits", "upper lip", "chin", "bikini", "bikini line", "small area"),
    ),
    ServiceRef(-9, "consultation", "consultation", ("consult", "free consultation")),
]
# How each vocabulary service is written in articles (for picking sentences about it and not about others).
_WRITTEN_AS: dict[str, tuple[str, ...]] = {
    "laser hair removal large area": ("laser hair removal", "laser", "large area", "legs", "back"),
    "laser hair removal small area": ("laser hair removal", "laser", "small area", "underarms"),
    "botox": ("botox", "dysport", "neurotoxin", "xeomin", "wrinkle relaxing", "tox"),
    "lip filler": ("lip filler", "lips", "lip", "dermal filler"),
    "cheek filler": ("cheek filler", "cheeks", "cheek", "dermal filler"),
    "filler": ("filler", "fillers"),
    "hydrafacial": ("hydrafacial", "facial", "facials"),
    "microneedling": ("microneedling", "microneedle", "micro needling", "collagen"),
    "chemical peel": ("chemical peel", "peel", "peels"),
    "laser hair removal": ("laser hair removal", "laser", "hair removal"),
    "consultation": ("consultation", "consult"),
}


_QUESTION_WORDS = _wordset(
    "what whats how hows when where why who which is are do does did can could will would should included "
    "include about tell the your you for with and much many"
)
_POLICY_NOUNS = _wordset(
    "deposit deposits fee fees refund cancel cancellation reschedule parking park hours insurance payment pay late"
)
