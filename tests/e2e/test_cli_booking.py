"""``medspa appointments book``: staff book a phone or walk-in patient through the agent's booking service
(availability, exclusion constraint, screening, deposit rules), run as subprocesses against real Postgres.

Each test works in its own freshly onboarded clinic (the example clinic file, applied through the CLI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from db.engine import Database
from medspa.services import Infrastructure
from tests.e2e.test_cli_clinic import assert_one_line_error, medspa
from tests.e2e.test_cli_day_to_day import TZ, NewClinic, clinic, next_weekday, outbox_to  # noqa: F401 - fixture
from tests.e2e.test_cli_day_to_day import book as paid_booking
from tests.support.phones import random_phone

__all__ = ["clinic"]


def new_client(
    database: Database, clinic: NewClinic, *, name: str = "Robin Vale", consent: str = "opted_in", said: str = ""
) -> tuple[int, str, int]:
    """A client with an SMS conversation (and, when ``said``, one message of theirs in it)."""
    number = random_phone()
    with database.tenant_scope(clinic.id) as session:
        client_id = session.execute(
            text(
                """INSERT INTO clients (clinic_id, phone_e164, name, consent_state)
                   VALUES (:c, :p, :n, :consent) RETURNING id"""
            ),
            {"c": clinic.id, "p": number, "n": name, "consent": consent},
        ).scalar_one()
        conversation_id = session.execute(
            text("INSERT INTO conversations (clinic_id, client_id, channel) VALUES (:c, :cl, 'sms') RETURNING id"),
            {"c": clinic.id, "cl": client_id},
        ).scalar_one()
        if said:
            session.execute(
                text(
                    """INSERT INTO messages (clinic_id, conversation_id, direction, role, body, channel)
                       VALUES (:c, :conv, 'inbound', 'user', :body, 'sms')"""
                ),
                {"c": clinic.id, "conv": conversation_id, "body": said},
            )
    return int(client_id), number, int(conversation_id)


def appointments_of(database: Database, clinic: NewClinic, client_id: int) -> list[dict]:
    with database.tenant_scope(clinic.id) as session:
        return [
            dict(r)
            for r in session.execute(
                text(
                    """SELECT a.id, a.status, a.starts_at, a.hold_expires_at, a.conversation_id, a.source_key,
                              a.deposit_cents, a.notes, p.slug AS provider, s.slug AS service
                       FROM appointments a JOIN providers p ON p.id = a.provider_id
                       JOIN services s ON s.id = a.service_id
                       WHERE a.client_id = :c ORDER BY a.id"""
                ),
                {"c": client_id},
            ).mappings()
        ]


def history_of_texts(database: Database, clinic: NewClinic, number: str) -> list[tuple[str, str, str | None]]:
    """(where the text came from, its body, the conversation message it was written to) per text to ``number``."""
    with database.tenant_scope(clinic.id) as session:
        rows = session.execute(
            text(
                """SELECT o.meta->>'by', o.body, m.body FROM outbox o
                   LEFT JOIN messages m ON m.id = (o.meta->>'message_id')::bigint AND m.role = 'staff'
                   WHERE o.to_address = :p ORDER BY o.id"""
            ),
            {"p": number},
        ).all()
    return [(str(by), str(body), history) for by, body, history in rows]


def book(infra: Infrastructure, clinic: NewClinic, *args: str):  # noqa: ANN201
    return medspa(infra, "appointments", "book", "--clinic", clinic.slug, *args)


def test_book_at_a_time_texts_once_and_is_idempotent(
    infra: Infrastructure, database: Database, clinic: NewClinic
) -> None:
    client_id, number, conversation_id = new_client(database, clinic)
    day = next_weekday(2)  # a Wednesday: Lena works 10:00-18:00
    args = ("--client", number, "--service", "signature-facial", "--provider", "lena-brandt", "--at", f"{day} 11:00")
    first = book(infra, clinic, *args, "--text", "--note", "walk-in, prefers unscented")
    assert first.returncode == 0, first.stderr
    assert "booked appointment" in first.stdout and "(booked)" in first.stdout and "patient texted" in first.stdout
    assert number not in first.stderr  # nothing about the patient on the log stream
    [row] = appointments_of(database, clinic, client_id)
    assert (row["status"], row["provider"], row["service"]) == ("booked", "lena-brandt", "signature-facial")
    assert row["starts_at"] == datetime.combine(day, datetime.strptime("11:00", "%H:%M").time(), TZ)
    assert row["conversation_id"] == conversation_id and row["notes"] == "walk-in, prefers unscented"
    [sent] = outbox_to(database, clinic, number)
    assert sent["dedupe_key"] == f"staff:book:{row['id']}" and "you're booked" in sent["body"]
    assert "Willow signature facial with Lena Brandt" in sent["body"] and sent["body"].startswith("Hi Robin,")
    # The text is in the patient's conversation, linked to its outbox row (the agent sees what staff said).
    assert history_of_texts(database, clinic, number) == [("staff-cli", sent["body"], sent["body"])]

    again = book(infra, clinic, *args, "--text")
    assert again.returncode == 0, again.stderr
    assert f"already booked appointment {row['id']}" in again.stdout
    assert len(appointments_of(database, clinic, client_id)) == 1 and len(outbox_to(database, clinic, number)) == 1

    # Cancelled, the same booking can be made anew (and the patient is told again).
    cancelled = medspa(infra, "appointments", "cancel", str(row["id"]), "--clinic", clinic.slug, "--reason", "test")
    assert cancelled.returncode == 0, cancelled.stderr
    anew = book(infra, clinic, *args, "--text")
    assert anew.returncode == 0 and "booked appointment" in anew.stdout and "already" not in anew.stdout
    assert [r["status"] for r in appointments_of(database, clinic, client_id)] == ["cancelled", "booked"]
    assert [o["dedupe_key"].split(":")[1] for o in outbox_to(database, clinic, number)] == ["book", "cancel", "book"]
    assert all(body == history for _, body, history in history_of_texts(database, clinic, number))


def test_a_taken_or_closed_time_is_refused_with_alternatives(
    infra: Infrastructure, database: Database, clinic: NewClinic
) -> None:
    day = next_weekday(2)
    first_id, first_number, _ = new_client(database, clinic)
    second_id, second_number, _ = new_client(database, clinic, name="Sam Other")
    taken = book(infra, clinic, "--client", str(first_id), "--service", "dermaplaning", "--provider", "lena-brandt",
                 "--at", f"{day} 14:00")  # fmt: skip
    assert taken.returncode == 0, taken.stderr
    clash = book(infra, clinic, "--client", second_number, "--service", "dermaplaning", "--provider", "lena-brandt",
                 "--at", f"{day} 14:30")  # fmt: skip
    assert_one_line_error(clash, "not available", "nothing booked", "open nearby")
    monday = day - timedelta(days=2)  # the clinic is closed on Mondays
    closed = book(infra, clinic, "--client", second_number, "--service", "dermaplaning", "--at", f"{monday} 11:00")
    assert_one_line_error(closed, "not available", "nothing booked")
    assert appointments_of(database, clinic, second_id) == []
    assert len(appointments_of(database, clinic, first_id)) == 1


def test_screening_refuses_a_contraindicated_service(
    infra: Infrastructure, database: Database, clinic: NewClinic
) -> None:
    client_id, number, _ = new_client(database, clinic, said="I'm 5 months pregnant, is botox ok?")
    day = next_weekday(1)  # a Tuesday: Hana works 10:00-18:00
    refused = book(infra, clinic, "--client", number, "--service", "neurotoxin", "--at", f"{day} 11:00", "--text")
    assert_one_line_error(refused, "screening", "Botox", "pregnancy", "nothing booked")
    assert appointments_of(database, clinic, client_id) == [] and outbox_to(database, clinic, number) == []
    # The same patient can book what the clinic suggests instead.
    facial = book(infra, clinic, "--client", number, "--service", "consultation", "--at", f"{day} 11:00")
    assert facial.returncode == 0, facial.stderr


def test_a_deposit_service_is_held_until_paid(infra: Infrastructure, database: Database, clinic: NewClinic) -> None:
    client_id, number, _ = new_client(database, clinic)
    day = next_weekday(1)
    before = datetime.now(UTC)
    result = book(infra, clinic, "--client", number, "--service", "botox", "--at", f"{day} 15:00", "--text")
    assert result.returncode == 0, result.stderr
    assert "(pending_deposit)" in result.stdout and "deposit: $50 due; held until" in result.stdout
    [row] = appointments_of(database, clinic, client_id)
    assert row["status"] == "pending_deposit" and row["deposit_cents"] == 5000 and row["provider"] == "hana-okafor"
    # The clinic's policy: a 60-minute hold.
    assert before + timedelta(minutes=59) <= row["hold_expires_at"] <= datetime.now(UTC) + timedelta(minutes=61)
    [sent] = outbox_to(database, clinic, number)
    assert "$50 deposit holds this time" in sent["body"]


def test_first_available_respects_hours_and_the_provider(
    infra: Infrastructure, database: Database, clinic: NewClinic
) -> None:
    client_id, number, _ = new_client(database, clinic)
    after = next_weekday(2)  # from a Wednesday: Hana's next day is Thursday, 12:00
    result = book(infra, clinic, "--client", number, "--service", "consultation", "--provider", "hana-okafor",
                  "--first-available", "--after", after.isoformat())  # fmt: skip
    assert result.returncode == 0, result.stderr
    [row] = appointments_of(database, clinic, client_id)
    local = row["starts_at"].astimezone(TZ)
    assert row["provider"] == "hana-okafor" and local.date() == after + timedelta(days=1) and local.hour == 12
    assert local.minute == 0


def test_unknown_client_service_or_provider_is_one_line(
    infra: Infrastructure, database: Database, clinic: NewClinic
) -> None:
    _, number, _ = new_client(database, clinic)
    day = next_weekday(2)
    assert_one_line_error(
        book(infra, clinic, "--client", "+14150000000", "--service", "dermaplaning", "--at", f"{day} 11:00"),
        "no client",
    )
    assert_one_line_error(
        book(infra, clinic, "--client", number, "--service", "tattoo-removal", "--at", f"{day} 11:00"),
        "no service 'tattoo-removal'",
    )
    assert_one_line_error(
        book(
            infra,
            clinic,
            "--client",
            number,
            "--service",
            "neurotoxin",
            "--provider",
            "lena-brandt",
            "--at",
            f"{day} 11:00",
        ),  # fmt: skip
        "does not offer Botox",
    )
    assert_one_line_error(
        book(infra, clinic, "--client", number, "--service", "dermaplaning", "--at", "2020-01-01 11:00"), "in the past"
    )


def test_an_opted_out_patient_is_booked_but_not_texted(
    infra: Infrastructure, database: Database, clinic: NewClinic
) -> None:
    client_id, number, _ = new_client(database, clinic, consent="opted_out")
    day = next_weekday(3)  # a Thursday
    result = book(infra, clinic, "--client", number, "--service", "dermaplaning", "--at", f"{day} 10:00", "--text")
    assert result.returncode == 0, result.stderr
    assert "patient not texted: they opted out" in result.stdout
    assert len(appointments_of(database, clinic, client_id)) == 1 and outbox_to(database, clinic, number) == []


def test_staff_cancel_keeps_an_early_deposit_when_the_clinic_does(
    infra: Infrastructure, database: Database, clinic: NewClinic, owner_engine: Engine
) -> None:
    """The one deposit rule (domain.appointments) for staff too: a clinic that keeps early-cancel deposits."""
    with owner_engine.begin() as conn:
        conn.execute(
            text(
                """UPDATE clinics SET policies = policies || '{"deposit_refund_outside_window": false}'::jsonb
                   WHERE id = :id"""
            ),
            {"id": clinic.id},
        )
    booking = paid_booking(database, clinic, day=next_weekday(2), deposit_paid=5000)
    result = medspa(
        infra, "appointments", "cancel", str(booking.appointment_id), "--clinic", clinic.slug, "--reason", "moving away"
    )
    assert result.returncode == 0, result.stderr
    assert "deposit: deposit kept (clinic policy)" in result.stdout
    [sent] = outbox_to(database, clinic, booking.phone)
    assert "Per the clinic's policy, the $50 deposit is kept." in sent["body"] and "refunded" not in sent["body"]
