"""Shaping model output into a text message.

Why: a model's reply can be long, full of curly quotes and newlines; each of
those costs segments (and money) or turns into UCS-2.  Cutting mid-sentence
reads as a bug to a patient, so we cut at sentence boundaries, and only when a
single sentence is too long at a word boundary with a GSM-friendly "...".
"""

from __future__ import annotations

import re

from domain.segments import to_gsm_friendly

DEFAULT_SMS_LIMIT = 320  # two GSM-7 segments plus a little; the product's budget per reply

_WS = re.compile(r"\s+")
# A sentence ends at . ! ? (possibly repeated, possibly followed by a closing
# quote or bracket) followed by whitespace or the end of the text.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
# Tokens ending in a period that do not end a sentence.
_ABBREVIATIONS = frozenset(
    {
        "dr.",
        "mr.",
        "mrs.",
        "ms.",
        "st.",
        "vs.",
        "etc.",
        "e.g.",
        "i.e.",
        "a.m.",
        "p.m.",
        "approx.",
        "no.",
        "apt.",
        "appt.",
    }
)
_ELLIPSIS = "..."


def _is_abbreviation(text: str, end: int) -> bool:
    start = text.rfind(" ", 0, end) + 1
    return text[start:end].lower() in _ABBREVIATIONS


def _sentence_cut(text: str, limit: int) -> int | None:
    """Index just after the last sentence end within ``limit`` chars, if any."""
    best: int | None = None
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if end > limit:
            break
        if _is_abbreviation(text, end):
            continue
        best = end
    return best


def shape_sms_reply(text: str, limit: int = DEFAULT_SMS_LIMIT) -> str:
    """Collapse whitespace, make GSM friendly and fit within ``limit`` characters.

    Over the limit: keep whole sentences up to the last sentence end that fits.
    If not even the first sentence fits, keep whole words and append "...".
    """
    if limit < len(_ELLIPSIS) + 1:
        raise ValueError("limit too small")
    shaped = _WS.sub(" ", to_gsm_friendly(text)).strip()
    if len(shaped) <= limit:
        return shaped
    cut = _sentence_cut(shaped, limit)
    if cut is not None:
        return shaped[:cut].rstrip()
    budget = limit - len(_ELLIPSIS)
    head = shaped[: budget + 1]
    space = head.rfind(" ")
    head = head[:space] if space > 0 else shaped[:budget]
    return head.rstrip(" ,;:-") + _ELLIPSIS
