"""The waitlist on real Postgres: joining through the agent's tool, openings recorded by the trigger on every
path that frees time, the offer job (order, holds, lapses, consent, quiet hours, the clinic's closed dates and
the provider's hours), and the preferred provider in the availability tool's result."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from db.engine import Database
from tests.support.phones import random_phone
from worker.clinic_settings import update_settings
from worker.integrations.console import LocalTestPayments
from worker.tools import DbToolExecutor
from worker.waitlist import store
from worker.waitlist.offers import tick_clinic

GLOW = 1
LA = ZoneInfo("America/Los_Angeles")


def _day() -> datetime:
    """A Wednesday far ahead, different per test run, so other tests' rows never match."""
    base = datetime(2034, 1, 4, tzinfo=LA) + timedelta(weeks=random.randint(0, 400))
    return base


class Patient:
    def __init__(self, database: Database, consent: str = "opted_in") -> None:
        self.phone = random_phone()
        with database.tenant_scope(GLOW) as session:
            self.client_id = int(
                session.execute(
                    text(
                        "INSERT INTO clients (clinic_id, phone_e164, name, consent_state) VALUES (1, :p, 'Wai Tlist', :s) "
                        "RETURNING id"
                    ),
                    {"p": self.phone, "s": consent},
                ).scalar_one()
            )
            self.conversation_id = int(
                session.execute(
                    text(
                        "INSERT INTO conversations (clinic_id, client_id, channel) VALUES (1, :c, 'sms') RETURNING id"
                    ),
                    {"c": self.client_id},
                ).scalar_one()
            )

    def tools(self, database: Database, now: datetime) -> DbToolExecutor:
        return DbToolExecutor(
            database,
            clinic_id=GLOW,
            client_id=self.client_id,
            conversation_id=self.conversation_id,
            fence_version=0,
            now=now,
            payments=LocalTestPayments("https://medspa.example"),
            calendar=None,
            embedder=None,
            public_base_url="https://medspa.example",
        )


@pytest.fixture()
def patients(database: Database) -> Iterator[list[Patient]]:
    made: list[Patient] = []
    yield made
    with database.tenant_scope(GLOW) as session:
        for p in made:
            session.execute(text("DELETE FROM waitlist_entries WHERE client_id = :c"), {"c": p.client_id})
            session.execute(
                text("UPDATE appointments SET status = 'cancelled' WHERE client_id = :c"), {"c": p.client_id}
            )


def _ids(database: Database) -> tuple[dict[str, int], dict[str, int]]:
    with database.tenant_scope(GLOW) as session:
        providers = dict(session.execute(text("SELECT slug, id FROM providers WHERE clinic_id = 1")).all())
        services = dict(session.execute(text("SELECT slug, id FROM services WHERE clinic_id = 1")).all())
    return providers, services


def _book(database: Database, patient: Patient, provider: int, service: int, start: datetime, minutes: int = 75) -> int:
    with database.tenant_scope(GLOW) as session:
        return int(
            session.execute(
                text(
                    """INSERT INTO appointments (clinic_id, client_id, provider_id, service_id, starts_at, ends_at,
                                                 blocked_until, status)
                       VALUES (1, :c, :p, :s, :start, :end, :blocked, 'booked') RETURNING id"""
                ),
                {
                    "c": patient.client_id,
                    "p": provider,
                    "s": service,
                    "start": start,
                    "end": start + timedelta(minutes=min(60, minutes)),
                    "blocked": start + timedelta(minutes=minutes),
                },
            ).scalar_one()
        )


def _openings(database: Database, source_id: int) -> list[Any]:
    with database.tenant_scope(GLOW) as session:
        return session.execute(
            text(
                "SELECT id, cause, status, starts_at, ends_at FROM waitlist_openings WHERE source_appointment_id = :a"
            ),
            {"a": source_id},
        ).all()


def _only_open(database: Database, opening_ids: list[int]) -> None:
    """Other tests free time in this clinic too; their openings are closed so the job looks at ours."""
    with database.tenant_scope(GLOW) as session:
        session.execute(
            text(
                "UPDATE waitlist_openings SET status = 'closed' WHERE status IN ('new','offering') AND id <> ALL(:ids)"
            ),
            {"ids": opening_ids},
        )


def _opening_status(database: Database, opening_id: int) -> str:
    with database.tenant_scope(GLOW) as session:
        return str(
            session.execute(text("SELECT status FROM waitlist_openings WHERE id = :o"), {"o": opening_id}).scalar()
        )


def _offers(database: Database, opening_id: int) -> list[Any]:
    with database.tenant_scope(GLOW) as session:
        return session.execute(
            text(
                """SELECT o.client_id, o.status, o.expires_at, x.body, x.kind, x.status AS outbox_status, x.meta
                   FROM waitlist_offers o
                   LEFT JOIN outbox x ON x.dedupe_key = 'waitlist:offer:' || o.id
                   WHERE o.opening_id = :o ORDER BY o.id"""
            ),
            {"o": opening_id},
        ).all()


def _join(database: Database, patient: Patient, now: datetime, day: datetime, **extra: Any) -> dict[str, Any]:
    local = day.date().isoformat()
    args = {"service": "hydrafacial", "date_from": local, "date_to": local, **extra}
    return patient.tools(database, now).execute("join_waitlist", args)


# ---------------------------------------------------------------- joining
def test_join_waitlist_tool_adds_one_entry_per_service_and_validates(database, patients) -> None:
    patient = Patient(database)
    patients.append(patient)
    now = datetime.now(UTC)
    day = _day()
    first = _join(database, patient, now, day, days=["wed"], time_of_day="afternoon")
    assert first["ok"] and not first["updated_existing"], first
    assert first["windows"] == [{"days": ["wed"], "start": "12:00", "end": "17:00"}]
    assert "15 min" in first["summary"] and "HydraFacial" in first["summary"]
    again = _join(database, patient, now, day, provider="Sofia Ramirez")
    assert again["updated_existing"] and again["waitlist_entry_id"] == first["waitlist_entry_id"]
    assert again["provider"] == "Sofia Ramirez" and again["windows"] == []
    # A provider who does not do the treatment, and nonsense times, come back as errors the model can read.
    wrong = _join(database, patient, now, day, provider="Priya Nair")
    assert "does not do" in wrong["error"]
    bad = _join(database, patient, now, day, earliest="17:00", latest="16:00")
    assert "earliest" in bad["error"]
    with database.tenant_scope(GLOW) as session:
        rows = store.list_entries(session, GLOW)
        mine = [r for r in rows if r["id"] == first["waitlist_entry_id"]]
        assert len(mine) == 1 and mine[0]["provider"] == "Sofia Ramirez" and mine[0]["status"] == "active"
        assert store.remove(session, GLOW, first["waitlist_entry_id"], "patient called")
        assert not store.remove(session, GLOW, first["waitlist_entry_id"], "twice")


# ---------------------------------------------------------------- openings
def test_the_trigger_records_time_freed_on_every_path(database, patients) -> None:
    patient = Patient(database)
    patients.append(patient)
    providers, services = _ids(database)
    sofia, hydra = providers["sofia-ramirez"], services["hydrafacial"]
    day = _day()
    cancelled = _book(database, patient, sofia, hydra, day.replace(hour=11))
    moved = _book(database, patient, sofia, hydra, day.replace(hour=13))
    completed = _book(database, patient, sofia, hydra, day.replace(hour=15))
    with database.tenant_scope(GLOW) as session:
        block = int(
            session.execute(
                text(
                    """INSERT INTO appointments (clinic_id, kind, provider_id, starts_at, ends_at, blocked_until, status)
                       VALUES (1, 'block', :p, :s, :e, :e, 'booked') RETURNING id"""
                ),
                {"p": sofia, "s": day.replace(hour=17), "e": day.replace(hour=18)},
            ).scalar_one()
        )
        session.execute(text("UPDATE appointments SET status = 'cancelled' WHERE id = :id"), {"id": cancelled})
        session.execute(
            text(
                "UPDATE appointments SET starts_at = starts_at + interval '1 day', ends_at = ends_at + interval '1 day', "
                "blocked_until = blocked_until + interval '1 day' WHERE id = :id"
            ),
            {"id": moved},
        )
        session.execute(text("UPDATE appointments SET status = 'completed' WHERE id = :id"), {"id": completed})
        session.execute(text("UPDATE appointments SET notes = 'x' WHERE id = :id"), {"id": moved})
        session.execute(text("DELETE FROM appointments WHERE id = :id"), {"id": block})
    (freed,) = _openings(database, cancelled)
    assert freed.cause == "cancelled" and freed.status == "new"
    assert freed.starts_at == day.replace(hour=11) and freed.ends_at == day.replace(hour=12, minute=15)
    assert [o.cause for o in _openings(database, moved)] == ["moved"]
    assert _openings(database, completed) == []  # a visit's outcome frees nothing bookable
    assert [o.cause for o in _openings(database, block)] == ["unblocked"]


# ---------------------------------------------------------------- the offer job
def test_offers_go_one_at_a_time_in_list_order_and_move_on_when_a_hold_lapses(database, patients) -> None:
    providers, services = _ids(database)
    sofia, hydra = providers["sofia-ramirez"], services["hydrafacial"]
    day = _day()
    now = day.replace(hour=9) - timedelta(days=2)  # Monday 09:00: inside the texting window
    booked, opted_out, first, second = (
        Patient(database),
        Patient(database, "opted_out"),
        Patient(database),
        Patient(database),
    )
    patients.extend([booked, opted_out, first, second])
    for p in (opted_out, first, second):  # joined in this order
        assert _join(database, p, now, day)["ok"]
    _join(database, second, now, day)  # joining again keeps the place in line
    appointment = _book(database, booked, sofia, hydra, day.replace(hour=14))
    with database.tenant_scope(GLOW) as session:
        session.execute(text("UPDATE appointments SET status = 'cancelled' WHERE id = :id"), {"id": appointment})
    (opening,) = _openings(database, appointment)
    _only_open(database, [opening.id])

    result = tick_clinic(database, GLOW, now)
    assert result.skipped == 1 and result.offered == 1 and len(result.outbox_ids) == 1
    skipped, held = _offers(database, opening.id)
    assert skipped.client_id == opted_out.client_id and skipped.status == "skipped" and skipped.body is None
    assert held.client_id == first.client_id and held.status == "held"
    assert held.expires_at == now + timedelta(minutes=15)
    assert "Reply YES within 15 min" in held.body and "HydraFacial" in held.body and "Sofia Ramirez" in held.body
    assert held.kind == "automation" and held.meta["automation"] == "waitlist_offer" and held.outbox_status == "queued"

    # Nothing more while the hold runs ...
    assert tick_clinic(database, GLOW, now + timedelta(minutes=14)).offered == 0
    # ... then the next person in line.
    lapsed = tick_clinic(database, GLOW, now + timedelta(minutes=15))
    assert lapsed.lapsed == 1 and lapsed.offered == 1
    statuses = [(o.client_id, o.status) for o in _offers(database, opening.id)]
    assert statuses == [(opted_out.client_id, "skipped"), (first.client_id, "lapsed"), (second.client_id, "held")]
    # Everyone offered and lapsed: nobody is texted twice about one opening.
    assert tick_clinic(database, GLOW, now + timedelta(minutes=31)).offered == 0
    # Too close to book (Glow: 2 hours' lead): the opening closes.
    tick_clinic(database, GLOW, day.replace(hour=13))
    assert _opening_status(database, opening.id) == "closed"


def test_nobody_is_offered_in_quiet_hours_or_a_slot_booked_meanwhile(database, patients) -> None:
    providers, services = _ids(database)
    sofia, hydra = providers["sofia-ramirez"], services["hydrafacial"]
    day = _day()
    night = (day - timedelta(days=2)).replace(hour=22, minute=30)  # Monday 22:30: after Glow's 21:00
    booked, waiting, other = Patient(database), Patient(database), Patient(database)
    patients.extend([booked, waiting, other])
    assert _join(database, waiting, night, day)["ok"]
    appointment = _book(database, booked, sofia, hydra, day.replace(hour=14))
    with database.tenant_scope(GLOW) as session:
        session.execute(text("UPDATE appointments SET status = 'cancelled' WHERE id = :id"), {"id": appointment})
    (opening,) = _openings(database, appointment)
    _only_open(database, [opening.id])
    result = tick_clinic(database, GLOW, night)
    assert result.offered == 0 and result.waiting == 1 and _offers(database, opening.id) == []
    # Someone books the time before morning: nobody is offered a slot that is gone.
    _book(database, other, sofia, hydra, day.replace(hour=14))
    morning = night + timedelta(hours=10)
    assert tick_clinic(database, GLOW, morning).offered == 0
    assert _opening_status(database, opening.id) == "closed"


# ---------------------------------------------------------------- preferred provider
def test_availability_offers_the_provider_seen_last_first_unless_another_is_asked_for(database, patients) -> None:
    providers, services = _ids(database)
    patient = Patient(database)
    patients.append(patient)
    day = _day()
    now = day - timedelta(days=2)
    # Last visit with Jordan Lee (completed), an earlier one with Dr. Maya Chen.
    _book(database, patient, providers["maya-chen"], services["neurotoxin"], now - timedelta(days=200), 40)
    last = _book(database, patient, providers["jordan-lee"], services["neurotoxin"], now - timedelta(days=100), 40)
    with database.tenant_scope(GLOW) as session:
        session.execute(
            text("UPDATE appointments SET status = 'completed' WHERE client_id = :c"), {"c": patient.client_id}
        )
    assert last
    tools = patient.tools(database, now)
    local = day.date().isoformat()
    result = tools.execute("check_availability", {"service": "botox", "date_from": local, "date_to": local})
    assert result["preferred_provider"] == "Jordan Lee", result
    names = [s["provider"] for s in result["slots"]]
    assert names[0] == "Jordan Lee" and "Dr. Maya Chen" in names, names  # theirs first, still a choice
    asked = tools.execute(
        "check_availability", {"service": "botox", "date_from": local, "date_to": local, "provider": "Maya Chen"}
    )
    assert asked["preferred_provider"] is None and {s["provider"] for s in asked["slots"]} == {"Dr. Maya Chen"}
    # A patient with no attended visit has no preference.
    newcomer = Patient(database)
    patients.append(newcomer)
    fresh = newcomer.tools(database, now).execute(
        "check_availability", {"service": "botox", "date_from": local, "date_to": local}
    )
    assert fresh["preferred_provider"] is None


def test_a_checked_in_visit_in_the_freed_time_is_not_offered(database, patients) -> None:
    # A patient checked in early takes the provider's time as surely as a booking (the one query of what occupies a
    # provider counts it): the opening closes instead of texting a waitlister a slot their YES would be refused.
    providers, services = _ids(database)
    sofia, hydra = providers["sofia-ramirez"], services["hydrafacial"]
    day = _day()
    morning = (day - timedelta(days=1)).replace(hour=10)
    freed, early, waiting = Patient(database), Patient(database), Patient(database)
    patients.extend([freed, early, waiting])
    assert _join(database, waiting, morning, day)["ok"]
    appointment = _book(database, freed, sofia, hydra, day.replace(hour=14))
    with database.tenant_scope(GLOW) as session:
        session.execute(text("UPDATE appointments SET status = 'cancelled' WHERE id = :id"), {"id": appointment})
    (opening,) = _openings(database, appointment)
    _only_open(database, [opening.id])
    arrived = _book(database, early, sofia, hydra, day.replace(hour=14))
    with database.tenant_scope(GLOW) as session:
        session.execute(
            text("UPDATE appointments SET status = 'checked_in', checked_in_at = now() WHERE id = :id"), {"id": arrived}
        )
    assert tick_clinic(database, GLOW, morning).offered == 0
    assert _offers(database, opening.id) == []
    assert _opening_status(database, opening.id) == "closed"


@contextmanager
def _closed_on(database: Database, day: date) -> Iterator[None]:
    """The clinic adds a holiday the way staff do (the console's settings update); the clinic row is put back as it
    was afterwards, so no other test sees the change."""
    with database.tenant_scope(GLOW) as session:
        saved = session.execute(text("SELECT business_hours, holidays, policies FROM clinics WHERE id = 1")).one()
        update_settings(session, GLOW, {"holidays": [*(saved.holidays or []), day.isoformat()]})
    try:
        yield
    finally:
        with database.tenant_scope(GLOW) as session:
            session.execute(
                text("SELECT medspa_set_clinic_settings(CAST(:h AS jsonb), CAST(:d AS jsonb), CAST(:p AS jsonb))"),
                {
                    "h": json.dumps(saved.business_hours),
                    "d": json.dumps(saved.holidays),
                    "p": json.dumps(saved.policies),
                },
            )


def _cancelled_opening(database: Database, patient: Patient, provider: int, service: int, start: datetime) -> int:
    """Staff cancel a booked visit: the trigger records the freed time, the only opening the job then looks at."""
    appointment = _book(database, patient, provider, service, start)
    with database.tenant_scope(GLOW) as session:
        session.execute(text("UPDATE appointments SET status = 'cancelled' WHERE id = :id"), {"id": appointment})
    (opening,) = _openings(database, appointment)
    _only_open(database, [opening.id])
    return int(opening.id)


def test_an_opening_on_a_closed_date_is_not_offered(database, patients) -> None:
    # The clinic adds a holiday on a Wednesday and staff cancel that day's 14:00 HydraFacial: slot-finding offers
    # nothing that day, so the YES would be refused ("sorry, it was taken") — nobody is texted, the opening closes.
    providers, services = _ids(database)
    sofia, hydra = providers["sofia-ramirez"], services["hydrafacial"]
    day = _day()
    now = day.replace(hour=9) - timedelta(days=2)  # Monday 09:00: inside the texting window
    freed, waiting = Patient(database), Patient(database)
    patients.extend([freed, waiting])
    assert _join(database, waiting, now, day)["ok"]
    with _closed_on(database, day.date()):
        opening = _cancelled_opening(database, freed, sofia, hydra, day.replace(hour=14))
        result = tick_clinic(database, GLOW, now)
        assert result.offered == 0 and result.waiting == 0 and _offers(database, opening) == []
        assert _opening_status(database, opening) == "closed"
    # The control: the holiday gone, the same time freed again that day is offered to the same waitlister.
    opening = _cancelled_opening(database, freed, sofia, hydra, day.replace(hour=14))
    assert tick_clinic(database, GLOW, now).offered == 1
    [offer] = _offers(database, opening)
    assert offer.client_id == waiting.client_id and offer.status == "held"
    assert _opening_status(database, opening) == "offering"


def test_an_opening_outside_the_providers_hours_is_not_offered(database, patients) -> None:
    # Sofia works Wednesdays 11:00-19:00 inside the clinic's 09:00-19:00.  Time freed at 09:30 (a visit staff had put
    # in by hand) is outside her hours for anything: not offered, closed.  At 18:30 a 60-minute HydraFacial would
    # run past her day: not offered, but the opening stays open for something shorter (a 30-minute consultation).
    providers, services = _ids(database)
    sofia, hydra = providers["sofia-ramirez"], services["hydrafacial"]
    day = _day()
    now = day.replace(hour=9) - timedelta(days=2)
    freed, waiting = Patient(database), Patient(database)
    patients.extend([freed, waiting])
    assert _join(database, waiting, now, day)["ok"]
    for start, status in ((day.replace(hour=9, minute=30), "closed"), (day.replace(hour=18, minute=30), "new")):
        opening = _cancelled_opening(database, freed, sofia, hydra, start)
        assert tick_clinic(database, GLOW, now).offered == 0, start
        assert _offers(database, opening) == [] and _opening_status(database, opening) == status, start
