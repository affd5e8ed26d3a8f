"""Matching free text to the clinic's services.

Why: patients say "tox", "lip filler", "hydra facial" or "botex"; the offline
policy and the tool layer must map that to a service id the clinic actually
offers.  Services are matched, best first, by their own name, by their own
synonyms, and by the built-in category synonyms below; misspellings by a small
edit distance.  Deterministic: ties resolve by specificity, then input order.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA


def _wordset(words: str) -> frozenset[str]:
    """A set of words written as one space-separated string (long vocabularies stay readable)."""
    return frozenset(words.split())


@dataclass(frozen=True)
class ServiceRef:
    id: int
    name: str
    category: str
    synonyms: tuple[str, ...] = ()


# Canonical category -> phrases patients use for it.  A service belongs to a
# category when its name, category or own synonyms contain one of the phrases.
CATEGORY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "neurotoxin": (
        "neurotoxin",
        "botox",
        "tox",
        "dysport",
        "xeomin",
        "jeuveau",
        "daxxify",
        "wrinkle relaxer",
        "wrinkle relaxers",
        "neuromodulator",
        "baby botox",
        "lip flip",
    ),
    "dermal filler": (
        "dermal filler",
        "filler",
        "fillers",
        "lip filler",
        "lips",
        "juvederm",
        "restylane",
        "rha",
        "cheek filler",
        "volbella",
        "voluma",
    ),
    "hydrafacial": ("hydrafacial", "hydra facial", "facial", "facials"),
    "microneedling": ("microneedling", "micro needling", "collagen induction", "collagen induction therapy", "skinpen"),
    "chemical peel": ("chemical peel", "peel", "peels"),
    "laser hair removal": ("laser hair removal", "lhr", "laser"),
    "consultation": ("consultation", "consult", "consults"),
}

# Phrases too generic to say which service of a category is meant: a service
# that belongs to a category only through one of them ranks after the others
# ("laser" puts both Laser Hair Removal and Laser Resurfacing in the laser hair
# removal category; the former is the real member).
_GENERIC = _wordset("tox filler fillers lips facial facials peel peels laser consult consults")

# Real words within one edit of a vocabulary word: never fuzzy-matched.
_FUZZY_STOPLIST = _wordset(
    "later layer lager taser loser laster filled fuller filter killer fillet racial facile feels peels boots "
    "botch consul consults facet lipid"
)

_NON_WORD = re.compile(r"[^a-z0-9]+")


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower().replace("'", "")
    return " ".join(_NON_WORD.sub(" ", text).split())


@dataclass(frozen=True)
class _Phrase:
    text: str  # normalised
    level: int  # 3 name, 2 own synonym, 1 category synonym / category
    specificity: int  # 1 unless the service is in the phrase's category only through a generic phrase


@dataclass(frozen=True)
class _Hit:
    service: ServiceRef
    order: int  # position in the input
    span: tuple[int, int]  # word indexes in the text [start, end)
    exact: bool
    level: int
    length: int
    specificity: int
    similarity: int  # name vs the mentioned words, 0 unless clearly similar

    @property
    def rank(self) -> tuple[int, int, int, int, int]:
        return (int(self.exact), self.level, self.length, self.specificity, self.similarity)


def _contains_phrase(haystack: str, phrase: str) -> bool:
    return re.search(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])", haystack) is not None


def service_categories(service: ServiceRef) -> dict[str, int]:
    """Canonical categories of a service -> 1 if a specific phrase put it there, 0 if only a generic one."""
    fields = [_normalise(service.name), _normalise(service.category), *(_normalise(s) for s in service.synonyms)]
    found: dict[str, int] = {}
    for key, phrases in CATEGORY_SYNONYMS.items():
        for phrase in phrases:
            if any(_contains_phrase(f, phrase) or f.replace(" ", "") == phrase.replace(" ", "") for f in fields):
                found[key] = max(found.get(key, 0), 0 if phrase in _GENERIC else 1)
    return found


@functools.lru_cache(maxsize=1024)
def _phrases(service: ServiceRef) -> tuple[_Phrase, ...]:
    """What a service answers to.  A category phrase that is also a word of the
    service's own name ("botox" for "Botox (per unit)") counts like a synonym."""
    name = _normalise(service.name)
    phrases = [_Phrase(name, 3, 1)]
    phrases += [_Phrase(_normalise(s), 2, 1) for s in service.synonyms]
    category = _normalise(service.category)
    if category:
        phrases.append(_Phrase(category, 1, 1))
    for key, specificity in service_categories(service).items():
        for phrase in CATEGORY_SYNONYMS[key]:
            if not specificity and phrase not in _GENERIC:
                continue  # "Laser Resurfacing" answers to "laser", not to "lhr"
            level = 2 if _contains_phrase(name, phrase) else 1
            phrases.append(_Phrase(phrase, level, specificity))
    return tuple(p for p in phrases if p.text)


def _allowed_distance(word: str) -> int:
    if len(word) < 5:
        return 0
    return 1 if len(word) <= 7 else 2


def _windows(words: list[str], max_size: int) -> dict[int, list[tuple[int, str]]]:
    """Joined word windows: size -> [(start, joined)] for sizes 1..max_size."""
    return {
        size: [(start, "".join(words[start : start + size])) for start in range(len(words) - size + 1)]
        for size in range(1, max_size + 1)
    }


def _match_phrase(windows: dict[int, list[tuple[int, str]]], phrase: str) -> tuple[tuple[int, int], bool] | None:
    """Best occurrence of ``phrase`` in the text: (span, exact) or None.

    Compared with spaces removed, so "hydra facial" matches "hydrafacial" and
    "micro-neddling" matches "microneedling" by one edit.
    """
    target = phrase.replace(" ", "")
    n_words = len(phrase.split())
    allowed = _allowed_distance(target)
    fuzzy: tuple[int, int] | None = None
    for size in sorted({max(1, n_words - 1), n_words, n_words + 1}):
        for start, joined in windows.get(size, ()):
            if joined == target or (joined.endswith("s") and joined[:-1] == target and len(target) > 3):
                return (start, start + size), True
            if (
                fuzzy is None
                and allowed
                and abs(len(joined) - len(target)) <= allowed
                and joined[0] == target[0]
                and joined not in _FUZZY_STOPLIST
                and OSA.distance(joined, target, score_cutoff=allowed) <= allowed
            ):
                fuzzy = (start, start + size)
    return (fuzzy, False) if fuzzy else None


def _hits(text: str, services: Sequence[ServiceRef]) -> list[_Hit]:
    words = _normalise(text).split()
    if not words:
        return []
    phrase_sets = [_phrases(service) for service in services]
    longest = max((len(p.text.split()) for ps in phrase_sets for p in ps), default=1)
    windows = _windows(words, longest + 1)
    matched: dict[str, tuple[tuple[int, int], bool] | None] = {}
    hits: list[_Hit] = []
    for order, (service, phrases) in enumerate(zip(services, phrase_sets, strict=True)):
        name = _normalise(service.name)
        for phrase in phrases:
            if phrase.text not in matched:
                matched[phrase.text] = _match_phrase(windows, phrase.text)
            found = matched[phrase.text]
            if found:
                span, exact = found
                mentioned = " ".join(words[span[0] : span[1]])
                similarity = int(fuzz.partial_ratio(mentioned, name))
                hits.append(
                    _Hit(
                        service,
                        order,
                        span,
                        exact,
                        phrase.level,
                        len(phrase.text),
                        phrase.specificity,
                        similarity if similarity >= 70 else 0,
                    )
                )
    return hits


def find_service_mentions(text: str, services: Sequence[ServiceRef]) -> list[ServiceRef]:
    """Services the text refers to, best match first, each once.

    Overlapping mentions resolve to the longer/better one ("lip filler" is one
    mention, not "lip" + "filler").  For one mention, services matched by name
    or own synonym beat services matched only by category; several services
    matched only by category ("facial" when there are two facials) are all
    returned, most specific first, so the dialogue can ask which.
    """
    hits = _hits(text, services)
    if not hits:
        return []
    # Pick non-overlapping spans, best first.
    by_span: dict[tuple[int, int], list[_Hit]] = {}
    for hit in hits:
        by_span.setdefault(hit.span, []).append(hit)
    spans = sorted(
        by_span,
        key=lambda s: (max(h.rank[:2] for h in by_span[s]), s[1] - s[0], -s[0]),
        reverse=True,
    )
    chosen: list[tuple[int, int]] = []
    for span in spans:
        if all(span[1] <= c[0] or span[0] >= c[1] for c in chosen):
            chosen.append(span)
    result: list[ServiceRef] = []
    seen: set[int] = set()
    for span in chosen:
        span_hits = by_span[span]
        top = max(h.rank[:2] for h in span_hits)
        best: dict[int, _Hit] = {}
        for hit in span_hits:
            if hit.rank[:2] == top and (hit.service.id not in best or hit.rank > best[hit.service.id].rank):
                best[hit.service.id] = hit
        for hit in sorted(best.values(), key=lambda h: (h.rank, -h.order), reverse=True):
            if hit.service.id not in seen:
                seen.add(hit.service.id)
                result.append(hit.service)
    return result


def match_service(text: str, services: Sequence[ServiceRef]) -> ServiceRef | None:
    """The single best service for ``text``, or None when nothing matches."""
    mentions = find_service_mentions(text, services)
    return mentions[0] if mentions else None


def category_of(text: str) -> str | None:
    """The canonical category a phrase names ("tox" -> "neurotoxin"), exact match only."""
    normalised = _normalise(text)
    for key, phrases in CATEGORY_SYNONYMS.items():
        if normalised == key or normalised in phrases:
            return key
    return None
