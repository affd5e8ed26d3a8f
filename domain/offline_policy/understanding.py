"""Understanding: what the patient's message is (intent, flow, a name it gives)."""

from __future__ import annotations

import re

from domain.agent_state import is_affirmative, is_negative
from domain.answering import is_hours_question
from domain.offline_policy.decider_base import _DeciderBase
from domain.offline_policy.replies import _logistics
from domain.offline_policy.vocabulary import (
    _BOOK,
    _CALL_ME_NOT,
    _CANCEL,
    _CHANGE_CUE,
    _DATA_WORDS,
    _EVERYONE,
    _GREETING,
    _HANDOFF,
    _LOGISTICS,
    _MENU,
    _MY_APPTS,
    _NAME_WORD,
    _NOT_NAMES,
    _OFFER_QUESTION,
    _OTHERS_INFO,
    _OUT_OF_SCOPE,
    _PRICE,
    _QUESTION_START,
    _REQUEST_START,
    _RESCHEDULE,
    _SOMEONE_ELSE,
    _THANKS,
    _norm,
)
from domain.timeparse import parse_shift, parse_when


class _Understanding(_DeciderBase):
    """What the message is: the intent (nearest examples, else keywords), the flow it continues, a name it gives."""

    # ----------------------------------------------------------------------------------- understanding
    def _keyword_intent(self) -> str | None:
        norm = self.view.norm
        if _HANDOFF.search(norm) and not re.search(rf"\bcall me (?!{'|'.join(_CALL_ME_NOT)}\b)[a-z]", norm):
            return "handoff"
        if self._logistics_question():
            return "faq"
        if _CANCEL.search(norm) and not _RESCHEDULE.search(norm):
            return "cancel"
        if _RESCHEDULE.search(norm):
            return "reschedule"
        if _MY_APPTS.search(norm) and not _BOOK.search(re.sub(r"my (appointment|appt)s?", "", norm)):
            return "my_appointments"
        if is_hours_question(self.view.text) and re.match(r"^(are|is|r|u|what|when|how|do|you|open)\b", norm):
            return "hours"
        services = self.mentions(self.view.text)
        if _PRICE.search(norm):
            return "price"
        if services and _OFFER_QUESTION.search(norm):
            return "service_info"
        if _MENU.search(norm):
            return "menu"
        if _BOOK.search(norm) or services:
            return "book"
        if _GREETING.match(norm):
            return "greeting"
        if _THANKS.match(norm):
            return "thanks"
        if is_affirmative(self.view.text):
            return "confirm"
        if parse_when(self.view.text, self.view.ctx.now, self.view.ctx.clinic_timezone) or parse_shift(self.view.text):
            return "give_time"
        return None

    def intent(self) -> str | None:
        """What the new message asks for: the NLU label reconciled with the dialogue state and hard cues."""
        if self._intent_done:
            return self._intent
        self._intent_done = True
        view, norm = self.view, self.view.norm
        keyword = self._keyword_intent()
        understood = self.understanding()
        label = understood.label if understood is not None and understood.label else keyword
        if label == "confirm" and not self.pending:
            label = keyword if keyword not in (None, "confirm") else ("confirm" if is_affirmative(view.text) else None)
        if label == "deny" and not self.pending:
            label = keyword or "smalltalk"
        if label in ("reschedule", "cancel") and not (_CHANGE_CUE.search(norm) or _CANCEL.search(norm)):
            label = keyword if keyword not in ("reschedule", "cancel") else label
        if label == "cancel" and not _CANCEL.search(norm) and keyword != "cancel":
            label = keyword
        if label in ("book", "reschedule", "cancel", "my_appointments", "service_info", "give_time", None) and (
            self._logistics_question()
        ):
            label = "faq"
        if label == "give_name":
            label = keyword  # names are read by profile_update; what is left is something else
        if keyword in ("reschedule", "cancel") and label in (
            None,
            "book",
            "give_time",
            "choose",
            "price",
            "service_info",
            "my_appointments",
            "smalltalk",
            "confirm",
        ):
            label = keyword  # "reschedule", "move my", "cancel" said outright
        if label == "reschedule" and not _RESCHEDULE.search(norm) and self.flow() == "book":
            label = "give_time"  # "could we do thursday instead?" about the slot being booked
        if (
            label == "book"
            and re.match(r"^(do|does) (you|u|yall|you guys)\b", norm)
            and not re.search(
                r"\b(opening|openings|available|availability|slots?|time|times|today|tomorrow|"
                r"mon|tue|wed|thu|fri|sat|sun)\w*\b",
                norm,
            )
        ):
            label = "service_info"  # "do you do packages for laser?" asks what is offered, not for a time
        if label == "hours" and not is_hours_question(view.text):
            label = keyword if keyword != "hours" else "faq"
        if label == "handoff" and keyword != "handoff" and not _HANDOFF.search(norm):
            label = keyword or "handoff"
        if label in (None, "smalltalk") and keyword in ("cancel", "reschedule", "book", "price", "hours", "handoff"):
            label = keyword
        self._intent = label
        return label

    def _logistics_question(self) -> bool:
        """A question about how things work ("is there a fee if I reschedule?"), not a request to do them."""
        norm = self.view.norm
        if not _LOGISTICS.search(norm):
            return False
        if _REQUEST_START.search(norm):
            return False
        return bool(_QUESTION_START.search(norm) or "?" in self.view.text and not _REQUEST_START.search(norm))

    def _asks_for_everyones_data(self) -> bool:
        norm = self.view.norm
        return bool((_OUT_OF_SCOPE.search(norm) or _EVERYONE.search(norm)) and _DATA_WORDS.search(norm))

    def _about_someone_else(self) -> bool:
        """A request for another person's details or appointments (issue 14: say plainly we can't share)."""
        norm = self.view.norm
        if _SOMEONE_ELSE.search(norm) and _OTHERS_INFO.search(norm):
            return not re.search(r"\b(recommended|referred|told me|said|says|suggested)\b", norm)
        understood = self.understanding()
        return bool(understood is not None and understood.label == "other_person" and understood.confidence >= 0.7)

    # ----------------------------------------------------------------------------------- state
    def flow(self) -> str | None:
        """The task in progress: the pending proposal, the slots offered, else the earlier messages."""
        pending = self.pending
        if pending and pending.get("action") in ("book", "reschedule", "cancel"):
            return str(pending["action"])
        for earlier in self.view.earlier_user:
            n = _norm(earlier)
            if _CANCEL.search(n) and not _RESCHEDULE.search(n) and not _logistics(n):
                return "cancel"
            if _RESCHEDULE.search(n) and not _logistics(n):
                return "reschedule"
            understood = self.policy.understand(earlier)
            label = understood.label if understood is not None else None
            if label == "reschedule" and _CHANGE_CUE.search(n):
                return "reschedule"
            if _BOOK.search(n) or self.mentions(earlier) or label == "book":
                return "book"
        if self.view.ctx.slots.get("offered_slots") or self.view.ctx.slots.get("service"):
            return "book"
        return None

    def _asked_for_name(self) -> bool:
        return bool(
            re.search(r"\bwhat name\b|\byour name\b|\bname (?:for|on|should)\b", self.view.last_assistant.lower())
        )

    def name_in_message(self) -> tuple[str | None, str]:
        """The patient's name if the message gives one (and the rest of the message), else (None, text)."""
        text = self.view.text.strip()
        patterns = (
            (rf"\bmy name(?:\s+is|'s|s)\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", False),
            (rf"\b(?:name'?s|nombre es|me llamo)\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", False),
            (rf"\bcall me\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", False),
            (rf"\bput it under\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", False),
            (rf"^(?:hi|hey|hello|hola)?[\s,!.]*this is\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", False),
            (rf"^(?:hi|hey|hello|hola)?[\s,!.]*it'?s\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", True),
            (rf"^(?:hi|hey|hello|hola)?[\s,!.]*(?:i'?m|i am|soy)\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)", True),
        )
        for pattern, needs_capital in patterns:
            m = re.search(pattern, text, flags=re.IGNORECASE)
            if m is None:
                continue
            name = self._clean_name(m.group(1), needs_capital=needs_capital and not self._asked_for_name())
            if name:
                return name, (text[: m.start()] + " " + text[m.end() :]).strip(" ,.!")
        if self._asked_for_name() and not self._not_a_name_reply():
            plain = re.sub(r"[^\w\s'\-]", " ", text, flags=re.UNICODE).strip()
            words = plain.split()
            if 1 <= len(words) <= 3 and all(re.fullmatch(_NAME_WORD, w) for w in words):
                name = self._clean_name(" ".join(words), needs_capital=False)
                if name and len(name.split()) == len(words):
                    return name, ""
        return None, text

    def _not_a_name_reply(self) -> bool:
        norm = self.view.norm
        if (
            _THANKS.match(norm)
            or _GREETING.match(norm)
            or is_affirmative(self.view.text)
            or is_negative(self.view.text)
        ):
            return True
        understood = self.understanding()
        return bool(
            understood is not None
            and understood.label not in (None, "give_name")
            and understood.confidence >= 0.8
            and understood.label in ("thanks", "confirm", "deny", "smalltalk", "greeting", "faq", "book", "symptom")
        )

    def _clean_name(self, raw: str, *, needs_capital: bool) -> str | None:
        words = raw.split()
        kept: list[str] = []
        for word in words:
            low = word.lower().strip("'-")
            if low in _NOT_NAMES or low in _CALL_ME_NOT or not low.isalpha() and not re.fullmatch(r"[a-z'\-]+", low):
                break
            if needs_capital and not word[:1].isupper():
                break
            if self.mentions(word) or parse_when(word, self.view.ctx.now, self.view.ctx.clinic_timezone):
                break
            kept.append(word)
        if not kept:
            return None
        return " ".join(w[:1].upper() + w[1:] for w in kept)
