"""Who a campaign goes to, and whether one text may go to one person now.

Why here and pure: the segment filter is what staff type on the command line
and what is stored on the campaign (JSON), so it needs one validated model;
the per-recipient decision (consent, quiet hours, frequency cap, the opt-out
footer) is the legal core of texting and must be the same for preview,
fan-out, automations and every sender at the moment of sending.  ``decide`` is
that one decision — "can this patient receive this kind of text now" — for
every kind of text (``TextKind``); the database turns ``SegmentFilter`` into
SQL; the decision functions here take plain facts and return plain verdicts.

Rules (see ``DESIGN.md``):
- marketing needs an explicit marketing grant (``marketing_consent`` granted,
  separate from the transactional consent STOP/START toggle); an opted-out
  number gets nothing; invalid or landline numbers get nothing;
- marketing goes out only 08:00–21:00 recipient-local (the client's time zone,
  else the clinic's); outside it the send is deferred to the next 08:00,
  never dropped;
- at most ``marketing_cap_per_week`` marketing messages per client in any
  rolling seven days (clinic policy);
- the clinic's opt-out wording is appended to a client's first marketing message;
- transactional messages (reminders) skip opt-in and the cap but still honour
  opt-out and the clinic's own quiet-hour setting;
- conversation messages (replies to the patient's texts, staff replies,
  notices about their booking) honour opt-out and the number's status, any
  time of day: the patient is talking to us;
- the STOP/START/HELP confirmation and the safety reply to a patient's own
  emergency text go out whatever the consent, the number's status or the hour
  (see ``decide``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any

from domain.compliance import next_allowed_send_time

MARKETING_START = time(8)
MARKETING_END = time(21)
DEFAULT_CAP_PER_WEEK = 2

# Why a recipient gets nothing (campaign_recipients.exclusion_reason and preview counts).
EXCLUSION_REASONS = ("no_phone", "invalid_number", "opted_out", "no_consent", "frequency_cap")


class SegmentError(ValueError):
    """A segment filter staff typed is not valid."""


def _date(value: Any, name: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise SegmentError(f"{name} must be a date like 2026-01-31, got {value!r}") from None


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        raise SegmentError(f"{name} must be a list of names")
    return tuple(sorted({str(v).strip().lower() for v in value if str(v).strip()}))


@dataclass(frozen=True)
class SegmentFilter:
    """Filters are ANDed; an empty filter is every client of the clinic.

    - ``last_visit_before`` / ``last_visit_after``: the client's most recent
      completed visit is before / on-or-after that local date (clients with no
      completed visit never match either);
    - ``services_had``: had a completed visit for any of these service slugs;
    - ``tags``: carries any of these tags;
    - ``has_future_appointment``: True / False / None (don't care);
    - ``min_spend_cents``: completed visits' amounts charged (the service's list price where none was
      recorded) add up to at least this.
    """

    last_visit_before: date | None = None
    last_visit_after: date | None = None
    services_had: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    has_future_appointment: bool | None = None
    min_spend_cents: int | None = None

    def __post_init__(self) -> None:
        if self.min_spend_cents is not None and self.min_spend_cents < 0:
            raise SegmentError("min_spend_cents must not be negative")
        if (
            self.last_visit_before is not None
            and self.last_visit_after is not None
            and self.last_visit_after >= self.last_visit_before
        ):
            raise SegmentError("last_visit_after must be before last_visit_before")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SegmentFilter:
        data = dict(data or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SegmentError(f"unknown segment filter(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        future = data.get("has_future_appointment")
        if isinstance(future, str):
            lowered = future.strip().lower()
            if lowered not in ("true", "false", "yes", "no"):
                raise SegmentError("has_future_appointment must be true or false")
            future = lowered in ("true", "yes")
        spend = data.get("min_spend_cents")
        try:
            spend = int(spend) if spend not in (None, "") else None
        except (TypeError, ValueError):
            raise SegmentError("min_spend_cents must be a whole number of cents") from None
        return cls(
            last_visit_before=_date(data.get("last_visit_before"), "last_visit_before"),
            last_visit_after=_date(data.get("last_visit_after"), "last_visit_after"),
            services_had=_strings(data.get("services_had"), "services_had"),
            tags=_strings(data.get("tags"), "tags"),
            has_future_appointment=None if future is None else bool(future),
            min_spend_cents=spend,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON for ``campaigns.segment``: only the filters that are set."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value is None or value == ():
                continue
            out[key] = (
                value.isoformat() if isinstance(value, date) else (list(value) if isinstance(value, tuple) else value)
            )
        return out

    def describe(self) -> str:
        parts = []
        if self.last_visit_before:
            parts.append(f"last visit before {self.last_visit_before}")
        if self.last_visit_after:
            parts.append(f"last visit on/after {self.last_visit_after}")
        if self.services_had:
            parts.append("had " + "/".join(self.services_had))
        if self.tags:
            parts.append("tagged " + "/".join(self.tags))
        if self.has_future_appointment is not None:
            parts.append("with" if self.has_future_appointment else "without")
            parts[-1] += " a future appointment"
        if self.min_spend_cents:
            parts.append(f"spent at least ${self.min_spend_cents / 100:,.2f}")
        return "; ".join(parts) or "all clients"


# ---------------------------------------------------------------- policies
def _clock(value: Any, default: time) -> time:
    if not value:
        return default
    try:
        hour, minute = (int(x) for x in str(value).split(":")[:2])
        return time(hour, minute)
    except ValueError:
        return default


class TextKind(StrEnum):
    """What a text is, for ``decide``.  Every sender's message is one of these (``text_kind``)."""

    SAFETY = "safety"  # the safety reply to the patient's own emergency text (call 911 / the clinic)
    COMPLIANCE = "compliance"  # the STOP / START / HELP confirmation
    CONVERSATION = "conversation"  # replies to the patient's texts, staff replies, notices about their booking
    TRANSACTIONAL = "transactional"  # texts the clinic starts about the patient's visits (reminders, aftercare)
    MARKETING = "marketing"  # campaigns and marketing automations


def text_kind(outbox_kind: str, *, marketing: bool = False) -> TextKind:
    """The kind of text an outbox row carries (``marketing``: the row's ``meta.marketing``).  An unknown row
    kind gets the strictest rules."""
    if outbox_kind == "automation":
        return TextKind.MARKETING if marketing else TextKind.TRANSACTIONAL
    return _OUTBOX_KINDS.get(outbox_kind, TextKind.MARKETING)


_OUTBOX_KINDS = {
    "safety": TextKind.SAFETY,
    "compliance": TextKind.COMPLIANCE,
    "reply": TextKind.CONVERSATION,
    "staff": TextKind.CONVERSATION,
    "notification": TextKind.CONVERSATION,
    "missed_call": TextKind.TRANSACTIONAL,  # the text-back after an unanswered call: quiet hours, opt-out apply
    "campaign": TextKind.MARKETING,
}


@dataclass(frozen=True)
class SendPolicy:
    """A clinic's rules for one kind of text.  ``window_start``/``window_end`` None: any time of day."""

    clinic_tz: str
    window_start: time | None
    window_end: time | None
    cap_per_week: int | None  # None: no frequency cap (transactional)
    footer: str
    kind: TextKind = TextKind.MARKETING

    @property
    def marketing(self) -> bool:
        return self.kind is TextKind.MARKETING

    @classmethod
    def for_kind(cls, kind: TextKind, clinic_tz: str, policies: Mapping[str, Any]) -> SendPolicy:
        if kind is TextKind.MARKETING:
            return cls.marketing_for(clinic_tz, policies)
        if kind is TextKind.TRANSACTIONAL:
            return cls.transactional_for(clinic_tz, policies)
        return cls(clinic_tz=clinic_tz, window_start=None, window_end=None, cap_per_week=None, footer="", kind=kind)

    @classmethod
    def marketing_for(cls, clinic_tz: str, policies: Mapping[str, Any]) -> SendPolicy:
        cap = policies.get("marketing_cap_per_week", DEFAULT_CAP_PER_WEEK)
        return cls(
            clinic_tz=clinic_tz,
            window_start=MARKETING_START,
            window_end=MARKETING_END,
            cap_per_week=int(cap) if cap is not None else None,
            footer=str(policies.get("opt_out_footer") or "Reply STOP to opt out."),
            kind=TextKind.MARKETING,
        )

    @classmethod
    def transactional_for(cls, clinic_tz: str, policies: Mapping[str, Any]) -> SendPolicy:
        """Reminders follow the clinic's own quiet-hour setting (``policies.quiet_hours``)."""
        quiet = policies.get("quiet_hours") or {}
        start = _clock(quiet.get("start"), MARKETING_START)
        end = _clock(quiet.get("end"), MARKETING_END)
        if start >= end:
            start, end = MARKETING_START, MARKETING_END
        return cls(
            clinic_tz=clinic_tz,
            window_start=start,
            window_end=end,
            cap_per_week=None,
            footer="",
            kind=TextKind.TRANSACTIONAL,
        )


@dataclass(frozen=True)
class RecipientFacts:
    """What the database knows about one recipient at decision time."""

    client_id: int
    phone: str | None
    consent_state: str  # transactional consent and the STOP block: unknown | opted_in | opted_out
    sms_status: str = "ok"  # ok | invalid | not_mobile
    marketing_consent: str = "none"  # none | granted | revoked (an explicit grant in the ledger)
    timezone: str | None = None
    marketing_last_7d: int = 0  # marketing messages sent or queued in the rolling week
    marketing_ever: int = 0  # any earlier marketing message (decides the footer)


@dataclass(frozen=True)
class Decision:
    """``send`` with ``send_at`` (== now unless deferred), or an exclusion ``reason``."""

    send: bool
    reason: str | None = None
    send_at: datetime | None = None
    deferred: bool = False
    footer: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def send_now(self) -> bool:
        return self.send and not self.deferred


def recipient_timezone(facts: RecipientFacts, policy: SendPolicy) -> str:
    return facts.timezone or policy.clinic_tz


def decide(facts: RecipientFacts, policy: SendPolicy, now: datetime) -> Decision:
    """May this text go to this person, and when?  The one decision every sender makes — when a message is
    planned (campaign fan-out, automation scan, preview) and again at the moment of sending (``worker/outbox``,
    the campaign batch sender, the turn's inline reply claim).  Outside the window it is deferred, never
    dropped: ``send_at`` is the next allowed instant."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not facts.phone:
        return Decision(False, "no_phone")
    if policy.kind in (TextKind.SAFETY, TextKind.COMPLIANCE):
        # Why these go out whatever the consent, the number's status or the hour: each answers a text the patient
        # has just sent from this very number.  The keyword confirmation is the one message CTIA requires after
        # STOP / START / HELP; the safety reply tells someone describing an emergency to call 911.  Neither is
        # marketing nor a message the clinic starts on its own, which is what an opt-out revokes — withholding
        # "call 911" from a patient who once texted STOP protects nobody.  Neither changes the patient's consent.
        return Decision(True, None, now)
    if facts.sms_status != "ok":
        return Decision(False, "invalid_number")
    if facts.consent_state == "opted_out":
        return Decision(False, "opted_out")
    if policy.marketing and facts.marketing_consent != "granted":
        return Decision(False, "no_consent")
    if policy.cap_per_week is not None and facts.marketing_last_7d >= policy.cap_per_week:
        return Decision(False, "frequency_cap")
    if policy.window_start is None or policy.window_end is None:
        return Decision(True, None, now)
    try:
        tz = recipient_timezone(facts, policy)
        send_at = next_allowed_send_time(now, tz, policy.window_start, policy.window_end)
    except (KeyError, ValueError):  # an unknown zone name on the client: fall back to the clinic's
        send_at = next_allowed_send_time(now, policy.clinic_tz, policy.window_start, policy.window_end)
    deferred = send_at > now
    footer = policy.marketing and facts.marketing_ever == 0
    return Decision(True, None, send_at, deferred, footer)
