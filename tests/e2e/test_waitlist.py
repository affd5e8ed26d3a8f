"""The waitlist end to end: a staff cancellation (the real `medspa appointments cancel`) frees a slot, the
scheduled waitlist job texts the first waitlister with a hold, the hold lapses and the job moves on to the next,
and two YESes arriving together through the real Twilio webhook give exactly one booking and one "sorry, it was
taken" — the booking's exclusion constraint decides.  Real app over HTTP, real worker, real Postgres and Redis; a
fresh clinic (applied through the CLI), so nothing another test freed is offered here."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from db.clinics import load_clinic
from db.engine import Database
from medspa.services import Infrastructure
from tests.e2e.test_cli_clinic import assert_one_line_error, check_help, medspa, new_clinic_file
from tests.e2e.test_cli_day_to_day import TZ, NewClinic, book, next_weekday, phone
from worker.waitlist import store


@pytest.fixture()
def willow(infra: Infrastructure, owner_engine: Engine, tmp_path: Path) -> NewClinic:
    """A fresh clinic applied through the CLI: nothing another test freed is offered here."""
    path, data = new_clinic_file(tmp_path, owner_engine)
    result = medspa(infra, "clinic", "apply", str(path), "--yes")
    assert result.returncode == 0, result.stderr
    with owner_engine.connect() as conn:
        clinic_id = conn.execute(text("SELECT id FROM clinics WHERE slug = :s"), {"s": data["slug"]}).scalar_one()
    return NewClinic(data["slug"], int(clinic_id), data["phone_numbers"]["sms"][0])


def _open_weekday(database: Database, clinic: NewClinic, weekday: int, weeks_ahead: int = 3) -> date:
    """``next_weekday``, a week later while that is one of the clinic's closed dates: the waitlist offers no time
    on a closed date (a YES could not book it), and the example clinic closes on some Thursdays and Fridays."""
    with database.tenant_scope(clinic.id) as session:
        loaded = load_clinic(session, clinic.id)
    assert loaded is not None
    day = next_weekday(weekday, weeks_ahead)
    while day in loaded.closed_dates:
        day += timedelta(weeks=1)
    return day


def _waitlister(database: Database, clinic: NewClinic, name: str, day: datetime) -> tuple[str, int]:
    number = phone()
    with database.tenant_scope(clinic.id) as session:
        client_id = int(
            session.execute(
                text(
                    """INSERT INTO clients (clinic_id, phone_e164, name, consent_state)
                       VALUES (:c, :p, :n, 'opted_in') RETURNING id"""
                ),
                {"c": clinic.id, "p": number, "n": name},
            ).scalar_one()
        )
        service_id = int(session.execute(text("SELECT id FROM services WHERE slug = 'signature-facial'")).scalar_one())
        store.join(
            session,
            clinic.id,
            client_id,
            service_id=service_id,
            provider_id=None,
            windows=(),
            date_from=day.date(),
            date_to=day.date(),
            conversation_id=None,
        )
    return number, client_id


def _entry_status(database: Database, clinic: NewClinic, client_id: int) -> str:
    with database.tenant_scope(clinic.id) as session:
        return str(
            session.execute(
                text("SELECT status FROM waitlist_entries WHERE client_id = :c ORDER BY id DESC LIMIT 1"),
                {"c": client_id},
            ).scalar_one()
        )


def _live_at(database: Database, clinic: NewClinic, start: datetime) -> list[int]:
    with database.tenant_scope(clinic.id) as session:
        return [
            int(c)
            for c in session.execute(
                text(
                    """SELECT client_id FROM appointments
                       WHERE starts_at = :s AND status IN ('pending_deposit', 'booked', 'confirmed')"""
                ),
                {"s": start},
            ).scalars()
        ]


def test_a_cancellation_fills_from_the_waitlist_with_one_booking_under_two_concurrent_yeses(
    infra: Infrastructure, database: Database, willow: NewClinic, tmp_path: Path
) -> None:
    clinic = willow
    from tests.support.stack import running_stack
    from worker.sending import enqueue

    day = _open_weekday(database, clinic, 2)  # a Wednesday: Lena works 10:00-18:00
    booking = book(database, clinic, day=day, at="11:00")
    start = booking.starts_at
    first, first_id = _waitlister(database, clinic, "Ada First", start)
    second, second_id = _waitlister(database, clinic, "Bea Second", start)
    third, third_id = _waitlister(database, clinic, "Cy Third", start)

    with running_stack(infra, tmp_path) as (stack, _):
        # Two days before, mid-morning at the clinic: inside the texting window.
        stack.clock.set(datetime.combine(day - timedelta(days=2), datetime.min.time(), TZ).replace(hour=10))
        cancelled = medspa(
            infra, "appointments", "cancel", str(booking.appointment_id), "--clinic", clinic.slug, "--reason", "Sick"
        )
        assert cancelled.returncode == 0, cancelled.stderr
        assert _live_at(database, clinic, start) == []

        # The scheduled job: the first on the list is offered the slot with a hold.
        enqueue("tick_waitlist")
        (offer,) = stack.wait_replies(first, 1)
        assert "Reply YES within 15 min" in offer and "Willow signature facial" in offer, offer
        assert stack.replies_to(second) == [] and stack.replies_to(third) == []

        # The hold lapses: the job moves on to the next person.
        stack.clock.set(stack.clock.now() + timedelta(minutes=16))
        enqueue("tick_waitlist")
        (offer_b,) = stack.wait_replies(second, 1)
        assert "Reply YES within 15 min" in offer_b
        assert len(stack.replies_to(first)) == 1 and stack.replies_to(third) == []

        # Both answer at once (the first one late): exactly one booking, one "sorry, it was taken".
        barrier = threading.Barrier(2)

        def say_yes(number: str) -> None:
            barrier.wait(timeout=10)
            stack.send_sms(clinic.number, number, "YES")

        senders = [threading.Thread(target=say_yes, args=(n,)) for n in (first, second)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(timeout=30)
        stack.wait_replies(first, 2)
        stack.wait_replies(second, 2)
        stack.wait_idle(clinic.id)

        answers = {number: stack.replies_to(number)[-1] for number in (first, second)}
        booked = [n for n, body in answers.items() if body.startswith("You're booked")]
        sorry = [n for n, body in answers.items() if "sorry, it was taken" in body.lower()]
        assert len(booked) == 1 and len(sorry) == 1, answers
        winner_id, loser_id = (first_id, second_id) if booked == [first] else (second_id, first_id)
        assert _live_at(database, clinic, start) == [winner_id]
        assert _entry_status(database, clinic, winner_id) == "booked"
        assert _entry_status(database, clinic, loser_id) == "active"  # still on the list
        assert "still on the waitlist" in answers[sorry[0]]
        # The booking went through the agent's booking tool (audited like any tool call).
        calls = stack.tool_calls(booked[0], clinic.id)
        assert [c["name"] for c in calls] == ["book_appointment"] and calls[0]["ok"]

        # The slot is filled: the job never offers it again, so the third person is not texted about it.
        assert _opening_statuses(database, clinic) == ["filled"]
        assert _offered_clients(database, clinic) == [first_id, second_id]
        assert stack.replies_to(third) == [] and third_id not in _live_at(database, clinic, start)


def _opening_statuses(database: Database, clinic: NewClinic) -> list[str]:
    with database.tenant_scope(clinic.id) as session:
        return [str(s) for s in session.execute(text("SELECT status FROM waitlist_openings ORDER BY id")).scalars()]


def _offered_clients(database: Database, clinic: NewClinic) -> list[int]:
    with database.tenant_scope(clinic.id) as session:
        return [int(c) for c in session.execute(text("SELECT client_id FROM waitlist_offers ORDER BY id")).scalars()]


def test_a_yes_after_other_messages_is_not_taken_for_the_offer(
    infra: Infrastructure, database: Database, willow: NewClinic, tmp_path: Path
) -> None:
    """The offer's YES must be the patient's first reply to it: a YES later in a conversation is about something
    else (here: nothing), so it goes to the agent and books nothing."""
    from tests.support.stack import running_stack
    from worker.sending import enqueue

    clinic = willow
    day = _open_weekday(database, clinic, 3)  # a Thursday: Lena works 10:00-14:00 and 15:00-20:00
    booking = book(database, clinic, day=day, at="15:00")
    number, client_id = _waitlister(database, clinic, "Dee Later", booking.starts_at)
    with running_stack(infra, tmp_path) as (stack, _):
        stack.clock.set(datetime.combine(day - timedelta(days=1), datetime.min.time(), TZ).replace(hour=9))
        cancelled = medspa(
            infra, "appointments", "cancel", str(booking.appointment_id), "--clinic", clinic.slug, "--reason", "Moved"
        )
        assert cancelled.returncode == 0, cancelled.stderr
        enqueue("tick_waitlist")
        (offer,) = stack.wait_replies(number, 1)
        assert "Reply YES within 15 min" in offer
        stack.send_sms(clinic.number, number, "are you open on saturdays?")
        stack.wait_replies(number, 2)
        stack.send_sms(clinic.number, number, "YES")
        replies = stack.wait_replies(number, 3)
        stack.wait_idle(clinic.id)
        assert not replies[-1].startswith("You're booked") and "taken" not in replies[-1].lower(), replies
        assert _live_at(database, clinic, booking.starts_at) == []
        assert _entry_status(database, clinic, client_id) == "active"
        with database.tenant_scope(clinic.id) as session:
            status, answered = session.execute(text("SELECT status, answered_at FROM waitlist_offers")).one()
        assert status == "held" and answered is None


def test_staff_list_and_remove_waitlist_entries(
    infra: Infrastructure, database: Database, willow: NewClinic, capsys: pytest.CaptureFixture[str]
) -> None:
    check_help(infra, "waitlist", capsys)
    day = datetime.combine(next_weekday(4), datetime.min.time(), TZ)
    first, first_id = _waitlister(database, willow, "Ann Early", day)
    _waitlister(database, willow, "Ben Later", day)
    listed = medspa(infra, "waitlist", "list", "--clinic", willow.slug)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "JOINED", "CLIENT"]
    assert "Ann Early" in lines[1] and "Ben Later" in lines[2]  # the offer order: earliest first
    assert "Willow signature facial" in lines[1] and "any" in lines[1] and first in lines[1]
    as_json = medspa(infra, "waitlist", "list", "--clinic", willow.slug, "--json", "--service", "signature-facial")
    (entry_id,) = [row["id"] for row in json.loads(as_json.stdout) if row["client_name"] == "Ann Early"]

    removed = medspa(infra, "waitlist", "remove", str(entry_id), "--clinic", willow.slug, "--reason", "booked by phone")
    assert removed.returncode == 0 and f"removed waitlist entry {entry_id}" in removed.stdout, removed.stderr
    assert _entry_status(database, willow, first_id) == "removed"
    again = medspa(infra, "waitlist", "remove", str(entry_id), "--clinic", willow.slug)
    assert_one_line_error(again, f"no active waitlist entry {entry_id}")
    after = medspa(infra, "waitlist", "list", "--clinic", willow.slug)
    assert "Ann Early" not in after.stdout and "Ben Later" in after.stdout
    everything = medspa(infra, "waitlist", "list", "--clinic", willow.slug, "--all")
    assert "Ann Early" in everything.stdout and "removed" in everything.stdout


def test_a_no_passes_the_offer_to_the_next_person_at_once(
    infra: Infrastructure, database: Database, willow: NewClinic, tmp_path: Path
) -> None:
    from tests.support.stack import running_stack
    from worker.sending import enqueue

    clinic = willow
    day = _open_weekday(database, clinic, 4)  # a Friday: Lena works 10:00-18:00
    booking = book(database, clinic, day=day, at="15:00")
    first, first_id = _waitlister(database, clinic, "Eve No", booking.starts_at)
    second, _ = _waitlister(database, clinic, "Fay Next", booking.starts_at)
    with running_stack(infra, tmp_path) as (stack, _):
        stack.clock.set(datetime.combine(day - timedelta(days=3), datetime.min.time(), TZ).replace(hour=12))
        cancelled = medspa(
            infra, "appointments", "cancel", str(booking.appointment_id), "--clinic", clinic.slug, "--reason", "Ill"
        )
        assert cancelled.returncode == 0, cancelled.stderr
        enqueue("tick_waitlist")
        stack.wait_replies(first, 1)
        stack.send_sms(clinic.number, first, "no thanks")
        replies = stack.wait_replies(first, 2)
        assert "still on the waitlist" in replies[-1] and "next person" in replies[-1], replies
        # The hold has not run out, yet the next run offers the slot to the next person.
        enqueue("tick_waitlist")
        (offer,) = stack.wait_replies(second, 1)
        assert "Reply YES within 15 min" in offer
        assert _entry_status(database, clinic, first_id) == "active"
        assert _live_at(database, clinic, booking.starts_at) == []


def test_staff_unblocking_time_offers_it_to_the_waitlist_at_once(
    infra: Infrastructure, database: Database, willow: NewClinic, tmp_path: Path
) -> None:
    """`medspa appointments unblock` frees the time and wakes the waitlist job itself (no scheduler here)."""
    from tests.support.stack import running_stack

    clinic = willow
    day = _open_weekday(database, clinic, 2, weeks_ahead=4)  # a Wednesday: Lena works 10:00-18:00
    blocked = medspa(
        infra,
        "appointments",
        "block",
        "--clinic",
        clinic.slug,
        "--provider",
        "lena-brandt",
        "--from",
        f"{day} 13:00",
        "--to",
        f"{day} 15:00",
        "--reason",
        "training",
    )
    assert blocked.returncode == 0, blocked.stderr
    block_id = blocked.stdout.strip().rsplit(" ", 1)[-1]
    number, _ = _waitlister(database, clinic, "Gil Block", datetime.combine(day, datetime.min.time(), TZ))
    with running_stack(infra, tmp_path) as (stack, _):
        stack.clock.set(datetime.combine(day - timedelta(days=1), datetime.min.time(), TZ).replace(hour=11))
        freed = medspa(infra, "appointments", "unblock", block_id, "--clinic", clinic.slug)
        assert freed.returncode == 0, freed.stderr
        assert f"unblocked lena-brandt {day} 13:00 to {day} 15:00" in freed.stdout
        (offer,) = stack.wait_replies(number, 1)
        assert "Reply YES within 15 min" in offer and "1:00 PM" in offer, offer
    again = medspa(infra, "appointments", "unblock", block_id, "--clinic", clinic.slug)
    assert_one_line_error(again, f"no block {block_id}")
