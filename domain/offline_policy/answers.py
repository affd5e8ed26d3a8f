"""Knowledge answers: the article query, the sentences that answer, the composed reply."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from domain.answering import (
    expand_query,
    is_hours_question,
    is_question,
    pick_sentences,
    split_questions,
    split_sentences,
)
from domain.offline_policy.decider_base import _DeciderBase
from domain.offline_policy.replies import (
    _clinic_topic,
    _contextual_sentences,
    _direct,
    _extra_topic,
    _service_sentence,
    _strip_context,
    _written_forms,
)
from domain.offline_policy.view import Decision, _Step
from domain.offline_policy.vocabulary import _POLICY_NOUNS, _PRICE, _QUESTION_WORDS, _WRITTEN_AS, HONEST, _norm
from domain.safety import possible_danger_sign


class _Answers(_DeciderBase):
    """Knowledge answers: the article query, the sentences that answer, and the composed reply."""

    # ----------------------------------------------------------------------------------- answers
    def answer(self, services: list[str]) -> Decision:
        """Answers to the questions of the message: prices and durations from the services, the rest from the
        knowledge base (one search per question), each quoted as its relevant sentence."""
        view = self.view
        parts = split_questions(view.text)
        questions = [p for p in parts if is_question(p)]
        parts = questions if questions and len(questions) < len(parts) else parts
        if len(parts) <= 1:
            parts = [view.text]
        plan: list[tuple[str, str]] = []  # (kind, question)
        for part in parts[:4]:
            n = _norm(part)
            if is_hours_question(part) and self.hours(part) is not None and not services:
                plan.append(("hours", part))
            elif _PRICE.search(n) and services and not re.search(r"\b(fee|fees|deposit)\b", n):
                plan.append(("price", part))
            elif (
                re.search(r"\bhow long\b.*\b(take|appointment|session|treatment|visit|is it|is a)\b", n)
                and not re.search(r"\blast|lasts\b", n)
                and services
            ):
                plan.append(("duration", part))
            elif re.search(r"\bdeposit\b", n) and services and not re.search(r"\b(refund|back|cancel)\b", n):
                plan.append(("deposit", part))
            elif (
                services
                and re.search(r"\b(do you|do u|do yall|you guys) (do|offer|have|sell)\b", n)
                and not (_extra_topic(n, services))
            ):
                plan.append(("offer", part))
            else:
                plan.append(("kb", part))
        wanted_details = (
            [s for s in services[:3]]
            if any(k != "kb" and k != "hours" for k, _ in plan) or (services and any(k == "kb" for k, _ in plan))
            else []
        )
        missing_details = [
            s
            for s in wanted_details
            if s not in {str(d.arguments.get("service")) for d in view.done("get_service_details")}
        ]
        queries = [self.kb_query(part, services) for kind, part in plan if kind == "kb"]
        searched = {str(s.arguments.get("query")) for s in view.done("search_knowledge")}
        missing_queries = [q for q in dict.fromkeys(queries) if q not in searched][:3]
        calls: list[tuple[str, dict[str, Any]]] = []
        if "get_service_details" in view.tools:
            calls += [("get_service_details", {"service": s}) for s in missing_details]
        if "search_knowledge" in view.tools:
            calls += [("search_knowledge", {"query": q}) for q in missing_queries]
        if calls:
            return calls
        return self.compose(plan, services)

    def kb_query(self, part: str, services: list[str]) -> str:
        if part == self.view.text:
            return expand_query(part)  # one question: as the patient wrote it, with the clinic's words for it
        if _clinic_topic(part):
            # A clinic policy question ("do I get it back if I cancel?"): the other parts name its subject.
            others = " ".join(w for w in _norm(self.view.text).split() if w in _POLICY_NOUNS and w not in _norm(part))
            return expand_query(f"{part} {others}".strip())
        if not services or self.mentions(part):
            subject = self.subject(part) if not services else ""
            return expand_query(f"{part} {subject}".strip())
        return expand_query(f"{services[0]} {part}")

    def subject(self, part: str) -> str:
        """What a pronoun in ``part`` refers to ("how much is it per month?" after "the glow club"): the content
        words of the message's first question."""
        if not re.search(r"\b(it|that|this|they|them|one)\b", _norm(part)):
            return ""
        first = split_questions(self.view.text)[0]
        if first == part:
            return ""
        words = [w for w in _norm(first).split() if w not in _QUESTION_WORDS and len(w) > 2]
        return " ".join(words[:4])

    def compose(self, plan: list[tuple[str, str]], services: list[str]) -> Decision:
        view = self.view
        details = {str(s.arguments.get("service")): s for s in view.done("get_service_details")}
        results: list[tuple[str, dict[str, Any]]] = []  # (query, result)
        for step in view.done("search_knowledge"):
            results.append((str(step.arguments.get("query")), step.result))
        answers: list[str] = []
        cited: list[str] = []
        said_service = False
        priced: set[tuple[str, str]] = set()
        used: list[str] = []
        for kind, part in plan:
            if kind == "hours":
                answer = self.hours(part)
                if answer:
                    answers.append(answer)
                continue
            if kind in ("price", "offer", "duration", "deposit"):
                for service in services[:3]:
                    found = details.get(service)
                    if found is None or (kind in ("price", "offer") and (service, "price") in priced):
                        continue
                    answers.append(
                        _service_sentence(
                            found, kind, with_name=len(services) > 1 or not said_service, compact=len(plan) > 1
                        )
                    )
                    said_service = True
                    if kind in ("price", "offer"):
                        priced.add((service, "price"))
                continue
            query = self.kb_query(part, services)
            about = [] if _clinic_topic(part) else services
            sentence, title, picked = self.best_sentences(part, query, results, details, about, used)
            if sentence:
                answers.append(sentence)
                used.extend(picked)
                if title:
                    cited.append(title)
        answers = [a for a in dict.fromkeys(a.strip() for a in answers) if a]
        if not answers:
            if possible_danger_sign(view.text):
                return self.to_staff("patient describes a possible problem after a treatment")
            if services and not details:
                return HONEST
            return HONEST
        reply = " ".join(answers)
        if len(answers) == 1 and cited and len(reply) + len(cited[0]) + 20 <= 320:
            reply += f" (From our guide: {cited[0]})"
        elif any(k in ("price", "offer") for k, _ in plan) and len(reply) <= 260:
            reply += " Would you like me to find you a time?"
        return reply

    def best_sentences(
        self,
        question: str,
        query: str,
        results: list[tuple[str, dict[str, Any]]],
        details: dict[str, _Step],
        services: list[str],
        used: Sequence[str] = (),
    ) -> tuple[str, str | None, list[str]]:
        """The sentence(s) of the retrieved articles that answer ``question``, the article's title, the
        candidates picked (quoted from the best-ranked article first: issue 14, no pasted articles)."""
        hits = [r for q, res in results if q == query for r in res.get("results", []) if isinstance(r, dict)]
        if not hits:
            hits = [r for _, res in results for r in res.get("results", []) if isinstance(r, dict)]
        candidates: list[str] = []
        origin: dict[str, str] = {}
        bonus: dict[str, float] = {}
        asked = _written_forms(services)
        for rank, hit in enumerate(hits[:3]):
            title = str(hit.get("title") or "")
            about_service = any(re.search(rf"(?<![a-z]){re.escape(a)}(?![a-z])", title.lower()) for a in asked)
            for sentence in _contextual_sentences(str(hit.get("snippet") or ""), title, asked):
                candidates.append(sentence)
                origin.setdefault(sentence, title)
                # The best-ranked article first; an article about the service asked about counts as naming it.
                named_here = any(re.search(rf"(?<![a-z]){re.escape(a)}(?![a-z])", sentence.lower()) for a in asked)
                bonus.setdefault(sentence, (0.2, 0.08, 0.0)[rank] + (0.35 if about_service and not named_here else 0.0))
        for service in services[:1]:
            step = details.get(service)
            if step is not None and step.ok:
                for field_name in ("prep", "description"):
                    for sentence in split_sentences(str(step.result.get(field_name) or "")):
                        tagged = f"[{service}] {sentence}"
                        candidates.append(tagged)
                        origin.setdefault(tagged, "")
        if not candidates:
            return "", None, []
        others = [
            w for name, forms in _WRITTEN_AS.items() if not any(name == s or name in s for s in services) for w in forms
        ]
        avoid = [o for o in others if o not in asked] if services else []
        focus = question
        for form in sorted(asked, key=len, reverse=True):
            focus = re.sub(rf"(?<![a-z]){re.escape(form)}(?![a-z])", " ", focus, flags=re.IGNORECASE)
        picked = pick_sentences(
            query,
            candidates,
            focus=" ".join(focus.split()) or question,
            ranker=self.policy.ranker(),
            must_mention=asked,
            avoid=avoid,
            limit=1,
            max_chars=230,
            bonus=bonus,
            exclude=used,
        )
        if not picked:
            return "", None, []
        text = " ".join(_strip_context(p) for p in picked)
        text = _direct(question, text)
        return text, origin.get(picked[0]) or None, picked
