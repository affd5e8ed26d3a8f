"""Reply text: service sentences, article sentences that answer a question, slot and appointment lists."""

from __future__ import annotations

import re
from typing import Any

from domain.answering import (
    price_variants,
    split_sentences,
)
from domain.offline_policy.view import _Step
from domain.offline_policy.vocabulary import _LOGISTICS, _QUESTION_START, _REQUEST_START, _WRITTEN_AS, _norm


def _extra_topic(norm: str, services: list[str]) -> bool:
    """Words beyond "do you offer <service>" ("packages", "for men"): a question for the knowledge base."""
    service_words = {w for s in _written_forms(services) for w in s.split()}
    rest = [
        w
        for w in norm.split()
        if w not in service_words
        and w
        not in {"do", "you", "u", "yall", "guys", "offer", "have", "sell", "any", "a", "an", "the", "there", "here"}
    ]
    return len(rest) > 0


def _clinic_topic(part: str) -> bool:
    """A question about the clinic's policies or logistics rather than about a treatment."""
    return bool(
        re.search(
            r"\b(refund|refunded|get it back|cancel|cancell?ation|reschedul\w*|late|parking|park|validate|insurance|"
            r"hsa|fsa|payment|pay with|financing|gift cards?|hours|open|close)\b",
            _norm(part),
        )
    )


def _logistics(norm: str) -> bool:
    return bool(_LOGISTICS.search(norm) and _QUESTION_START.search(norm) and not _REQUEST_START.search(norm))


def _screening_reply(screening: dict[str, Any]) -> str:
    position = str(screening.get("position") or "").strip()
    suggest = [str(s) for s in screening.get("suggest") or [] if s]
    service = screening.get("service") or "that treatment"
    text = position or f"Based on what you've told us, we can't offer {service} right now."
    if suggest:
        text += f" I can book {' or '.join(_a(s) for s in suggest[:2])} instead - would you like that?"
    else:
        text += " Text us when that has changed and I'll find you a time, or reply 'talk to a person'."
    return text


def _a(name: str) -> str:
    lower = name.lower()
    if lower.startswith("consultation"):
        return "a free consultation"
    return f"a {name}"


def _service_sentence(step: _Step, kind: str, *, with_name: bool, compact: bool = False) -> str:
    r = step.result
    if not step.ok:
        offered = r.get("offered") or []
        return f"We don't offer {step.arguments.get('service')}" + (
            f" (we do: {', '.join(offered[:5])})." if offered else "."
        )
    name = r.get("name") or step.arguments.get("service")
    price = str(r.get("price") or "")
    if kind == "duration":
        return f"A {name} appointment takes about {r.get('duration_min')} minutes."
    if kind == "deposit":
        if r.get("deposit"):
            return f"{name} needs a {r['deposit']} deposit to book; it's applied to your treatment."
        return f"No deposit is needed to book {name}."
    variants = price_variants(str(r.get("description") or ""), price)
    extra = (" " + " ".join(v[:1].upper() + v[1:] for v in variants[:2])) if variants else ""
    deposit = f", {r['deposit']} deposit to book" if r.get("deposit") else ""
    if compact:  # one answer among several: the prices only
        variants_text = "; ".join(v.rstrip(".") for v in variants[:2])
        price_text = f"{price}; {variants_text[:1].lower()}{variants_text[1:]}" if variants_text else price
        return f"{'Yes, we offer ' if kind == 'offer' else ''}{name}: {price_text}."
    if kind == "offer":
        return f"Yes, we offer {name}: {price} ({r.get('duration_min')} min{deposit}).{extra}"
    return f"{name}: {price} ({r.get('duration_min')} min{deposit}).{extra}" if with_name else f"{price}.{extra}"


def _written_forms(services: list[str]) -> list[str]:
    forms: list[str] = []
    for service in services:
        key = service.lower()
        match = next((k for k in _WRITTEN_AS if k == key), None) or next(
            (k for k in _WRITTEN_AS if k in key or key in k), None
        )
        forms += list(_WRITTEN_AS.get(match, ())) if match else [key]
        forms.append(key)
    return list(dict.fromkeys(forms))


def _contextual_sentences(snippet: str, title: str, asked: list[str]) -> list[str]:
    """Sentences of a chunk; a sentence without a service name inherits its paragraph's service or its list's
    label (kept as a bracketed prefix that ``_strip_context`` removes before the sentence is quoted).  A list of
    short items ("We accept: Visa...; Apple Pay and Google Pay; Cash") is one sentence."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", snippet):
        context = ""
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        bullets = [line for line in lines if line.startswith(("-", "*", "•"))]
        short_list = bool(bullets) and all(len(b) <= 45 for b in bullets)
        merged: list[str] = []
        for line in lines:
            item = line.lstrip("-*• ").strip()
            if line.startswith(("-", "*", "•")) and merged and merged[-1].rstrip().endswith(":") and short_list:
                merged[-1] = f"{merged[-1]} {item.rstrip('.')}"
            elif line.startswith(("-", "*", "•")) and merged and short_list and re.search(r":\s", merged[-1]):
                merged[-1] = f"{merged[-1]}; {item.rstrip('.')}"
            elif line.startswith(("-", "*", "•")) and merged and merged[-1].rstrip().endswith(":"):
                context = merged[-1].rstrip(": ")
                merged.append(f"[{context}] {item}")
            elif line.startswith(("-", "*", "•")) and context:
                merged.append(f"[{context}] {item}")
            else:
                merged.append(line)
        context = ""
        for line in merged:
            for sentence in split_sentences(line) if not line.startswith("[") else [line]:
                named = [a for a in asked if re.search(rf"(?<![a-z]){re.escape(a)}(?![a-z])", sentence.lower())]
                label = re.match(r"^([A-Z][A-Za-z /&'-]{2,40}):\s", sentence)
                if named or label or sentence.startswith("["):
                    if label and not sentence.startswith("["):
                        context = label.group(1)
                    elif named and not sentence.startswith("["):
                        context = named[0]
                    out.append(sentence)
                elif context:
                    out.append(f"[{context}] {sentence}")
                else:
                    low = title.lower()
                    inherited = next((a for a in asked if a in low), "")
                    out.append(f"[{inherited}] {sentence}" if inherited else sentence)
    return out


def _strip_context(sentence: str) -> str:
    return re.sub(r"^\[[^\]]*\]\s*", "", sentence)


_YES_NO = re.compile(
    r"^(?:do|does) (?:you|u|yall|you guys|your|the clinic) (?:\w+ )?(?:take|accept|have|offer|sell|validate|do|bill|"
    r"expire|treat|allow|charge)\b|^(?:are|is) (?:you|your|the)\b|^do (?:your|the) \w+ (?:\w+ )?expire\b"
)
_NEGATED = re.compile(r"\b(not|no|never|dont|don't|do not|does not|doesn't|cannot|can't|won't)\b", re.IGNORECASE)


def _direct(question: str, answer: str) -> str:
    """Yes/no questions get their yes or no first (issue 14: answer the question asked in the first sentence)."""
    q = _norm(question)
    if not _YES_NO.match(q) or answer.lower().startswith(("yes", "no")):
        return answer
    asked = {w for w in q.split() if len(w) > 3} - {"there", "your", "with", "have", "take", "accept", "does", "what"}
    if not asked & set(_norm(answer).split()):
        return answer
    prefix = "No - " if _NEGATED.search(answer) else "Yes - "
    return prefix + answer[:1].lower() + answer[1:] if not answer[:2].isupper() else prefix + answer


def _failed_action(step: _Step) -> str:
    return _failure_reply(
        step.result,
        "that slot was just taken",
        f"Sorry, that didn't go through ({step.result.get('error')}). Want me to ask our team to help?",
    )


def _failure_reply(result: dict[str, Any], taken: str, otherwise: str) -> str:
    """A failed booking step's reply: the screening's answer, else the closest openings when the time was
    ``taken``, else ``otherwise``."""
    if result.get("screening"):
        return _screening_reply(result["screening"])
    alternatives = result.get("alternatives") or []
    if alternatives:
        return f"Sorry, {taken}. Closest openings: {_format_slots(alternatives)}. Which works?"
    return otherwise


def _list_appointments(appointments: list[dict[str, Any]]) -> str:
    return "; ".join(f"{a.get('service')} on {a.get('label')}" for a in appointments[:4])


def _format_slots(slots: list[dict[str, Any]], limit: int = 4) -> str:
    parts = [f"{i}) {s.get('label')} ({s.get('provider')})" for i, s in enumerate(slots[:limit], 1)]
    return "; ".join(parts)
