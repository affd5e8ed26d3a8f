"""SMS segment arithmetic: what carriers bill."""

from __future__ import annotations

import pytest

from domain.segments import count_segments, is_gsm7, to_gsm_friendly


@pytest.mark.parametrize(
    ("text", "encoding", "segments", "units"),
    [
        ("", "GSM-7", 1, 0),
        ("Hello", "GSM-7", 1, 5),
        ("a" * 160, "GSM-7", 1, 160),
        ("a" * 161, "GSM-7", 2, 161),
        ("a" * 306, "GSM-7", 2, 306),
        ("a" * 307, "GSM-7", 3, 307),
        ("€" * 80, "GSM-7", 1, 160),  # extension chars cost two septets
        ("€" * 81, "GSM-7", 2, 162),
        ("{}[]~^|\\", "GSM-7", 1, 16),
        ("Ça coûte 5£ à l'hôpital", "UCS-2", 1, 23),  # û and ô are not GSM-7
        ("Café Ñandú é à", "UCS-2", 1, 14),  # ú is not GSM-7
        ("é à ù ì ò Ñ ü ß Ä Ö", "GSM-7", 1, 19),
        ("x" * 70 + "’", "UCS-2", 2, 71),
        ("’" * 70, "UCS-2", 1, 70),
        ("’" * 134, "UCS-2", 2, 134),
        ("’" * 135, "UCS-2", 3, 135),
        ("😀", "UCS-2", 1, 2),  # astral: a surrogate pair
        ("😀" * 35, "UCS-2", 1, 70),
        ("😀" * 36, "UCS-2", 2, 72),
    ],
)
def test_count_segments(text: str, encoding: str, segments: int, units: int) -> None:
    info = count_segments(text)
    assert (info.encoding, info.segments, info.units) == (encoding, segments, units)


def test_escape_pair_is_not_split_across_segments() -> None:
    # Segment 1 holds 152 septets; the escape pair for € does not fit in the
    # 153rd, so it opens segment 2, and the last "a" spills into segment 3.
    text = "a" * 152 + "€" + "a" * 152
    info = count_segments(text)
    assert info.units == 306
    assert info.segments == 3  # naive ceil(306/153) would say 2


def test_surrogate_pair_is_not_split_across_segments() -> None:
    text = "a" * 66 + "😀" + "a" * 66  # 134 units; the emoji would straddle unit 67
    info = count_segments(text)
    assert info.units == 134
    assert info.segments == 3


@pytest.mark.parametrize(
    ("raw", "friendly"),
    [
        ("It’s “great”", 'It\'s "great"'),
        ("9–5 — daily", "9-5 - daily"),
        ("Wait…", "Wait..."),
        ("a\u00a0b\u202fc", "a b c"),
        ("zero\u200bwidth", "zerowidth"),
        ("emoji stays 😀", "emoji stays 😀"),
    ],
)
def test_to_gsm_friendly(raw: str, friendly: str) -> None:
    assert to_gsm_friendly(raw) == friendly


def test_gsm_friendly_text_becomes_gsm7() -> None:
    raw = "We’re open 9–5… see you “soon”"
    assert not is_gsm7(raw)
    assert is_gsm7(to_gsm_friendly(raw))
    assert count_segments(to_gsm_friendly(raw)).encoding == "GSM-7"
