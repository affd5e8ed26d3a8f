"""Tools against the real database, payments and calendar, bound to one conversation.

Why bound: clinic, patient and conversation come from the pipeline, never from
the model's arguments, so a tool call can only ever touch this patient's rows
(and row-level security keeps it inside this clinic besides).  Each tool call
is one short transaction; remote calls (calendar busy times, Stripe) happen
outside any transaction.  Errors come back as ``{"error": ...}`` results the
model can recover from; nothing here raises into the agent loop.
"""

from __future__ import annotations

import logging
import time as _time
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg.errors
from psycopg.rows import dict_row
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db.engine import Database
from domain import availability
from domain.availability import parse_closed_dates, parse_hours
from domain.catalog import ServiceRef, find_service_mentions
from domain.conversation import ClinicProfile
from domain.ports import BusyInterval, Calendar, CalendarError, DepositRequest, Embedder, PaymentError, Payments
from domain.preferred_provider import merge_preferred, preferred_provider
from domain.prompt import local_label
from domain.screening import Contraindication, Screening, conditions_not_for, parse_contraindications, screen_texts
from domain.timeparse import AFTERNOON, EVENING, MORNING
from domain.tools import (
    BookAppointment,
    CancelAppointment,
    CheckAvailability,
    CreateDepositLink,
    GetServiceDetails,
    HandoffToStaff,
    JoinWaitlist,
    ProposeAction,
    RescheduleAppointment,
    SearchKnowledge,
    ToolArgs,
    ToolArgumentError,
    UpdateProfile,
    parse_arguments,
)
from domain.visits import OCCUPYING, VisitPolicy
from worker import knowledge
from worker.automations import withdraw_appointment_messages
from worker.waitlist import joining as waitlist_joining
from worker.waitlist.store import last_seen_provider

log = logging.getLogger(__name__)

LIVE = ("pending_deposit", "booked", "confirmed")
DEFAULT_HOLD_MINUTES = 30
DEFAULT_SEARCH_DAYS = 7
MAX_SLOTS = 4


class ToolError(Exception):
    """A failure the model should read: becomes ``{"error": message, **extra}``."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.extra = extra


@dataclass(frozen=True)
class _Clinic:
    id: int
    name: str
    tz: str
    business_hours: dict[str, Any]
    holidays: list[Any]
    policies: dict[str, Any]


@dataclass(frozen=True)
class _Service:
    id: int
    slug: str
    name: str
    category: str
    description: str
    duration_min: int
    buffer_min: int
    price_cents: int
    price_note: str
    deposit_cents: int
    prep_instructions: str
    synonyms: tuple[str, ...]
    contraindications: tuple[Contraindication, ...] = ()


@dataclass(frozen=True)
class _Provider:
    id: int
    slug: str
    name: str
    title: str
    calendar_id: str | None
    working_hours: dict[str, Any]
    service_ids: frozenset[int]


def money(cents: int) -> str:
    return f"${cents // 100}" if cents % 100 == 0 else f"${cents / 100:.2f}"


def _price_text(service: _Service) -> str:
    note = f" {service.price_note}" if service.price_note else ""
    return f"{money(service.price_cents)}{note}"


def _screening_dict(result: Screening, names: dict[str, str]) -> dict[str, Any]:
    return {
        "service": result.service,
        "conditions": list(result.conditions),
        "position": result.position,
        "suggest": [names.get(slug, slug) for slug in result.suggest],
    }


def _is_exclusion_violation(exc: BaseException) -> bool:
    return isinstance(getattr(exc, "orig", None), psycopg.errors.ExclusionViolation)


_PARTS_OF_DAY = {"morning": MORNING, "afternoon": AFTERNOON, "evening": EVENING}


def lead_time_minutes(policies: dict[str, Any]) -> int:
    """How far ahead a booking must start (policy ``min_lead_minutes``; two hours when unset)."""
    if "min_lead_minutes" in policies:
        return int(policies["min_lead_minutes"] or 0)
    if "min_notice_minutes" in policies:
        return int(policies["min_notice_minutes"] or 0)
    if "booking_lead_time_minutes" in policies:
        return int(policies["booking_lead_time_minutes"] or 0)
    if "min_notice_hours" in policies:
        return int(float(policies["min_notice_hours"] or 0) * 60)
    return 120


def _one_per_start(
    slots: list[availability.Slot], limit: int, min_gap: timedelta = timedelta(0)
) -> list[availability.Slot]:
    """Keep order; one slot per start time and at least ``min_gap`` from every slot already kept."""
    chosen: list[availability.Slot] = []
    for slot in slots:
        if len(chosen) >= limit:
            break
        if any(abs(slot.start - c.start) < max(min_gap, timedelta(minutes=1)) for c in chosen):
            continue
        chosen.append(slot)
    return chosen


class DbToolExecutor:
    """``domain.conversation.ToolExecutor`` over Postgres for one (clinic, patient, conversation, turn)."""

    def __init__(
        self,
        database: Database,
        *,
        clinic_id: int,
        client_id: int,
        conversation_id: int,
        fence_version: int,
        now: datetime,
        payments: Payments,
        calendar: Calendar | None,
        embedder: Embedder | None,
        public_base_url: str,
        hold_minutes: int | None = None,
        clinic: ClinicProfile | None = None,
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.database = database
        self.clinic_id = clinic_id
        self.client_id = client_id
        self.conversation_id = conversation_id
        self.fence_version = fence_version
        self.now = now
        self.payments = payments
        self.calendar = calendar
        self.embedder = embedder
        self.public_base_url = public_base_url.rstrip("/")
        self._hold_minutes = hold_minutes
        # The pipeline passes the clinic profile it already holds (cached per process): no query per tool call.
        self._clinic: _Clinic | None = (
            _Clinic(
                clinic.id,
                clinic.name,
                clinic.timezone,
                clinic.business_hours or {},
                list(clinic.holidays or []),
                clinic.policies or {},
            )
            if clinic is not None and clinic.id == clinic_id
            else None
        )

    # ------------------------------------------------------------------ dispatch
    def execute(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        started = _time.monotonic()
        try:
            args = parse_arguments(name, arguments)
            handler = getattr(self, f"_tool_{name}")
            result: dict[str, Any] = handler(args)
        except ToolArgumentError as exc:
            result = {"error": str(exc)}
        except ToolError as exc:
            result = {"error": str(exc), **exc.extra}
        except Exception as exc:  # a tool must never crash the turn; the model gets a neutral error
            log.exception(
                "tool failed tool=%s clinic_id=%s conversation_id=%s", name, self.clinic_id, self.conversation_id
            )
            result = {"error": f"internal error in {name} ({type(exc).__name__}); try again or hand off to staff"}
        log.info(
            "tool done tool=%s ok=%s ms=%d conversation_id=%s",
            name,
            "error" not in result,
            int((_time.monotonic() - started) * 1000),
            self.conversation_id,
        )
        return result

    # ------------------------------------------------------------------ loading
    @property
    def hold_minutes(self) -> int:
        """How long an unpaid deposit holds the slot: the clinic's policy ``deposit_hold_minutes``, else the
        service-wide default passed in (``DEPOSIT_HOLD_MINUTES``)."""
        policies = self._clinic.policies if self._clinic else {}
        fallback = self._hold_minutes or DEFAULT_HOLD_MINUTES
        return int(policies.get("deposit_hold_minutes", fallback) or fallback)

    def _scope(self) -> Any:
        return self.database.tenant_scope(self.clinic_id)

    def _load_clinic(self, session: Session) -> _Clinic:
        if self._clinic is None:
            row = session.execute(
                text("SELECT id, name, timezone, business_hours, holidays, policies FROM clinics WHERE id = :c"),
                {"c": self.clinic_id},
            ).one()
            self._clinic = _Clinic(
                row.id, row.name, row.timezone, row.business_hours or {}, row.holidays or [], row.policies or {}
            )
        return self._clinic

    def _services(self, session: Session) -> list[_Service]:
        rows = session.execute(
            text(
                """SELECT id, slug, name, category, description, duration_min, buffer_min, price_cents, price_note,
                          deposit_cents, prep_instructions, synonyms, contraindications
                   FROM services WHERE clinic_id = :c AND active ORDER BY id"""
            ),
            {"c": self.clinic_id},
        ).all()
        return [
            _Service(
                r.id,
                r.slug,
                r.name,
                r.category,
                r.description,
                r.duration_min,
                r.buffer_min,
                r.price_cents,
                r.price_note,
                r.deposit_cents,
                r.prep_instructions,
                tuple(r.synonyms or ()),
                parse_contraindications(r.contraindications),
            )
            for r in rows
        ]

    def _providers(self, session: Session) -> list[_Provider]:
        rows = session.execute(
            text(
                """SELECT p.id, p.slug, p.name, p.title, p.calendar_id, p.working_hours,
                          coalesce(array_agg(ps.service_id) FILTER (WHERE ps.service_id IS NOT NULL), '{}') AS sids
                   FROM providers p LEFT JOIN provider_services ps ON ps.provider_id = p.id
                   WHERE p.clinic_id = :c AND p.active GROUP BY p.id ORDER BY p.id"""
            ),
            {"c": self.clinic_id},
        ).all()
        return [
            _Provider(r.id, r.slug, r.name, r.title, r.calendar_id, r.working_hours or {}, frozenset(r.sids or ()))
            for r in rows
        ]

    def _resolve_service(self, session: Session, wanted: str) -> _Service:
        services = self._services(session)
        key = wanted.strip().lower()
        for service in services:
            if key in (service.slug.lower(), service.name.lower()):
                return service
        refs = [ServiceRef(s.id, s.name, s.category, s.synonyms) for s in services]
        mentions = find_service_mentions(wanted, refs)
        if mentions:
            return next(s for s in services if s.id == mentions[0].id)
        raise ToolError(f"no treatment called {wanted!r}", offered=[s.name for s in services])

    def _resolve_provider(self, providers: list[_Provider], wanted: str | None) -> _Provider | None:
        if wanted is None or not wanted.strip():
            return None
        key = wanted.strip().lower().removeprefix("dr. ").removeprefix("dr ")
        for provider in providers:
            names = {provider.slug.lower(), provider.name.lower()}
            plain = provider.name.lower().removeprefix("dr. ").removeprefix("dr ")
            names |= {plain, plain.split()[0]} if plain else set()
            if key in names or key == provider.name.lower():
                return provider
        raise ToolError(f"no provider called {wanted!r}", providers=[p.name for p in providers])

    def _local_start(self, value: str) -> datetime:
        clinic = self._clinic
        assert clinic is not None
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(clinic.tz))
        return moment

    def _iso_local(self, moment: datetime) -> str:
        assert self._clinic is not None
        return moment.astimezone(ZoneInfo(self._clinic.tz)).strftime("%Y-%m-%dT%H:%M")

    # ------------------------------------------------------------------ screening (issue 14)
    # The clinic's contraindications are checked against what the patient said in this conversation before
    # availability is offered, before a proposal and again before booking or moving: a model that ignores the
    # prompt still cannot book a contraindicated service, and the error result tells it why.
    _screening_texts: list[str] | None = None

    def _patient_texts(self) -> list[str]:
        """The patient's own recent messages in this conversation, oldest first (read once per turn)."""
        if self._screening_texts is None:
            with self._scope() as session:
                rows = session.execute(
                    text(
                        """SELECT body FROM messages
                           WHERE conversation_id = :conv AND clinic_id = :c AND direction = 'inbound'
                             AND created_at > now() - interval '60 days'
                           ORDER BY id DESC LIMIT 40"""
                    ),
                    {"conv": self.conversation_id, "c": self.clinic_id},
                ).all()
            self._screening_texts = [r.body for r in reversed(rows)]
        return self._screening_texts

    def _screening(self, service: _Service) -> Screening:
        if not service.contraindications:
            return Screening(service.name)
        return screen_texts(service.name, service.contraindications, self._patient_texts())

    def _screening_note(self, service: _Service) -> dict[str, Any]:
        result = self._screening(service)
        if not result.blocked:
            return {}
        with self._scope() as session:
            names = {s.slug: s.name for s in self._services(session)}
        return {"screening": {**_screening_dict(result, names), "offered_to_this_patient": False}}

    def _refuse_if_contraindicated(self, service: _Service) -> None:
        result = self._screening(service)
        if not result.blocked:
            return
        with self._scope() as session:
            names = {s.slug: s.name for s in self._services(session)}
        raise ToolError(
            f"screening: {service.name} is not offered to this patient now ({', '.join(result.conditions)}); "
            "tell them the clinic's position, suggest the alternatives, and do not offer times or book it",
            screening=_screening_dict(result, names),
        )

    # ------------------------------------------------------------------ availability
    def _busy_by_provider(
        self, session: Session, providers: list[_Provider], start: datetime, end: datetime, *, ignore_id: int | None
    ) -> dict[int, list[BusyInterval]]:
        rows = session.execute(
            text(
                """SELECT id, provider_id, starts_at, blocked_until FROM appointments
                   WHERE clinic_id = :c AND status = ANY(:live) AND starts_at < :end AND blocked_until > :start"""
            ),
            {"c": self.clinic_id, "live": list(OCCUPYING), "start": start, "end": end},
        ).all()
        busy: dict[int, list[BusyInterval]] = {p.id: [] for p in providers}
        for row in rows:
            if row.id != ignore_id and row.provider_id in busy:
                busy[row.provider_id].append(BusyInterval(row.starts_at, row.blocked_until))
        return busy

    def _calendar_busy(
        self, providers: list[_Provider], start: datetime, end: datetime
    ) -> dict[int, list[BusyInterval]]:
        """Busy times from the providers' external calendars (called outside any transaction)."""
        with_calendar = {p.calendar_id: p.id for p in providers if p.calendar_id}
        if not with_calendar or self.calendar is None:
            return {}
        try:
            found = self.calendar.busy(list(with_calendar), start, end)
        except CalendarError as exc:
            # Our own bookings still count (and the exclusion constraint guards them); only external events are missed.
            log.warning("calendar busy lookup failed retryable=%s clinic_id=%s", exc.retryable, self.clinic_id)
            return {}
        out: dict[int, list[BusyInterval]] = {}
        for calendar_id, intervals in found.items():
            provider_id = with_calendar.get(calendar_id)
            if provider_id is not None:
                out.setdefault(provider_id, []).extend(intervals)
        return out

    def _slot_query(
        self, service: _Service, providers: list[_Provider], start: datetime, end: datetime, *, ignore: int | None
    ) -> availability.SlotQuery:
        clinic = self._clinic
        assert clinic is not None
        qualified = [p for p in providers if service.id in p.service_ids]
        with self._scope() as session:
            busy = self._busy_by_provider(session, qualified, start, end, ignore_id=ignore)
        for provider_id, intervals in self._calendar_busy(qualified, start, end).items():
            busy.setdefault(provider_id, []).extend(intervals)
        return availability.SlotQuery(
            schedule=availability.ClinicSchedule(
                tz=clinic.tz,
                hours=parse_hours(clinic.business_hours),
                closed_dates=parse_closed_dates(clinic.holidays),
            ),
            service=availability.ServiceSpec(service.id, service.duration_min, service.buffer_min),
            providers=[
                availability.Provider(
                    p.id, p.name, p.service_ids, parse_hours(p.working_hours) or parse_hours(clinic.business_hours)
                )
                for p in qualified
            ],
            busy=busy,
            now=self.now,
            lead_time=timedelta(minutes=lead_time_minutes(clinic.policies)),
        )

    def _open_slots(
        self,
        service: _Service,
        providers: list[_Provider],
        first_day: date,
        last_day: date,
        *,
        time_of_day: str | None = None,
        preferred_time: str | None = None,
        ignore_appointment: int | None = None,
        limit: int = MAX_SLOTS,
    ) -> list[availability.Slot]:
        """A few offerable slots for ``service`` across ``providers`` on local days [first_day, last_day]."""
        clinic = self._clinic
        assert clinic is not None
        tz = ZoneInfo(clinic.tz)
        window_start = datetime.combine(first_day, time(0), tzinfo=tz)
        window_end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=tz)
        query = self._slot_query(service, providers, window_start, window_end, ignore=ignore_appointment)
        slots = availability.candidate_slots(query, window_start, window_end)
        if time_of_day in _PARTS_OF_DAY:
            lo, hi = _PARTS_OF_DAY[time_of_day]
            slots = [s for s in slots if lo <= s.start.astimezone(tz).time() < hi]
        if preferred_time:
            hour, minute = (int(x) for x in preferred_time.split(":"))
            target = datetime.combine(first_day, time(hour, minute), tzinfo=tz)
            slots = sorted(slots, key=lambda s: (abs(s.start - target), s.start))
            picked = _one_per_start(slots, limit)
            return sorted(picked, key=lambda s: s.start)
        return _one_per_start(slots, limit, min_gap=timedelta(minutes=60))

    def _slot_dict(self, slot: availability.Slot, providers: list[_Provider]) -> dict[str, Any]:
        assert self._clinic is not None
        provider = next(p for p in providers if p.id == slot.provider_id)
        return {
            "start": self._iso_local(slot.start),
            "label": local_label(slot.start, self._clinic.tz),
            "provider": provider.name,
        }

    def _alternatives(
        self, service: _Service, providers: list[_Provider], near: datetime, *, ignore_appointment: int | None = None
    ) -> list[dict[str, Any]]:
        radius = timedelta(days=3)
        query = self._slot_query(service, providers, near - radius, near + radius, ignore=ignore_appointment)
        return [
            self._slot_dict(s, providers)
            for s in availability.slots_near(query, near, limit=MAX_SLOTS - 1, radius=radius)
        ]

    def _check_slot(
        self,
        service: _Service,
        providers: list[_Provider],
        start: datetime,
        provider: _Provider | None,
        *,
        ignore_appointment: int | None = None,
    ) -> _Provider:
        """The provider who can take ``service`` at ``start`` (the named one, or the first free), else ToolError."""
        if start <= self.now:
            raise ToolError("that time is in the past; offer a future slot from check_availability")
        if provider is not None and service.id not in provider.service_ids:
            qualified = [p.name for p in providers if service.id in p.service_ids]
            raise ToolError(f"{provider.name} does not do {service.name}", qualified_providers=qualified)
        query = self._slot_query(
            service, providers, start - timedelta(hours=1), start + timedelta(hours=1), ignore=ignore_appointment
        )
        free = availability.free_providers_at(query, start)
        if provider is not None:
            free = [pid for pid in free if pid == provider.id]
        if free:
            return next(p for p in providers if p.id == free[0])
        raise ToolError(
            "that time is not available",
            alternatives=self._alternatives(service, providers, start, ignore_appointment=ignore_appointment),
        )

    # ------------------------------------------------------------------ catalogue tools
    def _tool_list_services(self, args: ToolArgs) -> dict[str, Any]:
        with self._scope() as session:
            services = self._services(session)
        return {
            "services": [
                {
                    "name": s.name,
                    "category": s.category,
                    "price": _price_text(s),
                    "duration_min": s.duration_min,
                    "deposit": money(s.deposit_cents) if s.deposit_cents else None,
                    "not_for": conditions_not_for(s.contraindications),
                }
                for s in services
            ]
        }

    def _tool_get_service_details(self, args: GetServiceDetails) -> dict[str, Any]:
        with self._scope() as session:
            service = self._resolve_service(session, args.service)
            providers = [p.name for p in self._providers(session) if service.id in p.service_ids]
        return {
            "service": service.slug,
            "name": service.name,
            "description": service.description,
            "price": _price_text(service),
            "duration_min": service.duration_min,
            "deposit": money(service.deposit_cents) if service.deposit_cents else None,
            "prep": service.prep_instructions,
            "providers": providers,
            # The clinic's screening rules, and which of them this patient's own messages hit (see screening).
            "contraindications": [
                {"condition": c.condition, "position": c.position} for c in service.contraindications
            ],
            **self._screening_note(service),
        }

    def _tool_search_knowledge(self, args: SearchKnowledge) -> dict[str, Any]:
        hits = knowledge.search_knowledge(self.database, self.clinic_id, args.query, self.embedder, k=3)
        if not hits:
            return {"results": [], "note": "nothing in the clinic's knowledge base; offer to ask staff"}
        return {"results": [h.as_dict() for h in hits]}

    # ------------------------------------------------------------------ availability
    def _tool_check_availability(self, args: CheckAvailability) -> dict[str, Any]:
        with self._scope() as session:
            clinic = self._load_clinic(session)
            service = self._resolve_service(session, args.service)
            providers = self._providers(session)
            provider = self._resolve_provider(providers, args.provider)
        self._refuse_if_contraindicated(service)
        tz = ZoneInfo(clinic.tz)
        today = self.now.astimezone(tz).date()
        first = max(today, date.fromisoformat(args.date_from)) if args.date_from else today
        last = date.fromisoformat(args.date_to) if args.date_to else first + timedelta(days=DEFAULT_SEARCH_DAYS - 1)
        last = max(first, min(last, first + timedelta(days=31)))
        candidates = [provider] if provider else providers
        if provider is not None and service.id not in provider.service_ids:
            qualified = [p.name for p in providers if service.id in p.service_ids]
            raise ToolError(f"{provider.name} does not do {service.name}", qualified_providers=qualified)
        time_of_day = None if args.time_of_day in (None, "any") else args.time_of_day
        slots = self._open_slots(
            service, candidates, first, last, time_of_day=time_of_day, preferred_time=args.preferred_time
        )
        preferred = self._preferred_provider(service, providers, provider)  # issue 16: who they saw last, first
        if preferred is not None:
            mine = self._open_slots(
                service, [preferred], first, last, time_of_day=time_of_day, preferred_time=args.preferred_time
            )
            slots = merge_preferred(mine, slots, MAX_SLOTS, key=lambda s: (s.start, s.provider_id))
        searched = {"from": first.isoformat(), "to": last.isoformat()}
        if not slots:
            # Widen once: the next two weeks, any time of day, anyone qualified.
            wider_last = last + timedelta(days=14)
            slots = self._open_slots(service, candidates, last + timedelta(days=1), wider_last)
            searched["widened_to"] = wider_last.isoformat()
        return {
            "service": service.name,
            "duration_min": service.duration_min,
            "price": _price_text(service),
            "deposit": money(service.deposit_cents) if service.deposit_cents else None,
            "searched": searched,
            "slots": [self._slot_dict(s, providers) for s in slots],
            "preferred_provider": preferred.name if preferred is not None else None,
        }

    def _preferred_provider(
        self, service: _Service, providers: list[_Provider], asked: _Provider | None
    ) -> _Provider | None:
        """The provider of the patient's last attended visit, unless they asked for someone (domain rule)."""
        if asked is not None:
            return None
        with self._scope() as session:
            last = last_seen_provider(session, self.clinic_id, self.client_id)
        qualified = frozenset(p.id for p in providers if service.id in p.service_ids)
        chosen = preferred_provider(last, None, qualified)
        return next((p for p in providers if p.id == chosen), None)

    # ------------------------------------------------------------------ waitlist (issue 16; worker/waitlist)
    def _tool_join_waitlist(self, args: JoinWaitlist) -> dict[str, Any]:
        with self._scope() as session:
            clinic = self._load_clinic(session)
            service = self._resolve_service(session, args.service)
            providers = self._providers(session)
            provider = self._resolve_provider(providers, args.provider)
        self._refuse_if_contraindicated(service)
        if provider is not None and service.id not in provider.service_ids:
            qualified = [p.name for p in providers if service.id in p.service_ids]
            raise ToolError(f"{provider.name} does not do {service.name}", qualified_providers=qualified)
        return waitlist_joining.join_from_tool(
            self.database,
            self.clinic_id,
            self.client_id,
            self.conversation_id,
            args,
            service=(service.id, service.name),
            provider=(provider.id, provider.name) if provider else None,
            policies=clinic.policies,
            today=self.now.astimezone(ZoneInfo(clinic.tz)).date(),
        )

    # ------------------------------------------------------------------ proposals (no side effects)
    def _tool_propose_action(self, args: ProposeAction) -> dict[str, Any]:
        if args.action == "book":
            if not args.service or not args.start:
                raise ToolError("propose_action(book) needs service and start")
            with self._scope() as session:
                clinic = self._load_clinic(session)
                service = self._resolve_service(session, args.service)
                providers = self._providers(session)
                provider = self._resolve_provider(providers, args.provider)
            self._refuse_if_contraindicated(service)
            start = self._local_start(args.start)
            chosen = self._check_slot(service, providers, start, provider)
            label = local_label(start, clinic.tz)
            deposit = f" A {money(service.deposit_cents)} deposit holds the slot." if service.deposit_cents else ""
            return {
                "action": "book",
                "service": service.slug,
                "service_name": service.name,
                "start": self._iso_local(start),
                "provider": chosen.slug,
                "provider_name": chosen.name,
                "appointment_id": None,
                "summary": f"{service.name} with {chosen.name} on {label} ({_price_text(service)}).{deposit}",
                "deposit_cents": service.deposit_cents,
            }
        if args.appointment_id is None:
            raise ToolError(f"propose_action({args.action}) needs appointment_id (see get_my_appointments)")
        with self._scope() as session:
            clinic = self._load_clinic(session)
            appt = self._own_appointment(session, args.appointment_id)
        when = local_label(appt["starts_at"], clinic.tz)
        what = f"{appt['service_name']} with {appt['provider_name']} on {when}"
        if args.action == "reschedule":
            if not args.start:
                raise ToolError("propose_action(reschedule) needs start (the new time)")
            new_start = self._local_start(args.start)
            with self._scope() as session:
                service = self._service_by_id(session, appt["service_id"])
                providers = self._providers(session)
            self._refuse_if_contraindicated(service)
            current = next((p for p in providers if p.id == appt["provider_id"]), None)
            try:
                chosen = self._check_slot(service, providers, new_start, current, ignore_appointment=appt["id"])
            except ToolError:
                chosen = self._check_slot(service, providers, new_start, None, ignore_appointment=appt["id"])
            return {
                "action": "reschedule",
                "service": service.slug,
                "service_name": service.name,
                "start": self._iso_local(new_start),
                "provider": chosen.slug,
                "provider_name": chosen.name,
                "appointment_id": appt["id"],
                "summary": f"Move {what} to {local_label(new_start, clinic.tz)} with {chosen.name}.",
            }
        if args.action == "cancel":
            policy = self._cancellation_terms(clinic, appt)
            return {
                "action": "cancel",
                "service": None,
                "start": None,
                "provider": None,
                "appointment_id": appt["id"],
                "summary": f"Cancel {what}. {policy['policy']}",
                "late": policy["late"],
            }
        # deposit
        if appt["status"] != "pending_deposit" or not appt["deposit_cents"]:
            raise ToolError("that appointment does not need a deposit")
        return {
            "action": "deposit",
            "service": None,
            "start": None,
            "provider": None,
            "appointment_id": appt["id"],
            "summary": f"Send a {money(appt['deposit_cents'])} deposit link for {what}.",
        }

    # ------------------------------------------------------------------ side-effect tools
    def _verify_fence(self, session: Session) -> None:
        version = session.execute(
            text("SELECT version FROM conversations WHERE id = :id AND clinic_id = :c FOR SHARE"),
            {"id": self.conversation_id, "c": self.clinic_id},
        ).scalar_one_or_none()
        if version is None or int(version) != int(self.fence_version):
            raise ToolError("stale turn: this conversation moved on; do not retry, just reply briefly")

    def _service_by_id(self, session: Session, service_id: int | None) -> _Service:
        for service in self._services(session):
            if service.id == service_id:
                return service
        raise ToolError("the appointment's treatment is no longer offered; hand off to staff")

    def _tool_book_appointment(self, args: BookAppointment) -> dict[str, Any]:
        with self._scope() as session:
            clinic = self._load_clinic(session)
            service = self._resolve_service(session, args.service)
            providers = self._providers(session)
            provider = self._resolve_provider(providers, args.provider)
        self._refuse_if_contraindicated(service)
        start = self._local_start(args.start)
        chosen = self._check_slot(service, providers, start, provider)
        ends = start + timedelta(minutes=service.duration_min)
        blocked = ends + timedelta(minutes=service.buffer_min)
        deposit = service.deposit_cents
        status = "pending_deposit" if deposit else "booked"
        hold = self.now + timedelta(minutes=self.hold_minutes) if deposit else None
        source_key = f"conv:{self.conversation_id}:{service.slug}:{self._iso_local(start)}"
        try:
            with self._scope() as session:
                self._verify_fence(session)
                new_id = session.execute(
                    text(
                        """INSERT INTO appointments (clinic_id, client_id, provider_id, service_id, conversation_id,
                               starts_at, ends_at, blocked_until, status, source_key, deposit_cents, hold_expires_at,
                               patient_confirmed_at)
                           VALUES (:c, :client, :p, :s, :conv, :start, :end, :blocked, :status, :key, :deposit,
                               :hold, :now)
                           ON CONFLICT (clinic_id, source_key) DO NOTHING RETURNING id"""
                    ),
                    {
                        "c": self.clinic_id,
                        "client": self.client_id,
                        "p": chosen.id,
                        "s": service.id,
                        "conv": self.conversation_id,
                        "start": start,
                        "end": ends,
                        "blocked": blocked,
                        "status": status,
                        "key": source_key,
                        "deposit": deposit,
                        "hold": hold,
                        "now": self.now,
                    },
                ).scalar_one_or_none()
                if new_id is None:
                    existing = session.execute(
                        text(
                            "SELECT id, status, provider_id FROM appointments WHERE clinic_id = :c AND source_key = :k"
                        ),
                        {"c": self.clinic_id, "k": source_key},
                    ).one()
                    new_id, status = existing.id, existing.status
                    chosen = next((p for p in providers if p.id == existing.provider_id), chosen)
        except DBAPIError as exc:
            if not _is_exclusion_violation(exc):
                raise
            raise ToolError(
                "slot just taken by another booking",
                alternatives=self._alternatives(service, providers, start),
            ) from None
        result: dict[str, Any] = {
            "ok": True,
            "appointment_id": new_id,
            "service": service.name,
            "provider": chosen.name,
            "start": self._iso_local(start),
            "label": local_label(start, clinic.tz),
            "status": status,
        }
        if deposit:
            result["deposit_required"] = money(deposit)
            result["hold_expires"] = local_label(hold, clinic.tz) if hold else None
            result["next"] = "create_deposit_link for this appointment so the patient can pay the deposit"
        return result

    def _own_appointment(self, session: Session, appointment_id: int, *, live_only: bool = True) -> dict[str, Any]:
        row = (
            session.execute(
                text(
                    """SELECT a.id, a.status, a.starts_at, a.ends_at, a.provider_id, a.service_id, a.deposit_cents,
                          a.hold_expires_at, coalesce(s.name, 'Appointment') AS service_name, p.name AS provider_name
                   FROM appointments a JOIN providers p ON p.id = a.provider_id
                   LEFT JOIN services s ON s.id = a.service_id
                   WHERE a.id = :id AND a.clinic_id = :c AND a.client_id = :client AND a.kind = 'appointment'"""
                ),
                {"id": appointment_id, "c": self.clinic_id, "client": self.client_id},
            )
            .mappings()
            .one_or_none()
        )
        # Another patient's appointment looks exactly like a missing one: nothing leaks.
        if row is None:
            raise ToolError(f"no appointment #{appointment_id} for this patient; call get_my_appointments")
        if live_only and (row["status"] not in LIVE or row["starts_at"] <= self.now):
            raise ToolError(f"appointment #{appointment_id} is {row['status']} and cannot be changed")
        return dict(row)

    def _cancellation_terms(self, clinic: _Clinic, appt: dict[str, Any]) -> dict[str, Any]:
        policies = clinic.policies
        window_h = float(policies.get("cancellation_window_hours", 24) or 0)
        fee = int(policies.get("late_cancel_fee_cents", policies.get("late_fee_cents", 0)) or 0)
        hours_left = (appt["starts_at"] - self.now).total_seconds() / 3600
        late = hours_left < window_h
        deposit = int(appt.get("deposit_cents") or 0)
        parts: list[str] = []
        if late:
            parts.append(f"This is within {window_h:g} hours of the appointment, so it counts as a late cancellation.")
            if fee:
                parts.append(f"A late-cancellation fee of {money(fee)} applies.")
            if deposit:
                parts.append(f"The {money(deposit)} deposit is kept.")
        else:
            parts.append(f"More than {window_h:g} hours ahead, so there is no fee.")
            if deposit:
                parts.append(f"Any {money(deposit)} deposit paid is refunded.")
        return {"late": late, "fee": money(fee) if late and fee else None, "policy": " ".join(parts)}

    def _tool_cancel_appointment(self, args: CancelAppointment) -> dict[str, Any]:
        with self._scope() as session:
            clinic = self._load_clinic(session)
            self._verify_fence(session)
            appt = self._own_appointment(session, args.appointment_id)
            terms = self._cancellation_terms(clinic, appt)
            session.execute(
                text(
                    """UPDATE appointments SET status = 'cancelled', cancelled_at = :now, cancel_reason = :reason,
                              calendar_sync = 'pending', updated_at = now()
                       WHERE id = :id AND client_id = :client"""
                ),
                {"now": self.now, "reason": args.reason or "", "id": appt["id"], "client": self.client_id},
            )
            withdraw_appointment_messages(session, self.clinic_id, appt["id"])
            paid = session.execute(
                text(
                    """SELECT id, payment_intent_id, amount_cents FROM payments
                       WHERE appointment_id = :id AND status = 'paid' ORDER BY id LIMIT 1"""
                ),
                {"id": appt["id"]},
            ).one_or_none()
            if paid is not None and terms["late"]:
                session.execute(text("UPDATE payments SET status = 'kept' WHERE id = :id"), {"id": paid.id})
        result: dict[str, Any] = {
            "ok": True,
            "appointment_id": appt["id"],
            "cancelled": f"{appt['service_name']} on {local_label(appt['starts_at'], clinic.tz)}",
            "late": terms["late"],
            "fee": terms["fee"],
            "policy": terms["policy"],
        }
        if paid is not None and not terms["late"] and paid.payment_intent_id:
            result["deposit"] = self._refund(paid.id, paid.payment_intent_id, paid.amount_cents, appt["id"])
        return result

    def _refund(self, payment_id: int, payment_intent_id: str, amount: int, appointment_id: int) -> str:
        try:
            refund = self.payments.refund(payment_intent_id, amount, f"refund:{appointment_id}")
        except PaymentError as exc:
            log.warning("deposit refund failed retryable=%s appointment_id=%s", exc.retryable, appointment_id)
            return "refund could not be started automatically; staff will process it"
        with self._scope() as session:
            session.execute(
                text(
                    """UPDATE payments SET status = 'refunded', refund_id = :r, refunded_cents = :a, updated_at = now()
                       WHERE id = :id"""
                ),
                {"r": refund.refund_id, "a": refund.amount_cents, "id": payment_id},
            )
        return f"{money(refund.amount_cents)} deposit refunded"

    def _tool_reschedule_appointment(self, args: RescheduleAppointment) -> dict[str, Any]:
        with self._scope() as session:
            clinic = self._load_clinic(session)
            appt = self._own_appointment(session, args.appointment_id)
            service = self._service_by_id(session, appt["service_id"])
            providers = self._providers(session)
        self._refuse_if_contraindicated(service)
        new_start = self._local_start(args.new_start)
        current = next((p for p in providers if p.id == appt["provider_id"]), None)
        try:
            chosen = self._check_slot(service, providers, new_start, current, ignore_appointment=appt["id"])
        except ToolError:
            chosen = self._check_slot(service, providers, new_start, None, ignore_appointment=appt["id"])
        ends = new_start + timedelta(minutes=service.duration_min)
        try:
            with self._scope() as session:
                self._verify_fence(session)
                updated = session.execute(
                    text(
                        """UPDATE appointments SET starts_at = :start, ends_at = :end, blocked_until = :blocked,
                                  provider_id = :p, calendar_sync = 'pending', updated_at = now(),
                                  patient_confirmed_at = :now
                           WHERE id = :id AND client_id = :client AND status = ANY(:live)"""
                    ),
                    {
                        "start": new_start,
                        "end": ends,
                        "blocked": ends + timedelta(minutes=service.buffer_min),
                        "p": chosen.id,
                        "now": self.now,
                        "id": appt["id"],
                        "client": self.client_id,
                        "live": list(LIVE),
                    },
                ).rowcount
                if not updated:
                    raise ToolError("that appointment can no longer be changed")
                withdraw_appointment_messages(session, self.clinic_id, appt["id"])  # reminders for the old time
        except DBAPIError as exc:
            if not _is_exclusion_violation(exc):
                raise
            raise ToolError(
                "slot just taken by another booking",
                alternatives=self._alternatives(service, providers, new_start, ignore_appointment=appt["id"]),
            ) from None
        return {
            "ok": True,
            "appointment_id": appt["id"],
            "service": service.name,
            "provider": chosen.name,
            "from": local_label(appt["starts_at"], clinic.tz),
            "start": self._iso_local(new_start),
            "label": local_label(new_start, clinic.tz),
        }

    def _tool_get_my_appointments(self, args: ToolArgs) -> dict[str, Any]:
        # The most frequent read: one statement on the hot path's raw connection (BEGIN, the clinic, the query
        # and COMMIT in one round trip), not an ORM session.
        if self._clinic is None:  # the pipeline passes it in; built by hand (tests), load it once
            with self._scope() as session:
                self._load_clinic(session)
        clinic = self._clinic
        assert clinic is not None
        with self.database.tenant_connection(self.clinic_id) as conn:
            rows = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    """SELECT a.id, a.status, a.starts_at, a.deposit_cents, coalesce(s.name, 'Appointment') AS service,
                          p.name AS provider
                   FROM appointments a JOIN providers p ON p.id = a.provider_id
                   LEFT JOIN services s ON s.id = a.service_id
                   WHERE a.clinic_id = %(c)s AND a.client_id = %(client)s AND a.kind = 'appointment'
                     AND a.status = ANY(%(live)s) AND a.starts_at > %(now)s
                   ORDER BY a.starts_at LIMIT 10""",
                    {"c": self.clinic_id, "client": self.client_id, "live": list(LIVE), "now": self.now},
                )
                .fetchall()
            )
        return {
            "appointments": [
                {
                    "appointment_id": r["id"],
                    "service": r["service"],
                    "provider": r["provider"],
                    "start": self._iso_local(r["starts_at"]),
                    "label": local_label(r["starts_at"], clinic.tz),
                    "status": r["status"],
                    "deposit_due": money(r["deposit_cents"])
                    if r["status"] == "pending_deposit" and r["deposit_cents"]
                    else None,
                }
                for r in rows
            ]
        }

    def _tool_create_deposit_link(self, args: CreateDepositLink) -> dict[str, Any]:
        with self._scope() as session:
            clinic = self._load_clinic(session)
            appt = self._own_appointment(session, args.appointment_id)
            if appt["status"] != "pending_deposit" or not appt["deposit_cents"]:
                raise ToolError("that appointment does not need a deposit")
            existing = session.execute(
                text(
                    """SELECT url, expires_at FROM payments
                       WHERE appointment_id = :id AND status = 'pending' AND expires_at > :now ORDER BY id DESC LIMIT 1"""
                ),
                {"id": appt["id"], "now": self.now},
            ).one_or_none()
        if existing is not None:
            return {"ok": True, "url": existing.url, "amount": money(appt["deposit_cents"]), "reused": True}
        expires = appt["hold_expires_at"] or self.now + timedelta(minutes=self.hold_minutes)
        base = self.public_base_url
        link = self.payments.create_deposit_checkout(
            DepositRequest(
                clinic_id=self.clinic_id,
                appointment_id=appt["id"],
                amount_cents=int(appt["deposit_cents"]),
                currency=str(clinic.policies.get("currency", "usd")),
                description=f"Deposit: {appt['service_name']} at {clinic.name}",
                expires_at=expires,
                idempotency_key=f"deposit:{appt['id']}",
                success_url=f"{base}/deposit/done?appointment={appt['id']}",
                cancel_url=f"{base}/deposit/cancelled?appointment={appt['id']}",
                metadata={"conversation_id": str(self.conversation_id)},
                save_card_terms=VisitPolicy.from_policies(clinic.policies).card_terms(clinic.name),
            )
        )
        provider = "local" if link.session_id.startswith("cs_local_") else "stripe"
        with self._scope() as session:
            session.execute(
                text(
                    """INSERT INTO payments (clinic_id, appointment_id, client_id, provider, checkout_session_id,
                           amount_cents, currency, status, url, expires_at)
                       VALUES (:c, :a, :client, :prov, :sid, :amt, :cur, 'pending', :url, :exp)
                       ON CONFLICT (checkout_session_id) DO NOTHING"""
                ),
                {
                    "c": self.clinic_id,
                    "a": appt["id"],
                    "client": self.client_id,
                    "prov": provider,
                    "sid": link.session_id,
                    "amt": int(appt["deposit_cents"]),
                    "cur": str(clinic.policies.get("currency", "usd")),
                    "url": link.url,
                    "exp": link.expires_at,
                },
            )
        return {
            "ok": True,
            "url": link.url,
            "amount": money(int(appt["deposit_cents"])),
            "pay_by": local_label(expires, clinic.tz),
        }

    def _tool_update_profile(self, args: UpdateProfile) -> dict[str, Any]:
        if args.name is None and args.email is None:
            raise ToolError("nothing to update: give name and/or email")
        with self._scope() as session:
            session.execute(
                text(
                    """UPDATE clients SET name = coalesce(:name, name), email = coalesce(:email, email)
                       WHERE id = :id AND clinic_id = :c"""
                ),
                {"name": args.name, "email": args.email, "id": self.client_id, "c": self.clinic_id},
            )
        return {"ok": True, "saved": [k for k in ("name", "email") if getattr(args, k) is not None]}

    def _tool_handoff_to_staff(self, args: HandoffToStaff) -> dict[str, Any]:
        # The pipeline applies the handoff from TurnOutput.handoff in the turn's commit.
        return {"ok": True, "handoff": True, "reason": args.reason, "urgency": args.urgency}
