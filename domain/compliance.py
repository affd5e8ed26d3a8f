"""SMS compliance rules: opt-out/opt-in/help keywords, quiet hours, templates.

Why here and pure: these rules run before the model ever sees a message and
are checked by every sender.  Getting them wrong is a legal problem (TCPA,
CTIA), so they are plain functions with exhaustive tests.

Keyword policy, in short:
- A message that is *only* a carrier keyword (STOP, STOPALL, UNSUBSCRIBE,
  CANCEL, END, QUIT, REVOKE, OPTOUT; Spanish ALTO, PARAR, DETENER, BAJA,
  CANCELAR), ignoring case, punctuation and emoji, is an opt-out.  A lone
  "CANCEL" is an opt-out even though a patient may mean an appointment:
  carriers (and Twilio's Advanced Opt-Out) already treat it so, and our consent
  ledger must agree with the carrier's block list.
- STOP/UNSUBSCRIBE/QUIT/REVOKE/OPTOUT with only politeness around them
  ("stop please", "STOP NOW!!") is an opt-out.
- Plain-language revocations ("stop texting me", "remove me from your list",
  "no me envíes más mensajes") are opt-outs wherever they appear.
- Anything else that merely contains such a word ("cancel my appointment",
  "stop by tomorrow?", "can I cancel?") is not: it goes to the dialogue.
- Only START-family keywords re-subscribe.  A bare "yes" / "yes please" is
  ordinary dialogue (it confirms bookings), also after STOP: it counts as an
  opt-in only as the answer to an explicit YES question the clinic sent
  (``awaiting_opt_in``), and the pipeline sends no such question today.

Consent ledger, in short (``ConsentRecord``; one row per fact, never rewritten):
- two scopes of consent, separate facts: *transactional* (replies in a
  conversation the patient started, reminders and notices about their visits)
  and *marketing* (campaigns, marketing automations);
- STOP (or the carrier's block) is an opt-out of scope ``all``: nothing but the
  confirmation (and a safety reply to the patient's own emergency text) goes
  out while it stands.  It does not erase an earlier marketing grant; it
  suspends it;
- START restores what STOP revoked, never more: the opt-out is lifted and
  transactional texts resume; marketing resumes only if it had been granted
  before, explicitly;
- a marketing grant is its own explicit record with the wording the patient
  agreed to and where (``EXPLICIT_SOURCES``); a keyword is never one;
- a ``request`` records that someone asked for texts to a number (the web chat's
  "continue by text" form) and grants nothing: only the number itself can
  confirm (by texting us) — so nobody can opt an arbitrary phone in.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from domain.segments import to_gsm_friendly


def _wordset(words: str) -> frozenset[str]:
    """A set of words written as one space-separated string (long vocabularies stay readable)."""
    return frozenset(words.split())


class KeywordIntent(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


OPT_OUT_KEYWORDS: frozenset[str] = _wordset(
    "stop stopall unsubscribe cancel end quit revoke optout alto parar detener baja cancelar"
)
# Keywords that stay an opt-out with courtesy words around them.  CANCEL/END
# are excluded on purpose: "cancel please" after a reminder is about the visit.
_STRONG_OPT_OUT: frozenset[str] = frozenset({"stop", "stopall", "unsubscribe", "quit", "revoke", "optout", "alto"})
_COURTESY: frozenset[str] = _wordset(
    "please pls plz now it thanks thank you thx ty immediately asap just ok okay por favor ya gracias all me i said"
)
OPT_IN_KEYWORDS: frozenset[str] = frozenset({"start", "unstop", "subscribe", "optin", "comenzar", "iniciar"})
HELP_KEYWORDS: frozenset[str] = frozenset({"help", "info", "ayuda"})
_AFFIRMATIVE_OPT_IN: frozenset[str] = frozenset({"yes", "y", "si"})

# Plain-language revocations, matched on the normalised text (lower case,
# accents removed, apostrophes dropped, single spaces).
_REVOCATION_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        r"\bstop (texting|messaging|sending|contacting|txting|msging|emailing|calling)\b",
        r"\bstop (all )?(the )?(texts|messages|msgs|sms)\b",
        r"\bno more (texts|messages|msgs|sms|txts)\b",
        r"\b(dont|do not|never) (text|message|msg|txt|contact|sms) me\b",
        r"\b(dont|do not) (send|want) (me )?(any )?(more )?(texts|messages|msgs)\b",
        r"\bremove me from (your|the|this)( \w+)? (list|texts|messages|contacts)\b",
        r"\btake me off (your|the|this)( \w+)? (list|texts|messages)\b",
        r"\bunsubscribe me\b",
        r"\bopt me out\b",
        r"\b(i want to|please|pls) (unsubscribe|opt out|optout)\b",
        r"\blose my number\b",
        # Spanish
        r"\bdej(a|e|en|ar) de (enviar|mandar|escribir)(me|nos)?\b",
        r"\bno me (envie|envies|envien|mande|mandes|manden|escriba|escribas|escriban) mas\b",
        r"\bno quiero (recibir )?mas (mensajes|textos|sms)\b",
        r"\b(dame|darme|denme) de baja\b",
    )
)

_EDGE = re.compile(r"^[\W_]+|[\W_]+$", re.UNICODE)
_NON_WORD = re.compile(r"[^a-z0-9 ]+")


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalise_for_keywords(body: str) -> str:
    """Lower case, accents and apostrophes removed, punctuation/emoji as spaces."""
    text = _strip_accents(to_gsm_friendly(body)).lower().replace("'", "")
    text = text.replace("opt-out", "optout").replace("opt out", "optout")
    text = text.replace("opt-in", "optin").replace("opt in", "optin")
    text = _NON_WORD.sub(" ", text)
    return " ".join(text.split())


def classify_keyword(body: str, awaiting_opt_in: bool = False) -> KeywordIntent | None:
    """The compliance intent of an inbound message, or None for ordinary text.

    ``awaiting_opt_in``: we just asked the patient to reply YES to subscribe, so a
    bare YES counts as opt-in.  Otherwise YES is ordinary dialogue.
    """
    text = normalise_for_keywords(body)
    if not text:
        return None
    words = text.split()
    if len(words) == 1:
        word = words[0]
        if word in OPT_OUT_KEYWORDS:
            return KeywordIntent.OPT_OUT
        if word in OPT_IN_KEYWORDS:
            return KeywordIntent.OPT_IN
        if word in HELP_KEYWORDS:
            return KeywordIntent.HELP
        if awaiting_opt_in and word in _AFFIRMATIVE_OPT_IN:
            return KeywordIntent.OPT_IN
        return None
    # "STOP STOP", "stop please", "please stop now"
    keywords = [w for w in words if w in _STRONG_OPT_OUT]
    if keywords and all(w in _STRONG_OPT_OUT or w in _COURTESY for w in words):
        return KeywordIntent.OPT_OUT
    if any(p.search(text) for p in _REVOCATION_PATTERNS):
        return KeywordIntent.OPT_OUT
    if all(w in OPT_IN_KEYWORDS or w in _COURTESY for w in words) and any(w in OPT_IN_KEYWORDS for w in words):
        return KeywordIntent.OPT_IN
    if (
        awaiting_opt_in
        and all(w in _AFFIRMATIVE_OPT_IN or w in _COURTESY for w in words)
        and any(w in _AFFIRMATIVE_OPT_IN for w in words)
    ):
        return KeywordIntent.OPT_IN
    return None


# ---------------------------------------------------------------- quiet hours
# The window itself is the send decision's (``domain.audience``: the marketing window, a clinic's quiet hours);
# this is only the calendar arithmetic, so it names no default hours of its own.
def _check_window(start: time, end: time) -> None:
    if start >= end:
        raise ValueError("send window start must be before its end")


def next_allowed_send_time(now_utc: datetime, tz: str, start: time, end: time) -> datetime:
    """``now_utc`` if sending is allowed now, else the next local ``start``, in UTC.

    Marketing is deferred, never dropped: the caller schedules the send for the
    returned instant.  Computed on the local calendar with zoneinfo, so a DST
    change overnight still yields 08:00 local the next morning.
    """
    _check_window(start, end)
    if now_utc.tzinfo is None:
        raise ValueError("now_utc must be timezone-aware")
    zone = ZoneInfo(tz)
    local = now_utc.astimezone(zone)
    local_time = local.time().replace(tzinfo=None)
    if start <= local_time < end:
        return now_utc.astimezone(ZoneInfo("UTC"))
    day = local.date() if local_time < start else local.date() + timedelta(days=1)
    # Round-trip through UTC so a start inside a DST gap maps to a real instant.
    return datetime.combine(day, start, tzinfo=zone).astimezone(ZoneInfo("UTC"))


# ---------------------------------------------------------------- templates
def _gsm(text: str) -> str:
    return to_gsm_friendly(text)


def help_reply(clinic_name: str, clinic_phone: str) -> str:
    """Reply to HELP: who we are, how to reach a human, how to stop."""
    return _gsm(
        f"{clinic_name}: appointment texts & info. For help call {clinic_phone}. "
        "Msg&data rates may apply. Reply STOP to opt out."
    )


def opt_out_confirmation(clinic_name: str) -> str:
    """The one message allowed after an opt-out (CTIA): confirm, no marketing."""
    return _gsm(f"{clinic_name}: You're unsubscribed and will get no more texts. Reply START to resubscribe.")


def opt_in_confirmation(clinic_name: str, *, marketing: bool = False) -> str:
    """Confirms exactly what the patient now gets: offers only if they had granted marketing before."""
    what = "appointment texts and offers" if marketing else "appointment texts"
    return _gsm(
        f"{clinic_name}: You're subscribed to {what}. Msg frequency varies. "
        "Msg&data rates may apply. Reply HELP for help. Reply STOP to opt out."
    )


# ---------------------------------------------------------------- consent ledger
class ConsentScope(StrEnum):
    ALL = "all"  # STOP / a carrier block: every text the clinic sends
    TRANSACTIONAL = "transactional"  # conversation replies, reminders, notices about the patient's visits
    MARKETING = "marketing"  # campaigns and marketing automations


class ConsentKind(StrEnum):
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"
    HELP = "help"
    REQUEST = "request"  # someone asked for texts to this number; grants nothing until the number confirms


class ConsentSource(StrEnum):
    SMS_KEYWORD = "sms_keyword"  # the number itself texted STOP / START / HELP
    CARRIER = "carrier"  # the carrier reported the number unsubscribed (Twilio 21610)
    STAFF = "staff"  # given in person, recorded by staff (``medspa clients consent``)
    WEB_FORM = "web_form"  # a form on the clinic's site
    SEED = "seed"  # demo data
    IMPORT = "import"  # a client-list import, carrying where, when and in what words the patient agreed


# Where an explicit marketing grant can come from: a record of what the patient agreed to, in their words.  An
# import is one only with its provenance (``ConsentRecord`` refuses an imported opt-in without it).
EXPLICIT_SOURCES = frozenset({ConsentSource.STAFF, ConsentSource.WEB_FORM, ConsentSource.SEED, ConsentSource.IMPORT})
# Who can speak for a phone number that is not (yet) a client's (e.g. the on-call phone): the number itself, its
# carrier, or staff who met the person.  A web form cannot (anyone can type any number into it).
NUMBER_SOURCES = frozenset({ConsentSource.SMS_KEYWORD, ConsentSource.CARRIER, ConsentSource.STAFF})


class ConsentError(ValueError):
    """A consent record that the rules do not allow (one clear sentence)."""


@dataclass(frozen=True)
class ConsentRecord:
    """One consent-ledger row: what happened, to which scope, where, in whose words."""

    kind: ConsentKind
    scope: ConsentScope
    source: ConsentSource
    wording: str
    # When and where the patient gave it, when that was before it is recorded (an import's provenance: the date
    # and the form or system the client list says it came from).  Recorded as given, never invented.
    given_at: datetime | None = None
    given_via: str = ""

    def __post_init__(self) -> None:
        if self.given_at is not None and self.given_at.tzinfo is None:
            raise ConsentError("when consent was given must be a timezone-aware time")
        if self.kind is ConsentKind.OPT_IN and self.source is ConsentSource.IMPORT:
            # An imported "yes" is only as good as its evidence: where, when and what the patient agreed to.
            missing = [
                what
                for what, present in (
                    ("source", self.given_via.strip()),
                    ("date", self.given_at),
                    ("wording", self.wording.strip()),
                )
                if not present
            ]
            if missing:
                raise ConsentError(f"imported consent needs its provenance; missing: {', '.join(missing)}")
        if self.kind is ConsentKind.OPT_IN and self.scope is ConsentScope.ALL:
            raise ConsentError("consent is granted per scope (transactional or marketing), never to everything")
        if self.kind is ConsentKind.OPT_OUT and self.scope is ConsentScope.TRANSACTIONAL:
            raise ConsentError("an opt-out of appointment texts is an opt-out of everything (scope all)")
        if self.kind is ConsentKind.OPT_IN and self.scope is ConsentScope.MARKETING:
            if self.source not in EXPLICIT_SOURCES:
                raise ConsentError(f"marketing consent needs an explicit grant, not a {self.source.value} record")
            if not self.wording.strip():
                raise ConsentError("marketing consent needs the wording the patient agreed to")

    def client_changes(self) -> dict[str, str]:
        """The client's consent columns after this record: ``consent_state`` (transactional, and the STOP block)
        and ``marketing_consent``.  An opt-out of ``all`` leaves ``marketing_consent`` alone on purpose: the
        opt-out suspends it, and START (a transactional opt-in) restores exactly what STOP revoked."""
        if self.kind is ConsentKind.OPT_OUT:
            if self.scope is ConsentScope.MARKETING:
                return {"marketing_consent": "revoked"}
            return {"consent_state": "opted_out"}
        if self.kind is ConsentKind.OPT_IN:
            if self.scope is ConsentScope.MARKETING:
                return {"marketing_consent": "granted"}
            return {"consent_state": "opted_in"}
        return {}


def keyword_consent(intent: KeywordIntent, body: str) -> ConsentRecord:
    """The ledger record of a carrier keyword the number texted: STOP revokes everything, START restores (a
    transactional opt-in that lifts the opt-out, never a marketing grant), HELP changes nothing."""
    wording = body[:500]
    if intent is KeywordIntent.OPT_OUT:
        return ConsentRecord(ConsentKind.OPT_OUT, ConsentScope.ALL, ConsentSource.SMS_KEYWORD, wording)
    if intent is KeywordIntent.OPT_IN:
        return ConsentRecord(ConsentKind.OPT_IN, ConsentScope.TRANSACTIONAL, ConsentSource.SMS_KEYWORD, wording)
    return ConsentRecord(ConsentKind.HELP, ConsentScope.TRANSACTIONAL, ConsentSource.SMS_KEYWORD, wording)


def handover_request(wording: str) -> ConsentRecord:
    """The ledger record of a web chat patient asking to continue by text at a number: a ``request``, which grants
    nothing — anyone can type any number into a form; only the number itself can confirm, by texting us."""
    return ConsentRecord(ConsentKind.REQUEST, ConsentScope.TRANSACTIONAL, ConsentSource.WEB_FORM, wording)
