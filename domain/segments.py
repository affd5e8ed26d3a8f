"""SMS segment counting (GSM 03.38 / UCS-2).

Why: carriers bill and rate-limit per segment, and a single curly quote turns a
GSM-7 message (160 chars per segment) into UCS-2 (70 per segment).  Campaign
cost estimates, the outbox's segment column and reply shaping all need the same
arithmetic, so it lives here, pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# GSM 03.38 basic character set (the escape 0x1B itself excluded).
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs two septets (escape + char).
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE_SEGMENT = 160
GSM7_MULTI_SEGMENT = 153
UCS2_SINGLE_SEGMENT = 70
UCS2_MULTI_SEGMENT = 67

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SegmentInfo:
    """How a text goes over the air.

    ``units`` is septets for GSM-7 (extension chars count 2) and UTF-16 code
    units for UCS-2 (astral characters such as most emoji count 2).
    ``segments`` is at least 1: even an empty message is one billed SMS.
    """

    encoding: Encoding
    segments: int
    units: int


def is_gsm7(text: str) -> bool:
    """True if every character is in the GSM 03.38 basic or extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _pack(unit_sizes: list[int], per_segment: int) -> int:
    """Segments needed when multi-unit characters may not straddle a boundary."""
    segments = 1
    used = 0
    for size in unit_sizes:
        if used + size > per_segment:
            segments += 1
            used = 0
        used += size
    return segments


def count_segments(text: str) -> SegmentInfo:
    """Encoding, segment count and unit count of ``text`` as an SMS.

    Multi-segment messages carry a User Data Header, leaving 153 septets (GSM-7)
    or 67 code units (UCS-2) per segment.  An escape pair or a surrogate pair is
    never split across segments, as handsets and Twilio do it.
    """
    if is_gsm7(text):
        sizes = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        units = sum(sizes)
        if units <= GSM7_SINGLE_SEGMENT:
            return SegmentInfo("GSM-7", 1, units)
        return SegmentInfo("GSM-7", _pack(sizes, GSM7_MULTI_SEGMENT), units)
    sizes = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    units = sum(sizes)
    if units <= UCS2_SINGLE_SEGMENT:
        return SegmentInfo("UCS-2", 1, units)
    return SegmentInfo("UCS-2", _pack(sizes, UCS2_MULTI_SEGMENT), units)


# Typographic characters that LLMs and word processors love and that silently
# force UCS-2.  Mapped to their plain GSM-7 equivalents.
_GSM_FRIENDLY = {
    "\u2018": "'",  # left single quote
    "\u2019": "'",  # right single quote / apostrophe
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",  # prime
    "\u00b4": "'",  # acute accent
    "`": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u2033": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\u2026": "...",  # ellipsis
    "\u00a0": " ",  # no-break space
    "\u2002": " ",
    "\u2003": " ",
    "\u2007": " ",
    "\u2009": " ",  # thin space
    "\u202f": " ",  # narrow no-break space
    "\t": " ",
    "\u200b": "",  # zero-width space
    "\u200c": "",
    "\u200d": "",
    "\u2060": "",
    "\ufeff": "",  # BOM
    "\u2022": "-",  # bullet
    "\u00b7": "-",
}
_GSM_FRIENDLY_TABLE = str.maketrans(_GSM_FRIENDLY)
_ASCII_REPLACEMENTS = tuple((char, plain) for char, plain in _GSM_FRIENDLY.items() if char.isascii())


def to_gsm_friendly(text: str) -> str:
    """Replace typographic punctuation with GSM-7 equivalents.

    Characters with no GSM-7 equivalent (emoji, most accented letters) are left
    alone: dropping them would change meaning; the message just goes as UCS-2.
    """
    if text.isascii():  # the usual text: only these few ASCII characters change, and translate() is per character
        for typographic, plain in _ASCII_REPLACEMENTS:
            text = text.replace(typographic, plain)
        return text
    return text.translate(_GSM_FRIENDLY_TABLE)
