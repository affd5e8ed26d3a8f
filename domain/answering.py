"""Composing direct answers: hours from the clinic's data, the relevant sentences of an article, one answer per
question of a multi-part message, the price variants a service describes.

Why: patients ask one thing and want that thing first ("No - we're closed on Sundays."), not a pasted article;
a long message with three questions wants three answers, and none about services they did not ask about.
Pure functions: the offline policy calls them with tool results and the clinic facts of its TurnContext.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.availability import DayHours, parse_hours
from domain.timeparse import WEEKDAYS, parse_when

Ranker = Callable[[str, Sequence[str]], Sequence[float]]


def _norm(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower().replace("\u2019", "'")
    return " ".join(re.sub(r"[^a-z0-9$:' ]+", " ", plain.replace("'", "")).split())


def clock_label(value: time) -> str:
    hour = value.strftime("%I").lstrip("0") or "12"
    return f"{hour}:{value.strftime('%M %p')}"


# ---------------------------------------------------------------------------------------------- hours
_HOLIDAYS: dict[str, Callable[[int], date]] = {
    "christmas": lambda y: date(y, 12, 25),
    "christmas eve": lambda y: date(y, 12, 24),
    "new years eve": lambda y: date(y, 12, 31),
    "new years": lambda y: date(y, 1, 1),
    "new year": lambda y: date(y, 1, 1),
    "july 4th": lambda y: date(y, 7, 4),
    "4th of july": lambda y: date(y, 7, 4),
    "independence day": lambda y: date(y, 7, 4),
    "thanksgiving": lambda y: _nth_weekday(y, 11, 3, 4),
    "memorial day": lambda y: _last_weekday(y, 5, 0),
    "labor day": lambda y: _nth_weekday(y, 9, 0, 1),
}
_HOLIDAY_NAMES = {
    "christmas": "Christmas Day",
    "christmas eve": "Christmas Eve",
    "new years eve": "New Year's Eve",
    "new years": "New Year's Day",
    "new year": "New Year's Day",
    "july 4th": "the Fourth of July",
    "4th of july": "the Fourth of July",
    "independence day": "the Fourth of July",
    "thanksgiving": "Thanksgiving",
    "memorial day": "Memorial Day",
    "labor day": "Labor Day",
}
_HOURS_QUESTION = re.compile(
    r"\b(?:open|opened|opening|close|closes|closing|closed|hours|abren|abierto|abiertos|cierran|horario)\b"
)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = (date(year, month + 1, 1) if month < 12 else date(year + 1, 1, 1)) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def is_hours_question(text: str) -> bool:
    return bool(_HOURS_QUESTION.search(_norm(text)))


def _day_hours(hours: Sequence[DayHours], day: date, closed: frozenset[date]) -> list[tuple[time, time]]:
    if day in closed:
        return []
    return [(h.start, h.end) for h in hours if h.weekday == day.weekday()]


def _span(ranges: list[tuple[time, time]]) -> str:
    return ", ".join(f"{clock_label(a)} to {clock_label(b)}" for a, b in ranges)


def _next_opening(hours: Sequence[DayHours], after: date, closed: frozenset[date]) -> tuple[date, time] | None:
    for offset in range(1, 15):
        day = after + timedelta(days=offset)
        ranges = _day_hours(hours, day, closed)
        if ranges:
            return day, ranges[0][0]
    return None


def _weekly(hours: Sequence[DayHours]) -> str:
    """'Mon-Fri 9:00 AM to 7:00 PM; Sat 9:00 AM to 3:00 PM; closed Sun'."""
    groups: list[tuple[list[int], str]] = []
    for weekday in range(7):
        ranges = [(h.start, h.end) for h in hours if h.weekday == weekday]
        label = _span(ranges) if ranges else "closed"
        if groups and groups[-1][1] == label and groups[-1][0][-1] == weekday - 1:
            groups[-1][0].append(weekday)
        else:
            groups.append(([weekday], label))
    parts = []
    for days, label in groups:
        names = WEEKDAYS[days[0]][:3].capitalize()
        if len(days) > 1:
            names += "-" + WEEKDAYS[days[-1]][:3].capitalize()
        parts.append(f"closed {names}" if label == "closed" else f"{names} {label}")
    return "; ".join(parts)


def hours_answer(
    text: str, *, now: datetime, tz: str, business_hours: dict[str, Any], holidays: Sequence[str]
) -> str | None:
    """A direct answer to an opening-hours question, or None when ``text`` is not one (or hours are unknown)."""
    normalised = _norm(text)
    if not _HOURS_QUESTION.search(normalised):
        return None
    hours = parse_hours(business_hours)
    if not hours:
        return None
    closed = frozenset(date.fromisoformat(h) for h in holidays if re.match(r"\d{4}-\d{2}-\d{2}$", h))
    local_now = now.astimezone(ZoneInfo(tz))
    today = local_now.date()
    # Which day: a holiday by name, else what the date parser reads ("sunday", "tomorrow", "the 17th").
    day: date | None = None
    label = ""
    for key in sorted(_HOLIDAYS, key=len, reverse=True):
        if re.search(rf"\b{key}\b", normalised):
            day = _HOLIDAYS[key](today.year)
            if day < today:
                day = _HOLIDAYS[key](today.year + 1)
            label = f"{_HOLIDAY_NAMES[key]} ({day.strftime('%a %b')} {day.day})"
            break
    when = parse_when(text, now, tz)
    weekday_word = r"(?:mon|tues|tue|wednes|wed|thurs|thu|fri|satur|sat|sun)(?:day)?s?"
    plural = re.search(r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)days\b|\bweekends\b", normalised) or (
        re.search(rf"\b{weekday_word}\b", normalised)
        and not re.search(rf"\b(?:this|next|coming|tomorrow|today)\b\s*{weekday_word}?", normalised)
    )
    yes_no = bool(re.match(r"^(?:are|is|r|do|does|will|can|u|you|ya|open|abren|estan)\b", normalised))
    if day is None and when is not None and when.date is not None:
        day = when.date
        label = f"on {WEEKDAYS[day.weekday()].capitalize()}s" if plural else _day_label(day, today)
    if day is None:
        if re.search(r"\b(?:right now|now|currently|at the moment)\b", normalised):
            ranges = _day_hours(hours, today, closed)
            open_now = any(a <= local_now.time() < b for a, b in ranges)
            if open_now:
                return f"Yes - we're open now, until {clock_label(max(b for _, b in ranges))} today."
            nxt = _next_opening(
                hours, today - timedelta(days=1) if _opens_later_today(ranges, local_now) else today, closed
            )
            return "No - we're closed right now." + (
                f" We open {_day_label(nxt[0], today)} at {clock_label(nxt[1])}." if nxt else ""
            )
        return f"Our hours: {_weekly(hours)}."
    ranges = _day_hours(hours, day, closed)
    asked_time = when.time if when is not None else None
    if not ranges:
        reason = (
            f"we're closed {label}" if label.startswith(("on ", "today", "tomorrow")) else f"we're closed on {label}"
        )
        nxt = _next_opening(hours, day, closed)
        tail = (
            f" The next opening is {WEEKDAYS[nxt[0].weekday()].capitalize()} at {clock_label(nxt[1])}." if nxt else ""
        )
        return f"No - {reason}.{tail}"
    if asked_time is not None:
        if any(a <= asked_time < b for a, b in ranges):
            return f"Yes - {label} we're open {_span(ranges)}."
        return f"No - {label} we open at {clock_label(ranges[0][0])} and close at {clock_label(ranges[-1][1])}."
    if re.search(r"\bclos", normalised) and not re.search(r"\bopen\b", normalised):
        return f"{label[:1].upper()}{label[1:]} we close at {clock_label(ranges[-1][1])} (open {_span(ranges)})."
    if yes_no:
        return f"Yes - {label} we're open {_span(ranges)}."
    return f"{label[:1].upper()}{label[1:]} we're open {_span(ranges)}."


def _opens_later_today(ranges: list[tuple[time, time]], local_now: datetime) -> bool:
    return any(local_now.time() < a for a, _ in ranges)


def _day_label(day: date, today: date) -> str:
    if day == today:
        return "today"
    if day == today + timedelta(days=1):
        return f"tomorrow ({WEEKDAYS[day.weekday()].capitalize()})"
    return f"on {WEEKDAYS[day.weekday()].capitalize()} {day.strftime('%b')} {day.day}"


# ---------------------------------------------------------------------------------------------- sentences
def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STOP = _wordset(
    "a an the and or of to for in on at is are do does did i im my me you your we our it its this that be can could "
    "will would should how what when where which who why much many there any some if with about after before get "
    "have has need want like just also really so than then from by as appointment appointments appt treatment "
    "session visit"
)


def split_sentences(text: str) -> list[str]:
    """Sentences and bullet lines of an article chunk; an article's own question ("When will I see results?")
    stays with the sentence that answers it."""
    pieces: list[str] = []
    for line in re.split(r"\n+", text):
        line = line.strip().lstrip("-*• ").strip()
        if not line:
            continue
        glue = False
        for piece in (p.strip() for p in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9$])", line)):
            if not piece:
                continue
            if glue and pieces:
                # A question the article asks itself, or a stub ("Chemical peel: depends on the strength."), stays
                # with the sentence that says the rest.
                pieces[-1] = f"{pieces[-1]} {piece}"
            else:
                pieces.append(piece)
            glue = pieces[-1].endswith("?") or len(pieces[-1]) < 45
    return pieces


# Words to add to a knowledge search for a kind of question (articles use the clinic's words, not the patient's).
_QUERY_HINTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(q), words)
    for q, words in (
        (r"\b(hurt|hurts|painful|pain|sting)\b", "pain numbing comfort feel"),
        (r"\b(work ?out|workout|gym|exercise|yoga)\b", "exercise aftercare"),
        (r"\bhow often\b", "every weeks"),
        (r"\bhow many (sessions|treatments|times)\b", "sessions series"),
        (r"\b(downtime|recovery)\b", "downtime"),
        (r"\bhow long\b.*\blast", "results last months"),
        (r"\b(get it back|refund)\b", "refund deposit cancel"),
    )
)


def expand_query(question: str) -> str:
    """``question`` plus the clinic's words for what it asks about."""
    extra = [words for asked, words in _QUERY_HINTS if asked.search(_norm(question))]
    return " ".join([question, *extra])[:300]


def is_question(part: str) -> bool:
    """A question (or a bare topic like "price?"), not a statement ("I'm thinking about cheek filler")."""
    n = _norm(part)
    return (
        bool(
            re.match(
                r"^(is|are|do|does|did|can|could|will|would|should|what|whats|how|hows|when|whens|where|why|who|which|"
                r"any|r|u|cost|price|pricing|downtime|results|deposit)\b",
                n,
            )
        )
        or len(n.split()) <= 2
    )


def _stem(word: str) -> str:
    for suffix in ("ings", "ing", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in _norm(text).split() if w not in _STOP and len(w) > 1}


# What an answer to a kind of question usually says (patients and articles rarely share the exact words).
_TOPIC_HINTS: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (re.compile(q), re.compile(a))
    for q, a in (
        (r"\b(work ?out|workout|gym|exercise|yoga|run|sweat)\b", r"\b(exercise|yoga|workout|sweat)"),
        (r"\bhow often\b|\bhow frequently\b", r"\b(every|each) \d+|\bevery (week|month|few)|\bmonthly\b|\bonce a\b"),
        (r"\bhow many sessions\b|\bsessions\b|\bhow many (treatments|visits|times)\b", r"\bsessions?\b|\bseries\b"),
        (
            r"\bdowntime\b|\brecovery\b|\bback to work\b",
            r"\b(\d+ (to|-) \d+ (days|weeks)|redness|swelling|flak\w*|bruis\w*|none|no downtime|practically none)\b",
        ),
        (r"\bhow long\b.*\blast", r"\b\d+ ?(to|-) ?\d+ (months|years|weeks)\b|\b\d+ (months|years)\b"),
        (r"\b(hurt|hurts|pain|painful|sting)\b", r"\b(pinch|numb\w*|snap|feels like|stings?|sandpaper|comfort\w*)\b"),
        (r"\bresults?\b|\bsee (a )?difference\b|\bkick in\b", r"\b(results?|days|weeks|show)\b"),
        (r"\b(how far|advance|ahead of time)\b", r"\b(ahead|advance|weeks?)\b"),
        (r"\b(how early|arrive|get there)\b", r"\b(arrive|early|minutes)\b"),
        (r"\b(park|parking)\b", r"\bpark"),
        (r"\b(shave|shaving|wax|waxing)\b", r"\b(shave|shaving|wax)\b"),
        (r"\b(late|running late)\b", r"\blate\b"),
        (r"\b(insurance)\b", r"\binsurance\b"),
        (r"\b(validate)\b", r"\bvalidat"),
        (r"\b(get it back|refund|refunded|money back)\b", r"\brefund"),
        (r"\b(included|include|what do (i|you) get)\b", r"\b(included|includes)\b"),
        (r"\bhow much\b|\bprice\b|\bcost\b", r"\$\d|\bcosts?\b|\bfree\b"),
    )
)


def _hint_bonus(question: str, sentence: str) -> float:
    q, a = _norm(question), _norm(sentence)
    return min(0.7, sum(0.35 for asked, said in _TOPIC_HINTS if asked.search(q) and said.search(a)))


def score_sentences(
    question: str,
    candidates: Sequence[str],
    *,
    ranker: Ranker | None = None,
    must_mention: Sequence[str] = (),
    avoid: Sequence[str] = (),
    bonus: dict[str, float] | None = None,
    exclude: Sequence[str] = (),
    focus: str | None = None,
) -> list[tuple[str, float]]:
    """Each usable candidate with how well it answers ``question`` (see ``pick_sentences``), in document order."""
    pool = [
        c
        for c in dict.fromkeys(c.strip() for c in candidates)
        if c and len(c) <= 400 and c not in exclude and not c.endswith(":")  # a lone list label answers nothing
    ]
    if avoid:
        pool = [c for c in pool if not any(_mentions(c, a) for a in avoid)] or pool
    if not pool:
        return []
    named = {c for c in pool if must_mention and any(_mentions(c, m) for m in must_mention)}
    plain = [_without_context(c) for c in pool]
    # What is asked, without the service's own name (whether a sentence is about that service is ``named``).
    asked = content_words(focus or question)
    asked_pairs = _pairs(focus or question)
    # Similarity of what is asked to what each sentence says (the service it is about is scored apart, ``named``).
    semantic = list(ranker(focus or question, plain)) if ranker is not None else [0.0] * len(pool)
    about_price = bool(re.search(r"\b(price|cost|how much|\$|charge|fee)\b", _norm(question)))
    scored = []
    for i, candidate in enumerate(pool):
        overlap = len(asked & content_words(plain[i])) / (1 + len(asked)) + 0.3 * len(asked_pairs & _pairs(plain[i]))
        relevance = (
            semantic[i]
            + overlap
            + _hint_bonus(question, plain[i])
            + (bonus.get(candidate, 0.0) if bonus else 0.0)
            - (0.25 if not about_price and _MONEY.search(plain[i]) else 0.0)
            + (
                0.35
                if candidate in named
                else (-0.25 if must_mention and not (bonus or {}).get(candidate, 0) > 0.3 else 0)
            )
            - (0.3 if re.match(r"^\w+ (means|is when|refers to)\b", plain[i]) else 0.0)
            - (
                0.4
                if re.match(r"^(here is|here are|heres|this is what|below|the good news)\b", _norm(plain[i]))
                else 0.0
            )
            - (0.15 if len(plain[i]) > 220 else 0.0)
            + _label_bonus(asked, plain[i] if plain[i] == candidate else candidate[1:].replace("]", ":", 1))
        )
        scored.append((candidate, relevance))
    return scored


def pick_sentences(
    question: str,
    candidates: Sequence[str],
    *,
    limit: int = 1,
    max_chars: int = 220,
    **scoring: Any,
) -> list[str]:
    """The sentences of ``candidates`` that best answer ``question``.

    Ranked by the ranker's similarity (sentence embeddings) when given, plus shared words and phrases, the
    clinic's words for what is asked (``_TOPIC_HINTS``), a bonus for naming the service asked about
    (``must_mention``) and for the best-ranked article (``bonus``); sentences naming a service not asked about
    (``avoid``) are left out.  With nothing to go on, the chunk's own order (its first sentences lead).
    """
    scored = score_sentences(question, candidates, **scoring)
    if not scored:
        return []
    best = max(r for _, r in scored)
    order = list(range(len(scored))) if best <= 0 else sorted(range(len(scored)), key=lambda i: -scored[i][1])
    out: list[str] = []
    used = 0
    for index in order:
        sentence, relevance = scored[index]
        if out and (relevance <= 0 < best or relevance < 0.8 * best):
            break
        if used + len(sentence) > max_chars and out:
            break
        out.append(sentence)
        used += len(sentence) + 1
        if len(out) >= limit:
            break
    return out


def _without_context(sentence: str) -> str:
    return re.sub(r"^\[[^\]]*\]\s*", "", sentence)


def _pairs(text: str) -> set[tuple[str, str]]:
    words = _norm(text).split()
    return {(a, b) for a, b in zip(words, words[1:], strict=False) if not (a in _STOP and b in _STOP)}


def _label_bonus(asked: set[str], sentence: str) -> float:
    """ "What it costs: $99 per month." answers "how much is it": a label that names what is asked."""
    head, sep, _ = sentence.partition(":")
    if not sep or len(head) > 40:
        return 0.0
    return (
        0.3 if asked & content_words(head) or (content_words(head) & {"cost", "included", "price"} and asked) else 0.0
    )


def _mentions(sentence: str, phrase: str) -> bool:
    return re.search(rf"(?<![a-z0-9]){re.escape(_norm(phrase))}(?![a-z0-9])", _norm(sentence)) is not None


# ---------------------------------------------------------------------------------------------- questions
_SPLIT = re.compile(
    r"\?+|(?<=[a-z0-9)])[.;!]\s+|\s*\+\s*|\s+also[,:]?\s+|,\s*(?:also|and)\s+|"
    r"\s+and\s+(?=(?:how|what|whats|when|is|are|do|does|can|will|any|should|where|which|who|if)\b)|"
    r",\s*(?=(?:how|what|whats|when|is|are|do|does|can|will|any|should|where|which)\b)|:\s+",
    re.IGNORECASE,
)


def split_questions(text: str) -> list[str]:
    """The separate questions of one message ("how much is X, how many sessions and what's the downtime?")."""
    parts = [p.strip(" ,.;:-") for p in _SPLIT.split(text.replace("\n", " "))]
    return [p for p in parts if len(p.split()) >= 2 or re.search(r"\b(?:price|cost|downtime|price\?)\b", p.lower())]


# ---------------------------------------------------------------------------------------------- prices
_MONEY = re.compile(r"\$\d[\d,]*(?:\.\d\d)?")


def price_variants(description: str, base_price: str) -> list[str]:
    """Sentences of a service description that state other prices (half syringe, packages, typical visit)."""
    out = []
    for sentence in split_sentences(description):
        amounts = _MONEY.findall(sentence)
        if not amounts:
            continue
        others = [a for a in amounts if a != base_price.split()[0]]
        if not others:
            continue
        clause = sentence
        if base_price.split()[0] in sentence:
            # "$750 per syringe; a half-syringe option is $450." -> the part naming the variant.
            pieces = [p.strip() for p in re.split(r";|, or | or ", sentence) if any(o in p for o in others)]
            clause = "; ".join(pieces) or sentence
        out.append(clause.rstrip(".") + ".")
    return out
