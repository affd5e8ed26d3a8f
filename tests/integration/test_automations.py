"""Automations with a controllable clock: each fires once at its moment and never again (also after a
restart), racing schedulers send once, cancelled appointments get nothing, a reply "C" confirms.
Sends go through the real worker to the fake Twilio API."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from console.queries import clients as client_queries
from db.clinics import load_clinic
from db.engine import Database, make_engine
from domain.audience import SegmentFilter
from domain.outbox import BOOKED_SINCE, automation_still_relevant
from domain.templates import when_label
from tests.support.infra import wait_for
from tests.support.stack import running_stack
from worker import automations
from worker.appointments import store
from worker.appointments.service import AppointmentService
from worker.appointments.store import UPCOMING_OF_CONVERSATION, upcoming_views
from worker.automations.rules import dedupe_key
from worker.campaigns.segments import segment_sql
from worker.outbox.ports import send_ports
from worker.outbox.sender import send_one
from worker.sending import enqueue_bulk_sends
from worker.sms_rate import SmsRateLimiter

LA = ZoneInfo("America/Los_Angeles")


def _phone() -> str:
    return "+1628" + str(uuid.uuid4().int % 10**7).zfill(7)


def la(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=LA).astimezone(UTC)


@pytest.fixture(scope="module")
def auto_stack(infra, tmp_path_factory):
    with running_stack(infra, tmp_path_factory.mktemp("automation-stack")) as (stack, container):
        yield stack, container


@pytest.fixture(autouse=True)
def _worker_clock_reset(request):
    """Tests set the worker's clock to their scan moment (senders decide quiet hours again at send time)."""
    yield
    if "auto_stack" in request.fixturenames:
        request.getfixturevalue("auto_stack")[0].clock.set(None)


class Clinic:
    """A clinic of its own (copying the demo clinic's automations), so scans see only this test's data."""

    def __init__(self, owner_engine) -> None:
        self.owner = owner_engine
        slug = "auto-" + uuid.uuid4().hex[:8]
        self.number = _phone()
        with owner_engine.begin() as conn:
            self.id = int(
                conn.execute(
                    text(
                        """INSERT INTO clinics (slug, name, timezone, public_key, phone, policies)
                       SELECT :slug, 'Test Spa', timezone, :slug, '+14155550000', policies FROM clinics WHERE id = 1
                       RETURNING id"""
                    ),
                    {"slug": slug},
                ).scalar_one()
            )
            conn.execute(
                text("INSERT INTO clinic_phone_numbers (clinic_id, e164) VALUES (:c, :n)"),
                {"c": self.id, "n": self.number},
            )
            conn.execute(
                text(
                    """INSERT INTO automations (clinic_id, kind, enabled, template, settings)
                       SELECT :c, kind, enabled, template, settings FROM automations WHERE clinic_id = 1"""
                ),
                {"c": self.id},
            )
            self.provider = int(
                conn.execute(
                    text("INSERT INTO providers (clinic_id, slug, name) VALUES (:c, 'pat', 'Pat Lee') RETURNING id"),
                    {"c": self.id},
                ).scalar_one()
            )
            self.tox = int(
                conn.execute(
                    text(
                        """INSERT INTO services (clinic_id, slug, name, category, duration_min, price_cents,
                                             rebook_interval_days)
                       VALUES (:c, 'tox', 'Botox', 'neurotoxin', 30, 1400, 90) RETURNING id"""
                    ),
                    {"c": self.id},
                ).scalar_one()
            )
            self.facial = int(
                conn.execute(
                    text(
                        """INSERT INTO services (clinic_id, slug, name, category, duration_min, price_cents)
                       VALUES (:c, 'facial', 'HydraFacial', 'facial', 60, 22500) RETURNING id"""
                    ),
                    {"c": self.id},
                ).scalar_one()
            )

    def client(self, name: str, consent: str = "opted_in", marketing: str = "granted") -> tuple[int, str]:
        phone = _phone()
        with self.owner.begin() as conn:
            client_id = conn.execute(
                text("""INSERT INTO clients (clinic_id, phone_e164, name, consent_state, marketing_consent)
                        VALUES (:c, :p, :n, :s, :m) RETURNING id"""),
                {"c": self.id, "p": phone, "n": name, "s": consent, "m": marketing},
            ).scalar_one()
        return int(client_id), phone

    def appointment(
        self,
        client_id: int,
        starts_at: datetime,
        status: str,
        *,
        created_at: datetime,
        service: str = "tox",
        hold_expires_at: datetime | None = None,
        minutes: int = 30,
        provider: int | None = None,
    ) -> int:
        service_id = self.tox if service == "tox" else self.facial
        with self.owner.begin() as conn:
            return int(
                conn.execute(
                    text(
                        """INSERT INTO appointments (clinic_id, client_id, provider_id, service_id, starts_at, ends_at,
                                                 blocked_until, status, created_at, hold_expires_at)
                       VALUES (:c, :client, :p, :s, :start, :start + make_interval(mins => :minutes),
                               :start + make_interval(mins => :minutes), :status, :created, :hold) RETURNING id"""
                    ),
                    {
                        "c": self.id,
                        "client": client_id,
                        "p": provider or self.provider,
                        "minutes": minutes,
                        "s": service_id,
                        "start": starts_at,
                        "status": status,
                        "created": created_at,
                        "hold": hold_expires_at,
                    },
                ).scalar_one()
            )

    def other_provider(self, slug: str) -> int:
        """Another provider: visits under way at the same moment cannot share one (the exclusion constraint)."""
        with self.owner.begin() as conn:
            return int(
                conn.execute(
                    text("INSERT INTO providers (clinic_id, slug, name) VALUES (:c, :s, :s) RETURNING id"),
                    {"c": self.id, "s": slug},
                ).scalar_one()
            )

    def conversation(self, client_id: int) -> int:
        with self.owner.begin() as conn:
            return int(
                conn.execute(
                    text(
                        "INSERT INTO conversations (clinic_id, client_id, channel) VALUES (:c, :client, 'sms') RETURNING id"
                    ),
                    {"c": self.id, "client": client_id},
                ).scalar_one()
            )

    def rows(self, database) -> dict[str, list[dict]]:
        with database.tenant_scope(self.id) as session:
            rows = (
                session.execute(
                    text(
                        "SELECT dedupe_key, status, to_address, body, meta FROM outbox WHERE clinic_id = :c ORDER BY id"
                    ),
                    {"c": self.id},
                )
                .mappings()
                .all()
            )
        out: dict[str, list[dict]] = {}
        for row in rows:
            out.setdefault(row["dedupe_key"], []).append(dict(row))
        return out


def test_each_automation_fires_once_at_its_moment_and_not_again_after_a_restart(auto_stack, database, owner_engine):
    stack, container = auto_stack
    clinic = Clinic(owner_engine)
    moment = la(datetime.now(LA).date() + timedelta(days=2), time(12))
    expect: dict[str, tuple[str, str]] = {}  # dedupe key -> (phone, text the message must contain)

    def case(kind: str, name: str, starts_at: datetime, status: str, created_at: datetime, must: str, **kw) -> int:
        client_id, phone = clinic.client(name)
        appt = clinic.appointment(client_id, starts_at, status, created_at=created_at, **kw)
        expect[dedupe_key(kind, appt, starts_at)] = (phone, must)
        return appt

    case("confirmation", "Cora Firm", moment + timedelta(days=5), "booked", moment, "you're booked")
    case("reminder_24h", "Rita Day", moment + timedelta(hours=24), "booked", moment - timedelta(days=3), "a reminder")
    # Booked 13 h ahead: past the 24 h moment and the 12 h confirmation window, so only the 2 h reminder is due.
    case(
        "reminder_2h",
        "Tess Two",
        moment + timedelta(hours=2),
        "confirmed",
        moment - timedelta(hours=13),
        "see you soon",
    )
    case(
        "deposit_reminder",
        "Dee Posit",
        moment + timedelta(days=3),
        "pending_deposit",
        moment - timedelta(minutes=30),
        "deposit",
        hold_expires_at=moment + timedelta(minutes=30),
    )
    case(
        "aftercare",
        "Al Care",
        moment - timedelta(hours=24, minutes=30),
        "completed",
        moment - timedelta(days=9),
        "How are you feeling",
    )
    review = case(
        "review_request",
        "Rae View",
        moment - timedelta(hours=48, minutes=30),
        "completed",
        moment - timedelta(days=9),
        "review",
    )
    with owner_engine.begin() as conn:  # her aftercare check-in went out yesterday
        conn.execute(
            text("""INSERT INTO outbox (clinic_id, channel, kind, to_address, body, status, dedupe_key)
                    VALUES (:c, 'sms', 'automation', 'x', 'aftercare', 'sent', :key)"""),
            {"c": clinic.id, "key": f"auto:aftercare:appt:{review}"},
        )
    case(
        "no_show_followup",
        "Nora Show",
        moment - timedelta(hours=2, minutes=30),
        "no_show",
        moment - timedelta(days=9),
        "we missed you",
    )
    case(
        "rebook_nudge",
        "Reba Book",
        moment - timedelta(days=90),
        "completed",
        moment - timedelta(days=99),
        "time for your next Botox",
    )
    case(
        "win_back",
        "Wyn Back",
        moment - timedelta(days=180),
        "completed",
        moment - timedelta(days=189),
        "we miss you",
        service="facial",
    )

    before = automations.scan_clinic(database, clinic.id, moment - timedelta(minutes=1))
    assert before.outbox_ids == [] and set(clinic.rows(database)) == {f"auto:aftercare:appt:{review}"}

    first = automations.scan_clinic(database, clinic.id, moment)
    rows = clinic.rows(database)
    assert set(rows) == set(expect) | {f"auto:aftercare:appt:{review}"}
    assert len(first.outbox_ids) == len(expect)
    for key, (phone, must) in expect.items():
        (row,) = rows[key]
        assert row["status"] == "queued" and row["to_address"] == phone
        assert must.lower() in row["body"].lower(), (key, row["body"])
        assert row["meta"]["automation"] == key.split(":")[1]
    assert rows[next(k for k in expect if ":win_back:" in k)][0]["body"].endswith("Reply STOP to opt out.")
    stack.clock.set(moment)
    enqueue_bulk_sends(clinic.id, first.outbox_ids)

    # A restarted process (fresh engine, nothing in memory) scanning later finds nothing new.
    restarted = Database(make_engine(stack.infra.database_url, pool_size=1))
    try:
        again = automations.scan_clinic(restarted, clinic.id, moment + timedelta(minutes=5))
    finally:
        restarted.dispose()
    assert again.outbox_ids == []
    phones = {phone for phone, _ in expect.values()}
    wait_for(lambda: {m.to for m in list(stack.twilio.messages)} >= phones, 30, what="every automation text")
    stack.wait_idle(clinic.id)
    sent = [m.to for m in list(stack.twilio.messages) if m.to in phones]
    assert sorted(sent) == sorted(phones)  # one text each


def test_two_schedulers_at_once_send_each_reminder_once(auto_stack, owner_engine, infra):
    stack, _ = auto_stack
    clinic = Clinic(owner_engine)
    moment = la(datetime.now(LA).date() + timedelta(days=2), time(11))
    phones = []
    for n in range(12):
        client_id, phone = clinic.client(f"Twin {n}")
        clinic.appointment(
            client_id, moment + timedelta(hours=24, minutes=40 * n), "booked", created_at=moment - timedelta(days=4)
        )
        phones.append(phone)
    stack.clock.set(moment)
    engines = [Database(make_engine(infra.database_url, pool_size=1)) for _ in range(2)]
    barrier = threading.Barrier(2)
    found: list[list[int]] = [[], []]

    def scheduler(index: int) -> None:
        barrier.wait()
        # Each replica scans at (almost) the same moment; each sends only what it inserted.
        for minutes in (0, 150, 300, 450):  # reminders fall due 40 minutes apart over the afternoon
            ids = automations.scan_clinic(engines[index], clinic.id, moment + timedelta(minutes=minutes)).outbox_ids
            found[index] += ids
            enqueue_bulk_sends(clinic.id, ids)

    threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for engine in engines:
        engine.dispose()
    all_ids = found[0] + found[1]
    assert len(all_ids) == len(set(all_ids)) == 12
    wait_for(lambda: {m.to for m in list(stack.twilio.messages)} >= set(phones), 30, what="twelve reminders")
    stack.wait_idle(clinic.id)
    assert sorted(m.to for m in list(stack.twilio.messages) if m.to in phones) == sorted(phones)


def test_a_cancelled_appointment_gets_no_reminder(auto_stack, database, owner_engine):
    stack, _ = auto_stack
    clinic = Clinic(owner_engine)
    moment = la(datetime.now(LA).date() + timedelta(days=2), time(12))
    early_id, early_phone = clinic.client("Early Cancel")
    early = clinic.appointment(early_id, moment + timedelta(hours=24), "booked", created_at=moment - timedelta(days=3))
    late_id, late_phone = clinic.client("Late Cancel")
    late = clinic.appointment(late_id, moment + timedelta(hours=25), "booked", created_at=moment - timedelta(days=3))
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE appointments SET status = 'cancelled' WHERE id = :id"), {"id": early})
    created = automations.scan_clinic(database, clinic.id, moment + timedelta(hours=1))
    late_key = dedupe_key("reminder_24h", late, moment + timedelta(hours=25))
    assert list(clinic.rows(database)) == [late_key]
    # Cancelled after its reminder was created but before it was sent: the cancel path withdraws it.
    with database.tenant_scope(clinic.id) as session:
        session.execute(text("UPDATE appointments SET status = 'cancelled' WHERE id = :id"), {"id": late})
        assert automations.withdraw_appointment_messages(session, clinic.id, late) == 1
        status = session.execute(text("SELECT status FROM appointments WHERE id = :id"), {"id": late}).scalar_one()
        assert automation_still_relevant({"automation": "reminder_24h", "appointment_id": late}, status) is False
    enqueue_bulk_sends(clinic.id, created.outbox_ids)
    stack.wait_idle(clinic.id)
    assert [r["status"] for r in clinic.rows(database)[late_key]] == ["cancelled"]
    assert not [m for m in list(stack.twilio.messages) if m.to in (early_phone, late_phone)]
    assert automations.scan_clinic(database, clinic.id, moment + timedelta(hours=2)).outbox_ids == []


def _move(database, clinic: Clinic, appointment_id: int, new_start: datetime, now: datetime) -> None:
    """Staff move the visit (``AppointmentService.move``: the move path that withdraws its queued texts)."""
    with database.tenant_scope(clinic.id) as session:
        found = load_clinic(session, clinic.id)
    assert found is not None
    service = AppointmentService(database, found, now=now)
    service.move(lambda session: store.appointment_for_update(session, clinic.id, appointment_id), new_start)


def test_a_visit_moved_after_its_reminder_went_out_is_reminded_for_its_new_time(auto_stack, database, owner_engine):
    stack, _ = auto_stack
    clinic = Clinic(owner_engine)
    moment = la(datetime.now(LA).date() + timedelta(days=2), time(12))
    first_start, new_start = moment + timedelta(hours=24), moment + timedelta(hours=48)
    client_id, phone = clinic.client("Mo Ved")
    appt = clinic.appointment(client_id, first_start, "booked", created_at=moment - timedelta(days=5))
    kept_id, kept_phone = clinic.client("Stay Put")  # the control: same window, never moved
    kept_start = first_start - timedelta(hours=1)
    kept = clinic.appointment(kept_id, kept_start, "booked", created_at=moment - timedelta(days=5))

    first = automations.scan_clinic(database, clinic.id, moment + timedelta(hours=1))
    assert len(first.outbox_ids) == 2
    stack.clock.set(moment + timedelta(hours=1))
    enqueue_bulk_sends(clinic.id, first.outbox_ids)
    wait_for(lambda: {m.to for m in list(stack.twilio.messages)} >= {phone, kept_phone}, 30, what="both reminders")
    stack.wait_idle(clinic.id)

    _move(database, clinic, appt, new_start, moment + timedelta(hours=2))
    # An unchanged visit scanned again while its reminder is due gets nothing more.
    assert automations.scan_clinic(database, clinic.id, moment + timedelta(hours=3)).outbox_ids == []

    # A day before the new time: the reminder for that time, with that time in it — once.
    at_new = automations.scan_clinic(database, clinic.id, new_start - timedelta(hours=24))
    assert automations.scan_clinic(database, clinic.id, new_start - timedelta(hours=23)).outbox_ids == []
    rows = clinic.rows(database)
    assert [r["status"] for r in rows[dedupe_key("reminder_24h", appt, first_start)]] == ["sent"]
    [reminder] = rows[dedupe_key("reminder_24h", appt, new_start)]
    assert len(at_new.outbox_ids) == 1 and reminder["to_address"] == phone
    assert when_label(new_start, "America/Los_Angeles") in reminder["body"]
    assert [r["status"] for r in rows[dedupe_key("reminder_24h", kept, kept_start)]] == ["sent"]
    assert len(rows) == 3
    stack.clock.set(new_start - timedelta(hours=24))
    enqueue_bulk_sends(clinic.id, at_new.outbox_ids)
    wait_for(lambda: [m.to for m in list(stack.twilio.messages)].count(phone) == 2, 30, what="the new reminder")
    stack.wait_idle(clinic.id)
    assert [m.to for m in list(stack.twilio.messages)].count(kept_phone) == 1


def test_a_visit_moved_while_its_reminders_were_queued_is_reminded_for_its_new_time(database, owner_engine):
    """The move withdraws the queued reminder and deposit reminder (they name the old time); the next scan creates
    them for the new time, and a scan after that creates nothing more."""
    clinic = Clinic(owner_engine)
    moment = la(datetime.now(LA).date() + timedelta(days=2), time(12))
    booked_id, _ = clinic.client("Quinn Queued")
    booked_start, booked_moved = moment + timedelta(hours=24, minutes=30), moment + timedelta(hours=26)
    booked = clinic.appointment(booked_id, booked_start, "booked", created_at=moment - timedelta(days=5))
    held_id, _ = clinic.client("Dee Held")
    held_start, held_moved = moment + timedelta(days=3), moment + timedelta(days=4)
    held = clinic.appointment(
        held_id,
        held_start,
        "pending_deposit",
        created_at=moment - timedelta(minutes=30),
        hold_expires_at=moment + timedelta(hours=3),
    )

    queued = automations.scan_clinic(database, clinic.id, moment + timedelta(minutes=30))
    assert len(queued.outbox_ids) == 2
    _move(database, clinic, booked, booked_moved, moment + timedelta(hours=1))
    _move(database, clinic, held, held_moved, moment + timedelta(hours=1))

    again = automations.scan_clinic(database, clinic.id, moment + timedelta(hours=2))
    assert len(again.outbox_ids) == 2
    assert automations.scan_clinic(database, clinic.id, moment + timedelta(hours=2, minutes=5)).outbox_ids == []
    rows = clinic.rows(database)
    withdrawn = (dedupe_key("reminder_24h", booked, booked_start), dedupe_key("deposit_reminder", held, held_start))
    assert [rows[key][0]["status"] for key in withdrawn] == ["cancelled", "cancelled"]
    for key, start in (
        (dedupe_key("reminder_24h", booked, booked_moved), booked_moved),
        (dedupe_key("deposit_reminder", held, held_moved), held_moved),
    ):
        [row] = rows[key]
        assert row["status"] == "queued" and when_label(start, "America/Los_Angeles") in row["body"]
    assert len(rows) == 4


def test_a_visit_under_way_is_upcoming_everywhere_so_no_rebook_nudge_or_win_back(database, owner_engine):
    """One definition of "has an upcoming visit": a patient whose next visit has started (checked in, or booked
    and ten minutes in) is upcoming for the agent, the console and the campaign segment, and the marketing
    automations that would ask them to come back leave them alone.  Clients with nothing booked are the
    control: the same scan nudges them."""
    clinic = Clinic(owner_engine)
    moment = la(datetime.now(LA).date() + timedelta(days=2), time(12))
    long_ago = moment - timedelta(days=400)

    def client_with_last_visit(name: str, service: str, days_ago: int) -> tuple[int, int]:
        client_id, _ = clinic.client(name)
        visit = clinic.appointment(
            client_id, moment - timedelta(days=days_ago), "completed", created_at=long_ago, service=service
        )
        return client_id, visit

    # Rebook nudge due now (Botox every 90 days) for three of them, win-back (180 days) for two.
    checked_in, _ = client_with_last_visit("Chad Checkin", "tox", 90)
    started, _ = client_with_last_visit("Stella Started", "tox", 90)
    long_visit, _ = client_with_last_visit("Lena Long", "tox", 90)
    nudged, nudged_visit = client_with_last_visit("Nell Nudge", "tox", 90)
    back_in, _ = client_with_last_visit("Bea Back", "facial", 180)
    missed, missed_visit = client_with_last_visit("Miss Dee", "facial", 180)
    under_way = {
        checked_in: clinic.appointment(checked_in, moment - timedelta(minutes=10), "checked_in", created_at=long_ago),
        started: clinic.appointment(
            started, moment - timedelta(minutes=10), "booked", created_at=long_ago, provider=clinic.other_provider("b")
        ),
        # In the chair 70 minutes into a 90-minute visit: past the hour of grace, not over.
        long_visit: clinic.appointment(
            long_visit,
            moment - timedelta(minutes=70),
            "checked_in",
            created_at=long_ago,
            minutes=90,
            provider=clinic.other_provider("c"),
        ),
        back_in: clinic.appointment(
            back_in,
            moment - timedelta(minutes=10),
            "checked_in",
            created_at=long_ago,
            service="facial",
            provider=clinic.other_provider("d"),
        ),
    }

    automations.scan_clinic(database, clinic.id, moment)
    assert set(clinic.rows(database)) == {
        f"auto:rebook_nudge:appt:{nudged_visit}",
        f"auto:win_back:appt:{missed_visit}",
    }

    # The agent's list (the prompt and get_my_appointments) shows each visit under way, by the same clock.
    for client_id, appointment_id in under_way.items():
        conversation_id = clinic.conversation(client_id)
        with database.tenant_connection(clinic.id) as conn:
            rows = conn.execute(UPCOMING_OF_CONVERSATION, {"id": conversation_id, "now": moment}).fetchall()
        assert [view.id for view in upcoming_views(rows)] == [appointment_id]

    with database.tenant_scope(clinic.id) as session:
        # The campaign segment "has a future appointment" agrees.
        for wanted, expected in ((True, set(under_way)), (False, {nudged, missed})):
            sql, params = segment_sql(SegmentFilter.from_dict({"has_future_appointment": wanted}))
            found = session.execute(
                text(sql), {**params, "clinic_id": clinic.id, "tz": "America/Los_Angeles", "now": moment}
            ).scalars()
            assert set(found) == expected
        # The console's profile lists it as upcoming, and not among the recent visits as well.
        upcoming = client_queries.visits(session, long_visit, upcoming=True, now=moment)
        recent = client_queries.visits(session, long_visit, upcoming=False, now=moment)
    assert [v["id"] for v in upcoming] == [under_way[long_visit]]
    assert [v["status"] for v in recent] == ["completed"]


def test_a_rebook_nudge_waiting_for_the_morning_is_not_sent_to_a_client_who_booked_overnight(
    auto_stack, database, owner_engine
):
    """A rebook nudge planned in the evening reaches its sender after the marketing window closed and waits for
    the morning.  One client books their next visit overnight: in the morning the send path suppresses their
    nudge, with the reason, and texts them nothing.  The other client booked nothing: their nudge goes out."""
    stack, container = auto_stack
    clinic = Clinic(owner_engine)
    day = datetime.now(LA).date() + timedelta(days=2)
    evening, night, morning = la(day, time(20, 30)), la(day, time(22)), la(day + timedelta(days=1), time(8, 5))
    long_ago = evening - timedelta(days=400)
    booker, booker_phone = clinic.client("Bo Booker")
    booker_visit = clinic.appointment(booker, evening - timedelta(days=90), "completed", created_at=long_ago)
    idle, idle_phone = clinic.client("Ida Idle")
    idle_visit = clinic.appointment(idle, evening - timedelta(days=90), "completed", created_at=long_ago)

    planned = automations.scan_clinic(database, clinic.id, evening)
    assert set(clinic.rows(database)) == {
        f"auto:rebook_nudge:appt:{booker_visit}",
        f"auto:rebook_nudge:appt:{idle_visit}",
    }

    def outbox() -> dict[str, tuple[int, str, str, datetime | None]]:
        with database.tenant_scope(clinic.id) as session:
            found = session.execute(
                text("SELECT to_address, id, status, error_message, not_before FROM outbox WHERE id = ANY(:ids)"),
                {"ids": planned.outbox_ids},
            ).all()
        return {phone: (int(id_), status, error, not_before) for phone, id_, status, error, not_before in found}

    ids = {phone: row[0] for phone, row in outbox().items()}
    ports = send_ports(container, SmsRateLimiter(container.redis, 0))

    stack.clock.set(night)  # the bulk sender gets to them after 21:00: both wait for 08:00
    assert [send_one(ports, clinic.id, ids[p]).status for p in (booker_phone, idle_phone)] == ["deferred"] * 2

    clinic.appointment(booker, la(day + timedelta(days=7), time(10)), "booked", created_at=night)

    stack.clock.set(morning)
    assert send_one(ports, clinic.id, ids[booker_phone]).status == "suppressed"
    assert send_one(ports, clinic.id, ids[idle_phone]).status == "sent"
    recorded = outbox()
    eight = la(day + timedelta(days=1), time(8))  # where the night's claim deferred both
    assert recorded[booker_phone][1:] == ("suppressed", BOOKED_SINCE, eight)
    assert recorded[idle_phone][1] == "sent" and recorded[idle_phone][3] == eight
    assert [m.to for m in list(stack.twilio.messages) if m.to in (booker_phone, idle_phone)] == [idle_phone]


def test_quiet_hours_and_consent_apply_to_automations(database, owner_engine):
    clinic = Clinic(owner_engine)
    day = datetime.now(LA).date() + timedelta(days=2)
    early_id, _ = clinic.client("Early Bird")
    appt = clinic.appointment(early_id, la(day, time(9)), "booked", created_at=la(day, time(0)) - timedelta(days=3))
    out_id, _ = clinic.client("Opted Out", consent="opted_out")
    clinic.appointment(out_id, la(day, time(13)), "completed", created_at=la(day, time(0)) - timedelta(days=9))
    # 07:00 local: the 2 h reminder is due but the clinic's quiet hours run until 08:00 — nothing yet.
    assert automations.scan_clinic(database, clinic.id, la(day, time(7))).outbox_ids == []
    key = dedupe_key("reminder_2h", appt, la(day, time(9)))
    assert key not in clinic.rows(database)
    at_eight = automations.scan_clinic(database, clinic.id, la(day, time(8)))
    assert len(at_eight.outbox_ids) == 1
    assert clinic.rows(database)[key][0]["status"] == "queued"
    # An opted-out client's aftercare is recorded as suppressed once and never retried.
    next_day = la(day + timedelta(days=1), time(14))
    first = automations.scan_clinic(database, clinic.id, next_day)
    assert first.outbox_ids == [] and first.suppressed == 1
    assert automations.scan_clinic(database, clinic.id, next_day + timedelta(minutes=1)).suppressed == 0
    suppressed = [r for rows in clinic.rows(database).values() for r in rows if r["status"] == "suppressed"]
    assert [r["meta"]["automation"] for r in suppressed] == ["aftercare"]


def test_reply_c_to_a_reminder_confirms_the_appointment(auto_stack, database, owner_engine):
    stack, _ = auto_stack
    clinic = Clinic(owner_engine)
    moment = la(datetime.now(LA).date() + timedelta(days=2), time(12))
    client_id, phone = clinic.client("Cee Firm")
    appt = clinic.appointment(client_id, moment + timedelta(hours=24), "booked", created_at=moment - timedelta(days=3))
    other_id, _ = clinic.client("No Reminder")
    clinic.appointment(other_id, moment + timedelta(days=6), "booked", created_at=moment - timedelta(days=3))
    now = datetime.now(UTC)
    with database.tenant_scope(clinic.id) as session:  # nothing reminded yet: "C" is ordinary dialogue
        assert automations.handle_reminder_reply(session, clinic.id, client_id, "C", now) is None
    created = automations.scan_clinic(database, clinic.id, moment)
    stack.clock.set(moment)
    enqueue_bulk_sends(clinic.id, created.outbox_ids)
    stack.wait_replies(phone, 1)
    stack.wait_idle(clinic.id)
    with database.tenant_scope(clinic.id) as session:
        assert automations.handle_reminder_reply(session, clinic.id, client_id, "R", now) is None
        assert automations.handle_reminder_reply(session, clinic.id, other_id, "C", now) is None
        reply = automations.handle_reminder_reply(session, clinic.id, client_id, "C", now)
    assert reply is not None and reply.startswith("Thanks Cee, your Botox on ") and "is confirmed" in reply
    with database.tenant_scope(clinic.id) as session:
        status, confirmed_at = session.execute(
            text("SELECT status, patient_confirmed_at FROM appointments WHERE id = :id"), {"id": appt}
        ).one()
        assert (status, confirmed_at) == ("confirmed", now)
        again = automations.handle_reminder_reply(session, clinic.id, client_id, "yes", now + timedelta(minutes=1))
        assert again == reply
        assert (
            session.execute(
                text("SELECT patient_confirmed_at FROM appointments WHERE id = :id"), {"id": appt}
            ).scalar_one()
            == now
        )
