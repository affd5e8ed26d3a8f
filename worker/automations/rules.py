"""The automation rules, without a database: which text each due visit gets (or why it gets none), when a reminder
stops being valid, and the scan over a clinic's enabled automations — through an ``AutomationStore`` port
(Postgres: ``worker.automations.queries.PostgresAutomations``), so they run on fakes in unit tests."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from domain.audience import RecipientFacts, SendPolicy, decide
from domain.templates import Template, first_name, when_label, with_footer
from worker.outbox.planning import planned_recipient
from worker.outbox.rows import OutboxRow

log = logging.getLogger(__name__)

AUTOMATION_PRIORITY = 5  # after replies (0), before campaigns (10)
SCAN_LIMIT = 500  # per kind per clinic per scan; the next scan continues
MARKETING_KINDS = frozenset({"review_request", "rebook_nudge", "win_back"})
REMINDER_KINDS = frozenset({"confirmation", "reminder_24h", "reminder_2h"})
# Texts about a visit that happened (or was missed): a later cancellation or move does not withdraw them.
FOLLOW_UP_KINDS = frozenset({"no_show_followup", "aftercare", "review_request"})


def is_reminder(kind: str) -> bool:
    """A reminder ahead of a visit (``reminder_24h``, ``reminder_2h``, any ``reminder_<n>h`` a clinic adds)."""
    return kind.startswith("reminder_")


def names_the_time(kind: str) -> bool:
    """A text that tells the patient when their coming visit is (the booking confirmation, the reminders, the
    deposit reminder).  It is about the visit at that time: once the visit moves, the one sent (or withdrawn while
    queued) says nothing about the new time, so the text is due again for it — its dedupe key carries the start."""
    return kind in ("confirmation", "deposit_reminder") or is_reminder(kind)


def dedupe_key(kind: str, appointment_id: int, starts_at: datetime) -> str:
    """The outbox's dedupe key of an automation text about an appointment: one text per kind and appointment, and,
    for a text that names the time (:func:`names_the_time`), per start too — a rescan of an unchanged visit finds
    its key and creates nothing, a moved visit's is new.  ``queries._dedupe_key`` is this key in SQL (and
    migration 0024 wrote it onto the rows keyed before the start was part of it): change them together."""
    key = f"auto:{kind}:appt:{appointment_id}"
    if not names_the_time(kind):
        return key
    return f"{key}:at:{starts_at.astimezone(UTC):%Y%m%dT%H%M%SZ}"


@dataclass(frozen=True)
class SendingClinic:
    """The clinic the texts come from: name and phone (for the text), zone and policies (for the decision), and
    its first SMS number (the sender)."""

    name: str
    phone: str
    timezone: str
    policies: dict[str, Any]
    sms: str  # "" when it has none


@dataclass(frozen=True)
class AutomationSpec:
    kind: str
    template: Template
    settings: dict[str, Any]

    @property
    def marketing(self) -> bool:
        category = self.settings.get("category")
        return category == "marketing" if category else self.kind in MARKETING_KINDS

    def hours(self, key: str, default: float) -> timedelta:
        return timedelta(hours=float(self.settings.get(key, default)))


def reminder_until(spec: AutomationSpec, specs: Sequence[AutomationSpec]) -> timedelta:
    """A reminder stays valid until the next shorter reminder is due (or 30 minutes before the start)."""
    mine = spec.hours("offset_hours", 24)
    shorter = [s.hours("offset_hours", 2) for s in specs if is_reminder(s.kind) and s.kind != spec.kind]
    shorter = [h for h in shorter if h < mine]
    return max(shorter) if shorter else timedelta(minutes=30)


@dataclass(frozen=True)
class DueVisit:
    """One appointment an automation text is due for, with its recipient (the queries' ``_APPOINTMENT_FACTS``)."""

    appointment_id: int
    recipient: RecipientFacts
    name: str | None
    starts_at: datetime
    service_name: str | None
    service_category: str | None
    provider_name: str | None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> DueVisit:
        return cls(
            appointment_id=int(row["appointment_id"]),
            recipient=planned_recipient(row),
            name=row["name"],
            starts_at=row["starts_at"],
            service_name=row["service_name"],
            service_category=row["service_category"],
            provider_name=row["provider_name"],
        )


@dataclass(frozen=True)
class PlannedText:
    row: OutboxRow
    suppressed_because: str = ""  # "": send it; else recorded as suppressed with this reason, never retried


@dataclass
class AutomationPlan:
    texts: list[PlannedText] = field(default_factory=list)
    waiting: int = 0  # due but in quiet hours: created by a later scan, while still valid


def plan_texts(clinic: SendingClinic, spec: AutomationSpec, due: Sequence[DueVisit], now: datetime) -> AutomationPlan:
    """The text each due visit gets now: rendered, with the opt-out footer on a first marketing text; a recipient
    we must not text gets a suppressed row with the reason; one in quiet hours gets nothing yet."""
    policies = clinic.policies
    policy = (SendPolicy.marketing_for if spec.marketing else SendPolicy.transactional_for)(clinic.timezone, policies)
    tips = spec.settings.get("tips") or {}
    plan = AutomationPlan()
    for visit in due:
        facts = visit.recipient
        decision = decide(facts, policy, now)
        if decision.send and decision.deferred:
            plan.waiting += 1
            continue
        values = {
            "first_name": first_name(visit.name),
            "clinic_name": clinic.name,
            "clinic_phone": clinic.phone,
            "service_name": visit.service_name,
            "last_service": visit.service_name,
            "provider_name": visit.provider_name,
            "when": when_label(visit.starts_at, clinic.timezone),
            "review_url": str(spec.settings.get("review_url") or policies.get("review_url") or ""),
            "aftercare_tip": tips.get(visit.service_category or "", "") if isinstance(tips, dict) else "",
        }
        body = spec.template.render(values)
        if decision.footer:
            body = with_footer(body, policy.footer)
        row = OutboxRow(
            channel="sms",
            kind="automation",
            to_address=facts.phone or "",
            from_address=clinic.sms,
            body=body,
            client_id=facts.client_id,
            conversation_id=None,
            priority=AUTOMATION_PRIORITY,
            meta={"automation": spec.kind, "appointment_id": visit.appointment_id, "marketing": spec.marketing},
            dedupe_key=dedupe_key(spec.kind, visit.appointment_id, visit.starts_at),
        )
        why = "" if decision.send else f"automation not sent: {decision.reason}"
        plan.texts.append(PlannedText(row, why))
    return plan


@dataclass
class Created:
    outbox_ids: list[int] = field(default_factory=list)  # committed rows to send now
    suppressed: int = 0


class AutomationStore(Protocol):
    """The automations' database side (Postgres: ``worker.automations.queries.PostgresAutomations``)."""

    def sending_clinic(self, clinic_id: int) -> tuple[SendingClinic, list[AutomationSpec]] | None:
        """The clinic the texts come from, and its enabled automations (in order); None: no such clinic."""
        ...

    def create_due(
        self,
        clinic_id: int,
        spec: AutomationSpec,
        specs: Sequence[AutomationSpec],
        now: datetime,
        plan: Callable[[Sequence[DueVisit]], AutomationPlan],
    ) -> tuple[Created, int] | None:
        """In one transaction: lock the visits ``spec`` is due for now, ``plan`` their texts and insert them —
        once: a text whose dedupe key exists is not inserted again.  Returns what was created and how many wait
        for quiet hours to end; None for a kind with no query."""
        ...


@dataclass
class ScanResult:
    outbox_ids: list[int]  # committed rows to send now
    suppressed: int = 0
    waiting: int = 0  # due but in quiet hours: created by a later scan


def scan(store: AutomationStore, clinic_id: int, now: datetime) -> ScanResult:
    """Create (once) every automation message due now for one clinic; one transaction per kind."""
    result = ScanResult([])
    found_clinic = store.sending_clinic(clinic_id)
    if found_clinic is None:
        return result
    clinic, specs = found_clinic
    for spec in specs:
        found = store.create_due(clinic_id, spec, specs, now, partial(plan_texts, clinic, spec, now=now))
        if found is None:
            continue
        created, waiting = found
        if created.outbox_ids or created.suppressed:
            log.info(
                "automation messages created",
                extra={
                    "clinic_id": clinic_id,
                    "automation": spec.kind,
                    "queued": len(created.outbox_ids),
                    "suppressed": created.suppressed,
                },
            )
        result.outbox_ids += created.outbox_ids
        result.suppressed += created.suppressed
        result.waiting += waiting
    return result
