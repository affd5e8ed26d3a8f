"""The words of dates and times: weekdays, months, numbers, common misspellings, and the normalisation that
reads a message against them.
"""

from __future__ import annotations

import calendar
import re
import unicodedata

from rapidfuzz.distance import OSA

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_ALIASES: dict[str, int] = {
    **{name: i for i, name in enumerate(WEEKDAYS)},
    "mon": 0,
    "tue": 1,
    "tues": 1,
    "tu": 1,
    "wed": 2,
    "weds": 2,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "thr": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
    # frequent misspellings that fuzzy matching would miss or that are cheap to list
    "wendsday": 2,
    "wensday": 2,
    "wednsday": 2,
    "wedsday": 2,
    "thrusday": 3,
    "thursdsy": 3,
    "teusday": 1,
    "tuseday": 1,
    "satuday": 5,
    "saterday": 5,
    "frday": 4,
    "fryday": 4,
    # Spanish
    "lunes": 0,
    "martes": 1,
    "miercoles": 2,
    "jueves": 3,
    "viernes": 4,
    "sabado": 5,
    "domingo": 6,
}
# Abbreviations that are also ordinary words: only a weekday with context.
_WEAK_WEEKDAYS = frozenset({"sun", "sat", "wed", "tu", "thr", "mon"})
_MONTHS: dict[str, int] = {}
for _i, _name in enumerate(calendar.month_name):
    if _i:
        _MONTHS[_name.lower()] = _i
        _MONTHS[_name.lower()[:3]] = _i
_MONTHS.update({"sept": 9})
WORD_NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "a": 1,
    "an": 1,
    "couple": 2,
    "few": 3,
}
_SPELLING: dict[str, str] = {
    "tmrw": "tomorrow",
    "tmr": "tomorrow",
    "tmw": "tomorrow",
    "tmrow": "tomorrow",
    "tomoz": "tomorrow",
    "2morrow": "tomorrow",
    "2moro": "tomorrow",
    "2mrw": "tomorrow",
    "2morow": "tomorrow",
    "tomm": "tomorrow",
    "tommorow": "tomorrow",
    "tomorow": "tomorrow",
    "tommorrow": "tomorrow",
    "tomorro": "tomorrow",
    "2day": "today",
    "tdy": "today",
    "2nite": "tonight",
    "tonite": "tonight",
    "mornin": "morning",
    "morn": "morning",
    "arvo": "afternoon",
    "aft": "afternoon",
    "eve": "evening",
    "nxt": "next",
    "wk": "week",
    "wks": "weeks",
    "wkend": "weekend",
    "hrs": "hours",
}
# Words corrected by edit distance (OSA) when not found above.
_FUZZY_TARGETS = (*WEEKDAYS, "tomorrow", "morning", "afternoon", "evening", "tonight", "weekend")
# Real words within the edit distance of a target.
_FUZZY_STOPLIST = frozenset({"someday", "somedays", "weekday", "weekdays", "tonights"})

_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_WEEKDAY_RE = "|".join(sorted(_WEEKDAY_ALIASES, key=len, reverse=True))
_NUM_WORD_RE = "|".join(k for k in WORD_NUMBERS if k not in ("a", "an", "couple", "few"))


def _fuzzy_word(word: str) -> str:
    if len(word) < 5 or word in _FUZZY_STOPLIST or not word.isalpha():
        return word
    best, best_dist = word, 99
    for target in _FUZZY_TARGETS:
        allowed = 1 if len(target) <= 6 or len(word) <= 6 else 2
        dist = OSA.distance(word, target, score_cutoff=allowed)
        if dist <= allowed and dist < best_dist and word[0] == target[0]:
            best, best_dist = target, dist
    return best


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace("\u2019", "'").replace("'", "").replace("@", " at ")
    text = re.sub(r"\b([ap])\.\s?m\.?", r"\1m", text)
    text = re.sub(r"\b(\d{1,2}(?:[:.]\d{2})?)\s*([ap])\b", r"\1\2m", text)  # "3p" -> "3pm"
    text = re.sub(r"(\d(?:am|pm)?)\s*(?:-|\u2013|\u2014)\s*(\d)", r"\1 to \2", text)  # "2-4pm" -> "2 to 4pm"
    text = re.sub(r"[^\w:/.]+", " ", text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)
    words = [_fuzzy_word(_SPELLING.get(w, w)) for w in text.split()]
    return " " + " ".join(words) + " "
