"""Day-to-day staff commands (clients, appointments, kb) run as subprocesses against real Postgres.

Each test works in its own freshly onboarded clinic (applied through the CLI), so provider calendars and
clients never collide with other tests sharing the session database.
"""

from __future__ import annotations

import csv
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from db.engine import Database
from medspa.services import Infrastructure
from tests.e2e.test_cli_clinic import assert_one_line_error, check_help, medspa, new_clinic_file
from tests.support.infra import wait_for
from tests.support.phones import random_phone

TZ = ZoneInfo("America/Los_Angeles")


@dataclass
class NewClinic:
    slug: str
    id: int
    number: str


@dataclass
class Booking:
    appointment_id: int
    client_id: int
    phone: str
    starts_at: datetime
    provider_id: int


@pytest.fixture()
def clinic(infra: Infrastructure, owner_engine: Engine, tmp_path: Path) -> NewClinic:
    path, data = new_clinic_file(tmp_path, owner_engine)
    result = medspa(infra, "clinic", "apply", str(path), "--yes")
    assert result.returncode == 0, result.stderr
    with owner_engine.connect() as conn:
        clinic_id = conn.execute(text("SELECT id FROM clinics WHERE slug = :s"), {"s": data["slug"]}).scalar_one()
    return NewClinic(data["slug"], int(clinic_id), data["phone_numbers"]["sms"][0])


def phone() -> str:
    return random_phone()


def next_weekday(weekday: int, weeks_ahead: int = 3) -> date:
    """A day a few weeks out (outside any cancellation window) with the given weekday (0 = Monday)."""
    day = datetime.now(TZ).date() + timedelta(weeks=weeks_ahead)
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def book(
    database: Database,
    clinic: NewClinic,
    *,
    day: date,
    at: str = "11:00",
    name: str = "Riley Stone",
    provider: str = "lena-brandt",
    service: str = "signature-facial",
    deposit_paid: int = 0,
) -> Booking:
    """Test data: a client with an SMS conversation and a booked appointment (as the agent would have made)."""
    number = phone()
    start = datetime.combine(day, datetime.strptime(at, "%H:%M").time(), TZ)
    with database.tenant_scope(clinic.id) as session:
        client_id = session.execute(
            text(
                """INSERT INTO clients (clinic_id, phone_e164, name, consent_state)
               VALUES (:c, :p, :n, 'opted_in') RETURNING id"""
            ),
            {"c": clinic.id, "p": number, "n": name},
        ).scalar_one()
        session.execute(
            text("INSERT INTO conversations (clinic_id, client_id, channel) VALUES (:c, :cl, 'sms')"),
            {"c": clinic.id, "cl": client_id},
        )
        svc = session.execute(
            text("SELECT id, duration_min, buffer_min FROM services WHERE slug = :s"), {"s": service}
        ).one()
        provider_id = session.execute(text("SELECT id FROM providers WHERE slug = :s"), {"s": provider}).scalar_one()
        end = start + timedelta(minutes=svc.duration_min)
        appointment_id = session.execute(
            text(
                """INSERT INTO appointments (clinic_id, client_id, provider_id, service_id, starts_at, ends_at,
                                         blocked_until, status, deposit_cents)
               VALUES (:c, :cl, :p, :s, :start, :end, :blocked, 'booked', :deposit) RETURNING id"""
            ),
            {
                "c": clinic.id,
                "cl": client_id,
                "p": provider_id,
                "s": svc.id,
                "start": start,
                "end": end,
                "blocked": end + timedelta(minutes=svc.buffer_min),
                "deposit": deposit_paid,
            },
        ).scalar_one()
        if deposit_paid:
            session.execute(
                text(
                    """INSERT INTO payments (clinic_id, appointment_id, client_id, provider, checkout_session_id,
                                         payment_intent_id, amount_cents, status, url, expires_at)
                   VALUES (:c, :a, :cl, 'local', :cs, :pi, :amount, 'paid', 'http://local/pay', now())"""
                ),
                {
                    "c": clinic.id,
                    "a": appointment_id,
                    "cl": client_id,
                    "cs": "cs_test_" + uuid.uuid4().hex,
                    "pi": "pi_test_" + uuid.uuid4().hex,
                    "amount": deposit_paid,
                },
            )
    return Booking(int(appointment_id), int(client_id), number, start, int(provider_id))


def appointment(database: Database, clinic: NewClinic, appointment_id: int) -> dict:
    with database.tenant_scope(clinic.id) as session:
        return dict(
            session.execute(text("SELECT * FROM appointments WHERE id = :id"), {"id": appointment_id}).mappings().one()
        )


def outbox_to(database: Database, clinic: NewClinic, number: str) -> list[dict]:
    with database.tenant_scope(clinic.id) as session:
        return [
            dict(r)
            for r in session.execute(
                text("SELECT kind, status, dedupe_key, body FROM outbox WHERE to_address = :p ORDER BY id"),
                {"p": number},
            ).mappings()
        ]


def payment_status(database: Database, clinic: NewClinic, appointment_id: int) -> str:
    with database.tenant_scope(clinic.id) as session:
        return str(
            session.execute(
                text("SELECT status FROM payments WHERE appointment_id = :a"), {"a": appointment_id}
            ).scalar_one()
        )


def live_rows(database: Database, clinic: NewClinic) -> list[tuple]:
    with database.tenant_scope(clinic.id) as session:
        return [
            tuple(r)
            for r in session.execute(
                text("SELECT id, kind, provider_id, starts_at, blocked_until, status FROM appointments ORDER BY id")
            )
        ]


# ---------------------------------------------------------------------------------------------- help
@pytest.mark.parametrize("group", ["clients", "appointments", "kb"])
def test_every_command_has_accurate_help(infra: Infrastructure, group: str, capsys: pytest.CaptureFixture[str]) -> None:
    check_help(infra, group, capsys)


# ---------------------------------------------------------------------------------------------- appointments
def test_cancel_on_patients_behalf_texts_once_frees_slot_and_refunds(
    infra: Infrastructure, database: Database, clinic: NewClinic, tmp_path: Path
) -> None:
    from tests.support.stack import running_stack

    day = next_weekday(2)  # a Wednesday: Lena works 10:00-18:00
    booking = book(database, clinic, day=day, deposit_paid=5000)
    with running_stack(infra, tmp_path) as (stack, _):
        result = medspa(
            infra,
            "appointments",
            "cancel",
            str(booking.appointment_id),
            "--clinic",
            clinic.slug,
            "--reason",
            "Patient called: travelling that week",
        )
        assert result.returncode == 0, result.stderr
        assert "slot freed" in result.stdout and "patient texted" in result.stdout
        assert "deposit: deposit refund queued" in result.stdout
        assert booking.phone not in result.stderr  # nothing about the patient on the log stream

        again = medspa(
            infra, "appointments", "cancel", str(booking.appointment_id), "--clinic", clinic.slug, "--reason", "twice"
        )
        assert_one_line_error(again, "is cancelled")

        texts = stack.wait_replies(booking.phone, 1)
        wait_for(
            lambda: payment_status(database, clinic, booking.appointment_id) == "refunded",
            30,
            what="the deposit refund",
        )
        stack.wait_idle(clinic.id)
        assert stack.replies_to(booking.phone) == texts  # exactly once
    assert len(texts) == 1
    assert "Riley" in texts[0] and "is cancelled" in texts[0] and "$50 deposit will be refunded" in texts[0]
    assert [m.from_ for m in stack.twilio.messages if m.to == booking.phone] == [clinic.number]

    row = appointment(database, clinic, booking.appointment_id)
    assert row["status"] == "cancelled" and row["cancel_reason"] == "Patient called: travelling that week"
    assert [o["dedupe_key"] for o in outbox_to(database, clinic, booking.phone)] == [
        f"staff:cancel:{booking.appointment_id}"
    ]
    # The slot is free again: a block over exactly that time is accepted.
    freed = medspa(
        infra,
        "appointments",
        "block",
        "--clinic",
        clinic.slug,
        "--provider",
        "lena-brandt",
        "--from",
        f"{day} 11:00",
        "--to",
        f"{day} 12:00",
        "--reason",
        "slot reuse check",
    )
    assert freed.returncode == 0, freed.stderr


def test_move_respects_other_bookings_and_texts_the_patient(
    infra: Infrastructure, database: Database, clinic: NewClinic
) -> None:
    day = next_weekday(2)
    booking = book(database, clinic, day=day, at="10:00")
    other = book(database, clinic, day=day, at="14:00", name="Sam Other")
    before = live_rows(database, clinic)

    clash = medspa(
        infra, "appointments", "move", str(booking.appointment_id), "--clinic", clinic.slug, "--to", f"{day} 14:30"
    )
    assert_one_line_error(clash, f"overlaps appointment {other.appointment_id}", "nothing changed")
    wrong = medspa(
        infra,
        "appointments",
        "move",
        str(booking.appointment_id),
        "--clinic",
        clinic.slug,
        "--to",
        f"{day} 16:00",
        "--provider",
        "nobody",
    )
    assert_one_line_error(wrong, "no provider 'nobody'", "lena-brandt")
    cannot = medspa(
        infra,
        "appointments",
        "move",
        str(booking.appointment_id),
        "--clinic",
        clinic.slug,
        "--to",
        f"{day} 16:00",
        "--provider",
        "hana-okafor",
    )
    assert_one_line_error(cannot, "does not offer Willow signature facial")
    assert_one_line_error(
        medspa(
            infra, "appointments", "move", str(booking.appointment_id), "--clinic", clinic.slug, "--to", "next tuesday"
        ),
        "invalid --to",
    )
    assert live_rows(database, clinic) == before
    assert outbox_to(database, clinic, booking.phone) == []

    moved = medspa(
        infra, "appointments", "move", str(booking.appointment_id), "--clinic", clinic.slug, "--to", f"{day} 16:00"
    )
    assert moved.returncode == 0, moved.stderr
    row = appointment(database, clinic, booking.appointment_id)
    assert row["starts_at"] == datetime.combine(day, datetime.strptime("16:00", "%H:%M").time(), TZ)
    assert row["ends_at"] - row["starts_at"] == timedelta(minutes=60)
    assert row["blocked_until"] - row["ends_at"] == timedelta(minutes=15)
    texts = outbox_to(database, clinic, booking.phone)
    assert len(texts) == 1 and texts[0]["kind"] == "staff" and "has moved to" in texts[0]["body"]
    with database.tenant_scope(clinic.id) as session:
        staff_note = (
            session.execute(
                text(
                    """SELECT m.body FROM messages m JOIN conversations c ON c.id = m.conversation_id
               WHERE c.client_id = :cl AND m.role = 'staff'"""
                ),
                {"cl": booking.client_id},
            )
            .scalars()
            .all()
        )
    assert staff_note == [texts[0]["body"]]  # the agent sees what staff told the patient


def test_block_time_and_overlapping_block_is_refused(
    infra: Infrastructure, database: Database, clinic: NewClinic
) -> None:
    day = next_weekday(1)  # Tuesday: Hana works 10:00-18:00
    ok = medspa(
        infra,
        "appointments",
        "block",
        "--clinic",
        clinic.slug,
        "--provider",
        "hana-okafor",
        "--from",
        f"{day} 12:00",
        "--to",
        f"{day} 13:30",
        "--reason",
        "Training",
    )
    assert ok.returncode == 0, ok.stderr
    before = live_rows(database, clinic)
    assert [r[1] for r in before] == ["block"]

    overlap = medspa(
        infra,
        "appointments",
        "block",
        "--clinic",
        clinic.slug,
        "--provider",
        "hana-okafor",
        "--from",
        f"{day} 13:00",
        "--to",
        f"{day} 14:00",
        "--reason",
        "Lunch",
    )
    assert_one_line_error(overlap, "hana-okafor is already busy", f"block {before[0][0]}", "nothing was blocked")
    unknown = medspa(
        infra,
        "appointments",
        "block",
        "--clinic",
        clinic.slug,
        "--provider",
        "maya-chen",
        "--from",
        f"{day} 13:00",
        "--to",
        f"{day} 14:00",
        "--reason",
        "Lunch",
    )
    assert_one_line_error(unknown, "no provider 'maya-chen'")
    backwards = medspa(
        infra,
        "appointments",
        "block",
        "--clinic",
        clinic.slug,
        "--provider",
        "hana-okafor",
        "--from",
        f"{day} 15:00",
        "--to",
        f"{day} 14:00",
        "--reason",
        "x",
    )
    assert_one_line_error(backwards, "--to must be after --from")
    assert live_rows(database, clinic) == before

    listed = medspa(infra, "appointments", "list", "--clinic", clinic.slug, "--date", str(day), "--json")
    rows = json.loads(listed.stdout)
    assert [(r["kind"], r["start"], r["end"], r["provider"]) for r in rows] == [
        ("block", "12:00", "13:30", "hana-okafor")
    ]
    assert rows[0]["service"] == "(blocked) Training"


def test_list_and_export_a_days_schedule(
    infra: Infrastructure, database: Database, clinic: NewClinic, tmp_path: Path
) -> None:
    day = next_weekday(4)  # Friday
    first = book(database, clinic, day=day, at="10:00", name="Avery Lane")
    second = book(
        database, clinic, day=day, at="13:00", name="Blake Moss", provider="lena-brandt", service="dermaplaning"
    )
    book(database, clinic, day=day + timedelta(days=7), at="10:00")  # another day: not listed

    table = medspa(
        infra, "appointments", "list", "--clinic", clinic.slug, "--date", str(day), "--provider", "lena-brandt"
    )
    assert table.returncode == 0, table.stderr
    assert "Avery Lane" in table.stdout and "Blake Moss" in table.stdout

    out = tmp_path / "schedule.csv"
    exported = medspa(infra, "appointments", "export", "--clinic", clinic.slug, "--date", str(day), "--csv", str(out))
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["id"], r["start"], r["end"], r["client"], r["service"], r["status"]) for r in rows] == [
        (str(first.appointment_id), "10:00", "11:00", "Avery Lane", "Willow signature facial", "booked"),
        (str(second.appointment_id), "13:00", "13:45", "Blake Moss", "Dermaplaning", "booked"),
    ]
    assert_one_line_error(
        medspa(infra, "appointments", "list", "--clinic", clinic.slug, "--date", "31/12/2026"), "invalid date"
    )
    assert_one_line_error(medspa(infra, "appointments", "list", "--clinic", "no-such-clinic"), "no clinic")


# ---------------------------------------------------------------------------------------------- clients
def test_search_show_and_record_consent(infra: Infrastructure, database: Database, clinic: NewClinic) -> None:
    booking = book(database, clinic, day=next_weekday(3), name="Quinn Harper")
    spelled = f"({booking.phone[2:5]}) {booking.phone[5:8]}-{booking.phone[8:]}"

    for query in (spelled, "quinn har"):
        found = medspa(infra, "clients", "search", query, "--clinic", clinic.slug, "--json")
        assert found.returncode == 0, found.stderr
        assert [c["id"] for c in json.loads(found.stdout)] == [booking.client_id]
        assert found.stderr == ""  # PHI goes to the terminal's stdout only; nothing is logged

    consent = medspa(
        infra,
        "clients",
        "consent",
        str(booking.client_id),
        "--clinic",
        clinic.slug,
        "--opt-out",
        "--wording",
        "Asked at the front desk to stop all texts.",
    )
    assert consent.returncode == 0, consent.stderr
    shown = medspa(infra, "clients", "show", str(booking.client_id), "--clinic", clinic.slug, "--json")
    details = json.loads(shown.stdout)
    assert details["name"] == "Quinn Harper" and details["consent"] == "opted_out"
    assert [a["id"] for a in details["appointments"]] == [booking.appointment_id]
    assert [c["channel"] for c in details["conversations"]] == ["sms"]
    assert [(e["kind"], e["source"], e["wording"]) for e in details["consent_events"]] == [
        ("opt_out", "staff", "Asked at the front desk to stop all texts.")
    ]
    text_view = medspa(infra, "clients", "show", str(booking.client_id), "--clinic", clinic.slug)
    assert "Quinn Harper" in text_view.stdout and "opt_out  via staff" in text_view.stdout

    # Another clinic's client is invisible here (row-level security), and bad ids are one line.
    assert_one_line_error(medspa(infra, "clients", "show", "1", "--clinic", clinic.slug), "no client 1")
    listed = medspa(infra, "clients", "list", "--clinic", clinic.slug, "--json")
    assert [c["id"] for c in json.loads(listed.stdout)] == [booking.client_id]


def test_cancelling_for_an_opted_out_patient_does_not_text(
    infra: Infrastructure, database: Database, clinic: NewClinic
) -> None:
    booking = book(database, clinic, day=next_weekday(2), at="15:00")
    assert (
        medspa(
            infra,
            "clients",
            "consent",
            str(booking.client_id),
            "--clinic",
            clinic.slug,
            "--opt-out",
            "--wording",
            "No texts please.",
        ).returncode
        == 0
    )
    result = medspa(
        infra, "appointments", "cancel", str(booking.appointment_id), "--clinic", clinic.slug, "--reason", "Called in"
    )
    assert result.returncode == 0, result.stderr
    assert "patient not texted: they opted out" in result.stdout
    assert outbox_to(database, clinic, booking.phone) == []


# ---------------------------------------------------------------------------------------------- knowledge base
def test_kb_ingest_is_idempotent_and_articles_can_be_managed(
    infra: Infrastructure, clinic: NewClinic, tmp_path: Path
) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "parking.md").write_text("# Parking at Willow\n\nFree two-hour street parking on NW 23rd.\n")
    (folder / "gift-cards.txt").write_text("Gift cards come in any amount and never expire.\n")

    first = medspa(infra, "kb", "ingest", "--clinic", clinic.slug, str(folder))
    assert first.returncode == 0, first.stderr
    assert f"{clinic.slug}: 2 added, 0 updated, 0 unchanged" in first.stdout
    again = medspa(infra, "kb", "ingest", "--clinic", clinic.slug, str(folder))
    assert f"{clinic.slug}: 0 added, 0 updated, 2 unchanged" in again.stdout
    (folder / "parking.md").write_text("# Parking at Willow\n\nThe NW 23rd garage validates two hours.\n")
    edited = medspa(infra, "kb", "ingest", "--clinic", clinic.slug, str(folder / "parking.md"))
    assert f"{clinic.slug}: 0 added, 1 updated, 0 unchanged" in edited.stdout

    listed = json.loads(medspa(infra, "kb", "list", "--clinic", clinic.slug, "--json").stdout)
    assert [(a["slug"], a["title"], a["chunks"]) for a in listed] == [
        ("gift-cards", "Gift cards", 1),
        ("parking", "Parking at Willow", 1),
    ]
    shown = medspa(infra, "kb", "show", "parking", "--clinic", clinic.slug)
    assert "garage validates two hours" in shown.stdout

    assert medspa(infra, "kb", "delete", "gift-cards", "--clinic", clinic.slug).returncode == 0
    assert_one_line_error(medspa(infra, "kb", "show", "gift-cards", "--clinic", clinic.slug), "no article")
    assert_one_line_error(
        medspa(infra, "kb", "ingest", "--clinic", clinic.slug, str(tmp_path / "missing.md")), "no such file"
    )
    assert [a["slug"] for a in json.loads(medspa(infra, "kb", "list", "--clinic", clinic.slug, "--json").stdout)] == [
        "parking"
    ]
