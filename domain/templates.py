"""Message templates for automations and campaigns: placeholders, rendering,
the opt-out footer, cost estimates, and the reply keywords of reminders.

Why here and pure: staff write templates (``Hi {first_name} ...``) that are
rendered tens of thousands of times per campaign and must never leak a raw
``{placeholder}`` or a curly quote that doubles the SMS bill.  A template is
parsed once (``Template``) and rendered by joining precomputed parts.

Placeholders: ``{name}`` with a lower-case identifier.  ``{{`` and ``}}`` are
literal braces.  A placeholder with no value renders its fallback
(``FALLBACKS``) or nothing; an unknown placeholder is rejected at creation
(``unknown_placeholders``), not discovered by a patient.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from domain.segments import count_segments, to_gsm_friendly

# Twilio's US long-code price per outbound segment, used for estimates only.
COST_PER_SEGMENT_USD = 0.0079

# Everything a template may mention.  Automations fill appointment facts; campaigns fill client facts.
CAMPAIGN_PLACEHOLDERS: frozenset[str] = frozenset(
    {"first_name", "clinic_name", "clinic_phone", "next_open_slot", "last_service", "review_url"}
)
AUTOMATION_PLACEHOLDERS: frozenset[str] = CAMPAIGN_PLACEHOLDERS | frozenset(
    {"service_name", "provider_name", "when", "aftercare_tip"}
)

# What a missing value reads as ("Hi there," beats "Hi ,").
FALLBACKS: Mapping[str, str] = {
    "first_name": "there",
    "next_open_slot": "this week",
    "last_service": "treatment",
    "service_name": "appointment",
    "provider_name": "our team",
}

_TOKEN = re.compile(r"\{\{|\}\}|\{([a-z_][a-z0-9_]*)\}")
_SPACES = re.compile(r" {2,}")


class TemplateError(ValueError):
    """A template staff wrote cannot be used (unknown placeholder, empty)."""


@dataclass(frozen=True)
class Template:
    """A parsed template: literal parts interleaved with placeholder names."""

    source: str
    parts: tuple[str, ...]  # len(parts) == len(names) + 1
    names: tuple[str, ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        parts: list[str] = []
        names: list[str] = []
        literal: list[str] = []
        pos = 0
        for match in _TOKEN.finditer(source):
            literal.append(source[pos : match.start()])
            token = match.group(0)
            if token == "{{":
                literal.append("{")
            elif token == "}}":
                literal.append("}")
            else:
                parts.append("".join(literal))
                literal = []
                names.append(match.group(1))
            pos = match.end()
        literal.append(source[pos:])
        parts.append("".join(literal))
        return cls(source, tuple(parts), tuple(names))

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(self.names)

    def render(self, values: Mapping[str, str | None]) -> str:
        out = [self.parts[0]]
        for name, part in zip(self.names, self.parts[1:], strict=True):
            value = values.get(name)
            out.append(value if value else FALLBACKS.get(name, ""))
            out.append(part)
        return to_gsm_friendly(_SPACES.sub(" ", "".join(out)).strip())


def unknown_placeholders(source: str, allowed: frozenset[str] = CAMPAIGN_PLACEHOLDERS) -> list[str]:
    """Placeholders in ``source`` that nothing fills, in order of appearance."""
    seen: list[str] = []
    for name in Template.parse(source).names:
        if name not in allowed and name not in seen:
            seen.append(name)
    return seen


def validate_template(source: str, allowed: frozenset[str] = CAMPAIGN_PLACEHOLDERS) -> Template:
    """Parse a staff-written template or raise ``TemplateError`` with one clear reason."""
    if not source or not source.strip():
        raise TemplateError("the template is empty")
    unknown = unknown_placeholders(source, allowed)
    if unknown:
        raise TemplateError(
            "unknown placeholder(s): "
            + ", ".join("{" + n + "}" for n in unknown)
            + "; allowed: "
            + ", ".join("{" + n + "}" for n in sorted(allowed))
        )
    return Template.parse(source)


def render(source: str, values: Mapping[str, str | None]) -> str:
    return Template.parse(source).render(values)


def first_name(full_name: str | None) -> str | None:
    """The first word of a name, or None (the template's fallback applies)."""
    if not full_name or not full_name.strip():
        return None
    return full_name.strip().split()[0]


def when_label(moment: datetime, tz: str) -> str:
    """'Fri Dec 4 at 3:00 PM' in ``tz``: how a reminder names the appointment time."""
    local = moment.astimezone(ZoneInfo(tz))
    hour = local.strftime("%I").lstrip("0") or "12"
    return f"{local.strftime('%a %b')} {local.day} at {hour}:{local.strftime('%M %p')}"


def with_footer(body: str, footer: str | None) -> str:
    """Append the clinic's opt-out wording (first marketing message to a client)."""
    if not footer or not footer.strip():
        return body
    footer = to_gsm_friendly(footer.strip())
    if body.rstrip().endswith(footer):
        return body
    return f"{body.rstrip()} {footer}"


@dataclass(frozen=True)
class CostEstimate:
    messages: int
    segments: int
    usd: float


def estimate_cost(bodies: list[str], per_segment_usd: float = COST_PER_SEGMENT_USD) -> CostEstimate:
    segments = sum(count_segments(b).segments for b in bodies)
    return CostEstimate(len(bodies), segments, round(segments * per_segment_usd, 4))


# ---------------------------------------------------------------- reminder replies
_CONFIRM_WORDS: frozenset[str] = frozenset(
    {"c", "yes", "y", "yep", "yeah", "yup", "confirm", "confirmed", "ok", "okay", "si", "sí"}
)
_RESCHEDULE_WORDS: frozenset[str] = frozenset({"r", "reschedule", "resched"})
_COURTESY: frozenset[str] = frozenset(
    {"please", "pls", "thanks", "thank", "you", "ty", "i", "will", "be", "there", "see"}
)
_WORD = re.compile(r"[a-zà-ÿ]+")


def reminder_reply_intent(body: str) -> str | None:
    """'confirm' for C / YES / Confirm (with courtesy words), 'reschedule' for R, else None.

    Deliberately narrow: anything longer or different ("yes but can I move it?")
    goes to the dialogue, where the model reads it in context.
    """
    words = _WORD.findall(body.lower())
    if not words or len(words) > 6:
        return None
    if words[0] in _RESCHEDULE_WORDS and len(words) == 1:
        return "reschedule"
    if words[0] in _CONFIRM_WORDS and all(w in _CONFIRM_WORDS or w in _COURTESY for w in words):
        return "confirm"
    return None


def confirmation_reply(first: str | None, clinic_name: str, service_name: str | None, when: str) -> str:
    """The short text a patient gets after confirming by reply."""
    who = first or "there"
    what = service_name or "appointment"
    return to_gsm_friendly(f"Thanks {who}, your {what} on {when} at {clinic_name} is confirmed. See you then!")
