"""The console's calendar writes over HTTP on the real database: book, move, cancel, block time, check in,
complete, no-show, late cancel — through the same appointment service and visit transitions as the CLI.
Authentication, the schedule:write permission, a provider's own schedule only, tenancy (another clinic's
appointment is not found and stays untouched), input validation naming the field, collisions (409), the clinic's
deposit policy on cancel, the audit log, and the follow-up actors handed to the workers after the commit."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from console.api import endpoints
from db.clinics import load_clinic
from domain import appointments as rules
from domain.clinic import Clinic
from domain.prompt import local_label
from domain.staff_access import Permission, StaffRole
from medspa.services import Infrastructure
from tests.support.console import GLOW, HARBOR, ConsoleStack, add_patient, future_slot, provider_ids, running_console
from tests.support.infra import wait_for
from worker.appointments import store
from worker.appointments.patient_texts import national
from worker.appointments.rows import AppointmentError
from worker.appointments.service import AppointmentService

OWNER, MANAGER, FRONT_DESK, PROVIDER = StaffRole.OWNER, StaffRole.MANAGER, StaffRole.FRONT_DESK, StaffRole.PROVIDER
WRITES = [s for s in endpoints() if s.permission == Permission.SCHEDULE_WRITE]


@pytest.fixture(scope="module")
def console(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    with running_console(infra, Path(tmp_path_factory.mktemp("console-calendar")), with_oidc=False) as stack:
        yield stack


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"]
    return body


def _signed_in(console: ConsoleStack, clinic: int, role: StaffRole, **kwargs: Any) -> tuple[Any, dict[str, str]]:
    http, csrf = console.sign_in(console.add_staff(clinic, role, **kwargs))
    return http, {"X-CSRF-Token": csrf, "Origin": console.base_url}


def _clinic(console: ConsoleStack, clinic_id: int) -> Clinic:
    with console.database.tenant_scope(clinic_id) as session:
        clinic = load_clinic(session, clinic_id)
    assert clinic is not None
    return clinic


def _row(console: ConsoleStack, clinic_id: int, appointment_id: int) -> dict[str, Any]:
    with console.database.tenant_scope(clinic_id) as session:
        return dict(
            session.execute(
                text("""SELECT status, starts_at, provider_id, amount_charged_cents, visit_summary, cancel_reason
                        FROM appointments WHERE id = :id"""),
                {"id": appointment_id},
            )
            .mappings()
            .one()
        )


def _appointment_of(console: ConsoleStack, clinic_id: int, client_id: int) -> int:
    with console.database.tenant_scope(clinic_id) as session:
        return int(
            session.execute(
                text("SELECT id FROM appointments WHERE client_id = :c ORDER BY id DESC LIMIT 1"), {"c": client_id}
            ).scalar_one()
        )


def _audit(console: ConsoleStack, clinic: int, action: str, target_id: int) -> list[dict[str, Any]]:
    with console.database.tenant_scope(clinic) as session:
        return [
            dict(r)
            for r in session.execute(
                text("SELECT actor, client_id, detail FROM staff_audit_log WHERE action = :a AND target_id = :t"),
                {"a": action, "t": target_id},
            ).mappings()
        ]


def _queued(infra: Infrastructure, actor: str, clinic_id: int, appointment_id: int, queue: str = "scheduled") -> bool:
    """A message for ``actor`` about the appointment (or outbox row) waiting on ``queue``."""
    client = redis.Redis.from_url(infra.redis_url)
    try:
        messages = [json.loads(raw) for raw in client.hvals(f"dramatiq:{queue}.msgs")]
    finally:
        client.close()
    return any(m.get("actor_name") == actor and m.get("args") == [clinic_id, appointment_id] for m in messages)


def _texts_to(console: ConsoleStack, clinic_id: int, phone: str) -> list[dict[str, Any]]:
    """The outbox rows to ``phone``, oldest first, with the conversation message each was written to."""
    with console.database.tenant_scope(clinic_id) as session:
        return [
            dict(r)
            for r in session.execute(
                text("""SELECT o.id, o.kind, o.status, o.dedupe_key, o.body, o.meta->>'by' AS by,
                               m.body AS history, m.role AS history_role
                        FROM outbox o LEFT JOIN messages m ON m.id = (o.meta->>'message_id')::bigint
                        WHERE o.to_address = :p ORDER BY o.id"""),
                {"p": phone},
            ).mappings()
        ]


def _open_slot(console: ConsoleStack, slug: str) -> tuple[datetime, int, int]:
    """A free start for ``slug`` at Glow, far out (start, provider id, service id): test data, read through the
    availability the booking itself uses."""
    clinic = _clinic(console, GLOW)
    service = AppointmentService(console.database, clinic, now=datetime.now(UTC))
    with console.database.tenant_scope(GLOW) as session:
        services, providers = service.catalogue(session)
    treatment = next(s for s in services if s.slug == slug)
    first = datetime.now(UTC).date() + timedelta(days=120 + uuid.uuid4().int % 900)
    slots = service.slots.open_slots(treatment, providers, first, first + timedelta(days=14), limit=1)
    assert slots, "Glow has open time in two weeks"
    return slots[0].start, slots[0].provider_id, treatment.id


def _free_soon(console: ConsoleStack, provider_id: int, minutes: int) -> datetime:
    """A start in the next hours with nothing of ``provider_id``'s overlapping (check-in is accepted then)."""
    with console.database.tenant_scope(GLOW) as session:
        for _ in range(50):
            start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=60 + uuid.uuid4().int % 500)
            if store.overlap(session, provider_id, start, start + timedelta(minutes=minutes), None) is None:
                return start
    raise AssertionError("no free time in the next hours")


def _paid_deposit(console: ConsoleStack, clinic_id: int, appointment_id: int, cents: int = 5000) -> None:
    with console.database.tenant_scope(clinic_id) as session:
        session.execute(
            text("""INSERT INTO payments (clinic_id, appointment_id, provider, checkout_session_id, payment_intent_id,
                                          amount_cents, status, url, expires_at)
                    VALUES (:c, :a, 'stripe', :sid, :pi, :cents, 'paid', 'https://x', now())"""),
            {
                "c": clinic_id,
                "a": appointment_id,
                "sid": "cs_test_" + uuid.uuid4().hex,
                "pi": "pi_" + uuid.uuid4().hex[:20],
                "cents": cents,
            },
        )
        session.execute(
            text("UPDATE appointments SET deposit_cents = :d WHERE id = :a"), {"d": cents, "a": appointment_id}
        )


def _url(spec_path: str, clinic_id: int = GLOW, appointment_id: int = 1) -> str:
    ids = {"clinic_id": clinic_id, "appointment_id": appointment_id}
    return "/api/v1" + re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(ids[m.group(1)]), spec_path)


# ------------------------------------------------------------------ authentication and permission
def test_every_calendar_write_needs_a_sign_in_and_the_schedule_write_permission(console):
    assert {s.operation_id for s in WRITES} >= {
        "book_appointment",
        "move_appointment",
        "cancel_appointment",
        "block_time",
        "check_in_appointment",
        "complete_appointment",
        "no_show_appointment",
        "late_cancel_appointment",
    }
    owner, headers = _signed_in(console, GLOW, OWNER)
    minted = owner.post(f"/api/v1/clinics/{GLOW}/tokens", json={"scopes": ["appointments:read"]}, headers=headers)
    assert minted.status_code == 201, minted.text
    reader = {"Authorization": f"Bearer {minted.json()['access_token']}"}
    anonymous = console.client()
    for spec in WRITES:
        url = _url(spec.path)
        _problem(anonymous.request(spec.method, url, json={}), 401)
        refused = _problem(anonymous.request(spec.method, url, json={}, headers=reader), 403)
        assert "schedule:write" in refused["detail"], spec.path
    assert anonymous.get(f"/api/v1/clinics/{GLOW}/appointments", headers=reader).status_code == 200


# ------------------------------------------------------------------ book, move, check in, complete
def test_front_desk_books_moves_checks_in_and_completes_a_visit_with_its_amount(console, infra):
    patient = add_patient(console.database, GLOW)
    start, provider_id, service_id = _open_slot(console, "consultation")
    http, headers = _signed_in(console, GLOW, FRONT_DESK)
    base = f"/api/v1/clinics/{GLOW}/appointments"
    request = {
        "client_id": patient.client_id,
        "service_id": service_id,
        "provider_id": provider_id,
        "starts_at": start.isoformat(),
        "notes": "walk-in",
    }
    booked = http.post(base, json=request, headers=headers)
    assert booked.status_code == 201, booked.text
    appointment = booked.json()
    aid = appointment["id"]
    assert appointment["status"] == rules.BOOKED and appointment["changed"] is True
    assert datetime.fromisoformat(appointment["starts_at"]) == start and appointment["provider_id"] == provider_id
    assert appointment["follow_ups"] == ["sync_calendar_event"]
    wait_for(lambda: _queued(infra, "sync_calendar_event", GLOW, aid), 10, what="the calendar sync queued")

    again = http.post(base, json=request, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == aid and again.json()["changed"] is False

    other = add_patient(console.database, GLOW)
    taken = _problem(http.post(base, json={**request, "client_id": other.client_id}, headers=headers), 409)
    assert "not available" in taken["detail"] and "nothing booked" in taken["detail"]

    soon = _free_soon(console, provider_id, 60)
    moved = http.post(f"{base}/{aid}/move", json={"starts_at": soon.isoformat()}, headers=headers)
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["starts_at"]) == soon
    assert _row(console, GLOW, aid)["starts_at"] == soon

    checked_in = http.post(f"{base}/{aid}/check-in", headers=headers)
    assert checked_in.status_code == 200, checked_in.text
    assert checked_in.json()["status"] == rules.CHECKED_IN and checked_in.json()["changed"] is True
    done = http.post(
        f"{base}/{aid}/complete", json={"amount_charged_cents": 45000, "summary": "consultation, plan"}, headers=headers
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == rules.COMPLETED and done.json()["amount_charged_cents"] == 45000
    row = _row(console, GLOW, aid)
    assert row["status"] == rules.COMPLETED and row["amount_charged_cents"] == 45000
    assert row["visit_summary"] == "consultation, plan"
    repeat = http.post(f"{base}/{aid}/complete", json={"amount_charged_cents": 1}, headers=headers)
    assert repeat.json()["changed"] is False and _row(console, GLOW, aid)["amount_charged_cents"] == 45000
    _problem(http.post(f"{base}/{aid}/no-show", headers=headers), 409)

    for action in ("booked", "moved", "checked_in", "completed"):
        rows = _audit(console, GLOW, f"appointment.{action}", aid)
        assert len(rows) == 1, action
        assert rows[0]["client_id"] == patient.client_id and patient.name not in json.dumps(rows[0]["detail"])
    assert _audit(console, GLOW, "appointment.completed", aid)[0]["detail"]["amount_charged_cents"] == 45000


def test_a_service_with_a_deposit_is_held_pending_it(console):
    patient = add_patient(console.database, GLOW)
    start, provider_id, service_id = _open_slot(console, "neurotoxin")
    http, headers = _signed_in(console, GLOW, MANAGER)
    booked = http.post(
        f"/api/v1/clinics/{GLOW}/appointments",
        json={"client_id": patient.client_id, "service_id": service_id, "starts_at": start.isoformat()},
        headers=headers,
    )
    assert booked.status_code == 201, booked.text
    body = booked.json()
    assert body["status"] == rules.PENDING_DEPOSIT and body["deposit_cents"] == 5000
    assert body["hold_expires_at"] is not None and body["follow_ups"] == []


# ------------------------------------------------------------------ collisions and blocks
def test_a_move_or_block_onto_taken_time_is_a_409_naming_the_clash_and_changes_nothing(console):
    provider = provider_ids(console.database, GLOW)[0]
    first_start = future_slot()
    first = add_patient(console.database, GLOW, provider_id=provider, starts_at=first_start)
    second = add_patient(console.database, GLOW, provider_id=provider, starts_at=first_start + timedelta(hours=3))
    first_id, second_id = (
        _appointment_of(console, GLOW, first.client_id),
        _appointment_of(console, GLOW, second.client_id),
    )
    http, headers = _signed_in(console, GLOW, FRONT_DESK)
    base = f"/api/v1/clinics/{GLOW}"
    clash = _problem(
        http.post(
            f"{base}/appointments/{second_id}/move",
            json={"starts_at": (first_start + timedelta(minutes=15)).isoformat()},
            headers=headers,
        ),
        409,
    )
    assert f"appointment {first_id}" in clash["detail"] and "nothing changed" in clash["detail"]
    assert _row(console, GLOW, second_id)["starts_at"] == first_start + timedelta(hours=3)
    assert _audit(console, GLOW, "appointment.moved", second_id) == []

    block = {
        "provider_id": provider,
        "starts_at": first_start.isoformat(),
        "ends_at": (first_start + timedelta(hours=1)).isoformat(),
        "reason": "training",
    }
    refused = _problem(http.post(f"{base}/blocks", json=block, headers=headers), 409)
    assert f"appointment {first_id}" in refused["detail"]

    free = {**block, "starts_at": (first_start + timedelta(hours=5)).isoformat()}
    free["ends_at"] = (first_start + timedelta(hours=6)).isoformat()
    created = http.post(f"{base}/blocks", json=free, headers=headers)
    assert created.status_code == 201, created.text
    block_id = created.json()["id"]
    assert created.json()["kind"] == "block" and created.json()["changed"] is True
    assert http.post(f"{base}/blocks", json=free, headers=headers).json() == {**created.json(), "changed": False}
    assert len(_audit(console, GLOW, "block.created", block_id)) == 1
    onto_block = _problem(
        http.post(
            f"{base}/appointments/{second_id}/move",
            json={"starts_at": (first_start + timedelta(hours=5)).isoformat()},
            headers=headers,
        ),
        409,
    )
    assert f"blocked time {block_id}" in onto_block["detail"]
    given_back = http.post(f"{base}/appointments/{block_id}/cancel", json={"reason": "training moved"}, headers=headers)
    assert given_back.status_code == 200 and given_back.json()["status"] == rules.CANCELLED
    assert given_back.json()["follow_ups"] == [], "a block has no deposit and no calendar event"


# ------------------------------------------------------------------ cancel and the deposit policy
def test_cancel_refunds_or_keeps_a_paid_deposit_by_the_clinics_policy(console, infra):
    clinic = _clinic(console, GLOW)
    provider = provider_ids(console.database, GLOW)[1]
    http, headers = _signed_in(console, GLOW, FRONT_DESK)
    outcomes: dict[str, str] = {}
    for label, start in (("early", future_slot()), ("late", _free_soon(console, provider, 30))):
        patient = add_patient(console.database, GLOW, provider_id=provider, starts_at=start)
        aid = _appointment_of(console, GLOW, patient.client_id)
        _paid_deposit(console, GLOW, aid)
        expected = rules.deposit_decision(clinic.cancellation, start, datetime.now(UTC))
        cancelled = http.post(
            f"/api/v1/clinics/{GLOW}/appointments/{aid}/cancel", json={"reason": "patient asked"}, headers=headers
        )
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert body["status"] == rules.CANCELLED and body["deposit_action"] == expected
        assert body["late"] is (label == "late")
        assert body["follow_ups"] == ["refund_deposit", "sync_calendar_event", "send_outbox"], "the worker settles"
        [told] = _texts_to(console, GLOW, patient.phone)
        assert ("refunded" in told["body"]) is (expected == "refund"), told["body"]
        wait_for(lambda aid=aid: _queued(infra, "refund_deposit", GLOW, aid), 10, what="the settlement queued")
        assert _row(console, GLOW, aid)["cancel_reason"] == "patient asked"
        audit = _audit(console, GLOW, "appointment.cancelled", aid)
        assert len(audit) == 1 and audit[0]["detail"]["deposit_action"] == expected
        again = _problem(
            http.post(f"/api/v1/clinics/{GLOW}/appointments/{aid}/cancel", json={"reason": "x"}, headers=headers), 409
        )
        assert "cancelled" in again["detail"]
        outcomes[label] = expected
    assert outcomes == {"early": "refund", "late": "keep"}, "Glow refunds outside its window and keeps inside it"


def test_a_late_cancellation_keeps_the_deposit_and_a_no_show_is_marked_after_the_start(console, infra):
    provider = provider_ids(console.database, GLOW)[2]
    http, headers = _signed_in(console, GLOW, FRONT_DESK)
    base = f"/api/v1/clinics/{GLOW}/appointments"
    late = add_patient(console.database, GLOW, provider_id=provider, starts_at=_free_soon(console, provider, 30))
    late_id = _appointment_of(console, GLOW, late.client_id)
    _paid_deposit(console, GLOW, late_id)
    answered = http.post(f"{base}/{late_id}/late-cancel", json={"reason": "running late"}, headers=headers)
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["status"] == "late_cancelled" and body["follow_ups"] == ["sync_calendar_event"]
    assert any("kept" in note for note in body["notes"]), body["notes"]
    with console.database.tenant_scope(GLOW) as session:
        paid = session.execute(text("SELECT status FROM payments WHERE appointment_id = :a"), {"a": late_id}).scalar()
    assert paid == "kept", "Glow keeps the deposit inside its window"
    assert len(_audit(console, GLOW, "appointment.late_cancelled", late_id)) == 1

    upcoming = add_patient(console.database, GLOW, provider_id=provider, starts_at=_free_soon(console, provider, 30))
    upcoming_id = _appointment_of(console, GLOW, upcoming.client_id)
    early = _problem(http.post(f"{base}/{upcoming_id}/no-show", headers=headers), 409)
    assert "not started" in early["detail"] and _row(console, GLOW, upcoming_id)["status"] == rules.BOOKED
    with console.database.tenant_scope(GLOW) as session:  # the visit's time came (moved into the past for the test)
        started = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        session.execute(
            text("""UPDATE appointments SET starts_at = :s, ends_at = :s + interval '1 minute',
                           blocked_until = :s + interval '1 minute' WHERE id = :id"""),
            {"s": started, "id": upcoming_id},
        )
    marked = http.post(f"{base}/{upcoming_id}/no-show", headers=headers)
    assert marked.status_code == 200 and marked.json()["status"] == rules.NO_SHOW, marked.text
    assert len(_audit(console, GLOW, "appointment.no_show", upcoming_id)) == 1


# ------------------------------------------------------------------ texting the patient (as the CLI does)
def test_book_move_and_cancel_text_the_patient_once_and_not_when_asked_not_to(console, infra):
    """``text_patient``: the CLI's texts (worker/appointments/patient_texts.py) and defaults — a booking texts
    only when asked (``book --text``), a move or cancellation unless asked not to; once per change; the send is
    handed to the workers after the commit; the text is in the patient's conversation."""
    clinic = _clinic(console, GLOW)
    patient = add_patient(console.database, GLOW, name="Robin Vale")
    start, provider_id, service_id = _open_slot(console, "consultation")
    with console.database.tenant_scope(GLOW) as session:
        provider = next(p for p in store.providers(session, GLOW) if p.id == provider_id)
        service = next(s for s in store.services(session, GLOW) if s.id == service_id)
    http, headers = _signed_in(console, GLOW, FRONT_DESK)
    base = f"/api/v1/clinics/{GLOW}/appointments"
    request = {
        "client_id": patient.client_id,
        "service_id": service_id,
        "provider_id": provider_id,
        "starts_at": start.isoformat(),
    }

    untold = http.post(base, json=request, headers=headers)  # the default, as the CLI's: no text
    assert untold.status_code == 201, untold.text
    assert untold.json()["outbox_ids"] == [] and "send_outbox" not in untold.json()["follow_ups"]
    assert _texts_to(console, GLOW, patient.phone) == []
    cancelled_quietly = http.post(
        f"{base}/{untold.json()['id']}/cancel", json={"reason": "wrong day", "text_patient": False}, headers=headers
    )
    assert cancelled_quietly.status_code == 200 and cancelled_quietly.json()["outbox_ids"] == []
    assert _texts_to(console, GLOW, patient.phone) == [], "asked not to: no text"

    booked = http.post(base, json={**request, "text_patient": True}, headers=headers)
    assert booked.status_code == 201, booked.text
    aid = booked.json()["id"]
    assert booked.json()["follow_ups"] == ["sync_calendar_event", "send_outbox"]
    assert "patient texted (queued)" in booked.json()["notes"]
    [confirmation] = _texts_to(console, GLOW, patient.phone)
    assert booked.json()["outbox_ids"] == [confirmation["id"]]
    assert (confirmation["kind"], confirmation["dedupe_key"], confirmation["by"]) == (
        "staff",
        f"staff:book:{aid}",
        "staff-console",
    )
    assert confirmation["body"] == (
        f"Hi Robin, you're booked: {service.name} with {provider.name} at {clinic.name} on "
        f"{local_label(start, str(clinic.tz))}. Reply here or call {national(clinic.phone)} with any questions."
    )
    assert (confirmation["history"], confirmation["history_role"]) == (confirmation["body"], "staff")
    wait_for(
        lambda: _queued(infra, "send_outbox", GLOW, confirmation["id"], queue="outbox"), 10, what="the send queued"
    )
    again = http.post(base, json={**request, "text_patient": True}, headers=headers)
    assert again.json()["changed"] is False and again.json()["outbox_ids"] == []
    assert len(_texts_to(console, GLOW, patient.phone)) == 1, "the same booking again texts nobody"

    later = start + timedelta(days=1)
    moved = http.post(f"{base}/{aid}/move", json={"starts_at": later.isoformat()}, headers=headers)
    assert moved.status_code == 200, moved.text
    assert moved.json()["follow_ups"] == ["sync_calendar_event", "send_outbox"]
    quiet = http.post(
        f"{base}/{aid}/move", json={"starts_at": (later + timedelta(hours=1)).isoformat(), "text_patient": False},
        headers=headers,
    )  # fmt: skip
    assert quiet.status_code == 200 and quiet.json()["outbox_ids"] == []
    cancelled = http.post(f"{base}/{aid}/cancel", json={"reason": "patient asked"}, headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    texts = _texts_to(console, GLOW, patient.phone)
    assert [t["dedupe_key"].split(":")[1] for t in texts] == ["book", "move", "cancel"], "each change once"
    assert moved.json()["outbox_ids"] == [texts[1]["id"]] and cancelled.json()["outbox_ids"] == [texts[2]["id"]]
    assert f"has moved to {local_label(later, str(clinic.tz))} with {provider.name}" in texts[1]["body"]
    assert texts[2]["body"].startswith(
        f"Hi Robin, as requested your {service.name} at {clinic.name} on "
        f"{local_label(later + timedelta(hours=1), str(clinic.tz))} is cancelled."
    )
    assert all(t["history"] == t["body"] for t in texts)


# ------------------------------------------------------------------ tenancy and a provider's reach
def test_another_clinics_appointment_is_not_found_and_untouched(console):
    harbor_provider = provider_ids(console.database, HARBOR)[0]
    start = _free_soon(console, provider_ids(console.database, GLOW)[0], 30)  # soon: check-in would be allowed
    harbor = add_patient(console.database, HARBOR, provider_id=harbor_provider, starts_at=start)
    aid = _appointment_of(console, HARBOR, harbor.client_id)
    before = _row(console, HARBOR, aid)
    http, headers = _signed_in(console, GLOW, OWNER)
    base = f"/api/v1/clinics/{GLOW}/appointments/{aid}"
    later = (start + timedelta(days=1)).isoformat()
    for path, body in (
        ("move", {"starts_at": later}),
        ("cancel", {"reason": "x"}),
        ("check-in", None),
        ("complete", {"amount_charged_cents": 100}),
        ("no-show", None),
        ("late-cancel", {}),
    ):
        problem = _problem(http.post(f"{base}/{path}", json=body, headers=headers), 404)
        assert harbor.name not in json.dumps(problem)
    _problem(
        http.post(
            f"/api/v1/clinics/{GLOW}/blocks",
            json={"provider_id": harbor_provider, "starts_at": later, "ends_at": later, "reason": "x"},
            headers=headers,
        ),
        400,
    )
    _problem(
        http.post(f"/api/v1/clinics/{HARBOR}/appointments/{aid}/cancel", json={"reason": "x"}, headers=headers), 403
    )
    assert _row(console, HARBOR, aid) == before


def test_a_provider_changes_only_their_own_schedule(console):
    mine, theirs = provider_ids(console.database, GLOW)[:2]
    own = add_patient(console.database, GLOW, provider_id=mine, starts_at=future_slot())
    other = add_patient(console.database, GLOW, provider_id=theirs, starts_at=future_slot())
    own_id, other_id = _appointment_of(console, GLOW, own.client_id), _appointment_of(console, GLOW, other.client_id)
    http, headers = _signed_in(console, GLOW, PROVIDER, provider_id=mine)
    base = f"/api/v1/clinics/{GLOW}"
    refused = _problem(http.post(f"{base}/appointments/{other_id}/cancel", json={"reason": "x"}, headers=headers), 403)
    assert "your own" in refused["detail"]
    _problem(http.post(f"{base}/appointments/{other_id}/check-in", headers=headers), 403)
    _problem(
        http.post(
            f"{base}/appointments/{own_id}/move",
            json={"starts_at": future_slot().isoformat(), "provider_id": theirs},
            headers=headers,
        ),
        403,
    )
    start = future_slot()
    block = {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat(), "reason": "lunch"}
    _problem(http.post(f"{base}/blocks", json={**block, "provider_id": theirs}, headers=headers), 403)
    _problem(
        http.post(
            f"{base}/appointments",
            json={"client_id": own.client_id, "service_id": 1, "provider_id": theirs, "starts_at": start.isoformat()},
            headers=headers,
        ),
        403,
    )
    assert _row(console, GLOW, other_id)["status"] == rules.BOOKED
    cancelled = http.post(f"{base}/appointments/{own_id}/cancel", json={"reason": "sick"}, headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == rules.CANCELLED
    assert _audit(console, GLOW, "appointment.cancelled", own_id)[0]["actor"].startswith("provider-")


def _free_for_both(console: ConsoleStack, slug: str, first: int, second: int) -> tuple[datetime, int]:
    """A start, far out, when both providers are free for ``slug`` (and its service id): the availability check a
    booking itself passes."""
    clinic = _clinic(console, GLOW)
    service = AppointmentService(console.database, clinic, now=datetime.now(UTC))
    with console.database.tenant_scope(GLOW) as session:
        services, providers = service.catalogue(session)
    treatment = next(s for s in services if s.slug == slug)
    one, other = (next(p for p in providers if p.id == pid) for pid in (first, second))
    day = datetime.now(UTC).date() + timedelta(days=120 + uuid.uuid4().int % 900)
    for slot in service.slots.open_slots(treatment, [one], day, day + timedelta(days=14), limit=50):
        try:
            service.slots.check(treatment, providers, slot.start, other)
        except AppointmentError:
            continue
        return slot.start, treatment.id
    raise AssertionError("no time both providers are free in two weeks")


def _booked_rows(console: ConsoleStack, client_id: int) -> int:
    with console.database.tenant_scope(GLOW) as session:
        return int(
            session.execute(
                text("SELECT count(*) FROM appointments WHERE client_id = :c AND kind = 'appointment'"),
                {"c": client_id},
            ).scalar_one()
        )


def test_a_provider_books_only_patients_already_theirs_and_learns_nothing_of_the_others(console):
    """Booking is what makes a patient a provider's (console.queries.clients): a provider booking someone else's
    patient — or a patient of nobody's yet — would then read their profile, messages and photos for good, even
    after cancelling.  Refused first, with nothing about the patient in the answer; nothing written."""
    start, mine, service_id = _open_slot(console, "consultation")
    theirs = next(p for p in provider_ids(console.database, GLOW) if p != mine)
    own = add_patient(console.database, GLOW, provider_id=mine, name="Own Patient")
    colleagues = add_patient(console.database, GLOW, provider_id=theirs, name="Colleagues Patient")
    nobodys = add_patient(console.database, GLOW, name="Nobodys Patient")
    http, headers = _signed_in(console, GLOW, PROVIDER, provider_id=mine)
    clinic = _clinic(console, GLOW)
    base = f"/api/v1/clinics/{GLOW}"
    before = {p.client_id: _booked_rows(console, p.client_id) for p in (colleagues, nobodys)}
    for patient in (colleagues, nobodys):
        request = {"client_id": patient.client_id, "service_id": service_id, "starts_at": start.isoformat()}
        for body in (request, {**request, "provider_id": mine}):
            refused = _problem(http.post(f"{base}/appointments", json=body, headers=headers), 403)
            assert patient.name not in json.dumps(refused) and patient.phone not in json.dumps(refused)
        page_form = {
            "csrf_token": headers["X-CSRF-Token"],
            "date": start.astimezone(clinic.tz).date().isoformat(),
            "client_id": str(patient.client_id),
            "service_id": str(service_id),
            "starts_at": start.astimezone(clinic.tz).strftime("%Y-%m-%dT%H:%M"),
        }
        from_the_page = http.post(
            f"/clinics/{GLOW}/calendar/book", data=page_form, headers={"Origin": console.base_url}
        )
        assert from_the_page.status_code == 403 and patient.name not in from_the_page.text
        assert _booked_rows(console, patient.client_id) == before[patient.client_id], "nothing booked"
        _problem(http.get(f"{base}/clients/{patient.client_id}"), 403)  # and so still not theirs
    missing = {"client_id": 10**9, "service_id": service_id, "starts_at": start.isoformat()}
    _problem(http.post(f"{base}/appointments", json=missing, headers=headers), 403)  # existing or not: the same

    booked = http.post(
        f"{base}/appointments",
        json={"client_id": own.client_id, "service_id": service_id, "starts_at": start.isoformat()},
        headers=headers,
    )
    assert booked.status_code == 201 and booked.json()["provider_id"] == mine, booked.text


def test_a_provider_probing_another_patient_never_meets_the_screening_that_names_their_condition(console):
    """Screening refuses a booking naming the patient's stated condition — for staff who may see that patient.  A
    provider probing a client id that is not theirs gets the 403 before screening runs."""
    start, mine, service_id = _open_slot(console, "neurotoxin")
    stranger = add_patient(console.database, GLOW, body="I'm pregnant, can I still get Botox next month?")
    request = {"client_id": stranger.client_id, "service_id": service_id, "starts_at": start.isoformat()}
    front_desk, desk_headers = _signed_in(console, GLOW, FRONT_DESK)
    screened = _problem(
        front_desk.post(
            f"/api/v1/clinics/{GLOW}/appointments", json={**request, "provider_id": mine}, headers=desk_headers
        ),
        409,
    )
    assert "pregnancy" in screened["detail"], "the front desk, who may book this patient, is told why not"

    http, headers = _signed_in(console, GLOW, PROVIDER, provider_id=mine)
    probe = http.post(f"/api/v1/clinics/{GLOW}/appointments", json=request, headers=headers)
    refused = _problem(probe, 403)
    assert "pregnan" not in probe.text.lower() and "screening" not in probe.text.lower()
    assert refused["detail"] == "You can book only patients who have an appointment with you."
    assert _booked_rows(console, stranger.client_id) == 0


def test_a_repeat_booking_is_the_same_booking_only_with_the_same_provider(console):
    """A booking request again is answered with the first booking — when it is that booking: the same patient,
    service and time with another provider is not, and a provider is never handed a colleague's appointment."""
    mine, theirs = provider_ids(console.database, GLOW)[:2]
    start, service_id = _free_for_both(console, "consultation", mine, theirs)
    patient = add_patient(console.database, GLOW, provider_id=mine)  # theirs too: an appointment with each
    base = f"/api/v1/clinics/{GLOW}/appointments"
    request = {"client_id": patient.client_id, "service_id": service_id, "starts_at": start.isoformat()}
    front_desk, desk_headers = _signed_in(console, GLOW, FRONT_DESK)
    with_colleague = front_desk.post(base, json={**request, "provider_id": theirs}, headers=desk_headers)
    assert with_colleague.status_code == 201 and with_colleague.json()["provider_id"] == theirs, with_colleague.text
    colleagues_id = with_colleague.json()["id"]
    again = front_desk.post(base, json={**request, "provider_id": theirs}, headers=desk_headers)
    assert (again.json()["id"], again.json()["changed"]) == (colleagues_id, False), "a retry books once"

    http, headers = _signed_in(console, GLOW, PROVIDER, provider_id=mine)
    own = http.post(base, json=request, headers=headers)
    assert own.status_code == 201, own.text
    assert own.json()["id"] != colleagues_id and own.json()["provider_id"] == mine and own.json()["changed"] is True
    assert _row(console, GLOW, colleagues_id)["provider_id"] == theirs

    named = front_desk.post(base, json={**request, "provider_id": mine}, headers=desk_headers)
    assert (named.json()["id"], named.json()["changed"]) == (own.json()["id"], False), "that booking, not the other"


def test_a_providers_refused_booking_suggests_only_their_own_open_times(console):
    """The time is taken: the 409 offers open times nearby — for a provider only their own (they book no one
    else's schedule, and a colleague's free time is not theirs to see)."""
    mine, theirs = provider_ids(console.database, GLOW)[:2]
    start, service_id = _free_for_both(console, "consultation", mine, theirs)
    patient = add_patient(console.database, GLOW, provider_id=mine, starts_at=start)  # mine is busy then
    with console.database.tenant_scope(GLOW) as session:
        names = {p.id: p.name for p in store.providers(session, GLOW)}
    http, headers = _signed_in(console, GLOW, PROVIDER, provider_id=mine)
    taken = _problem(
        http.post(
            f"/api/v1/clinics/{GLOW}/appointments",
            json={"client_id": patient.client_id, "service_id": service_id, "starts_at": start.isoformat()},
            headers=headers,
        ),
        409,
    )
    assert "Open nearby: " in taken["detail"], taken["detail"]
    options = taken["detail"].split("Open nearby: ", 1)[1].removesuffix(".").split("; ")
    assert {option.rsplit(" with ", 1)[1] for option in options} == {names[mine]}, options
    assert all(names[other] not in taken["detail"] for other in names if other != mine)


# ------------------------------------------------------------------ validation
def test_invalid_input_is_a_problem_naming_the_field(console):
    patient = add_patient(console.database, GLOW, provider_id=provider_ids(console.database, GLOW)[0])
    aid = _appointment_of(console, GLOW, patient.client_id)
    http, headers = _signed_in(console, GLOW, FRONT_DESK)
    base = f"/api/v1/clinics/{GLOW}"
    later = future_slot()

    def fields(response: Any) -> set[str]:
        return {e["field"] for e in _problem(response, 400)["errors"]}

    book = {"client_id": patient.client_id, "service_id": 1, "starts_at": later.isoformat()}
    assert fields(
        http.post(f"{base}/appointments", json={**book, "starts_at": "2031-01-01T10:00"}, headers=headers)
    ) == {"starts_at"}, "a time without its offset is ambiguous"
    assert "client_id" in fields(http.post(f"{base}/appointments", json={"service_id": 1}, headers=headers))
    assert fields(http.post(f"{base}/appointments", json={**book, "client_id": 10**9}, headers=headers)) == {
        "client_id"
    }
    assert fields(http.post(f"{base}/appointments", json={**book, "service_id": 10**9}, headers=headers)) == {
        "service_id"
    }
    past = {**book, "starts_at": (datetime.now(UTC) - timedelta(days=1)).isoformat()}
    assert fields(http.post(f"{base}/appointments", json=past, headers=headers)) == {"starts_at"}
    assert fields(http.post(f"{base}/appointments/{aid}/cancel", json={"reason": "   "}, headers=headers)) == {"reason"}
    block = {
        "provider_id": provider_ids(console.database, GLOW)[0],
        "starts_at": later.isoformat(),
        "ends_at": (later - timedelta(hours=1)).isoformat(),
        "reason": "x",
    }
    assert fields(http.post(f"{base}/blocks", json=block, headers=headers)) == {"ends_at"}
    assert fields(
        http.post(f"{base}/appointments/{aid}/complete", json={"amount_charged_cents": -5}, headers=headers)
    ) == {"amount_charged_cents"}
    assert fields(http.post(f"{base}/appointments/{aid}/move", json={"starts_at": "soon"}, headers=headers)) == {
        "starts_at"
    }
    assert _row(console, GLOW, aid)["status"] == rules.BOOKED, "nothing changed"


# ------------------------------------------------------------------ the calendar page's forms
def test_the_calendar_page_books_checks_in_and_completes_through_its_forms(console):
    clinic = _clinic(console, GLOW)
    http, csrf = console.sign_in(console.add_staff(GLOW, FRONT_DESK))
    origin = {"Origin": console.base_url}
    patient = add_patient(console.database, GLOW)
    start, provider_id, service_id = _open_slot(console, "consultation")
    local = start.astimezone(clinic.tz)
    form = {
        "csrf_token": csrf,
        "date": local.date().isoformat(),
        "client_id": str(patient.client_id),
        "service_id": str(service_id),
        "provider_id": str(provider_id),
        "starts_at": local.strftime("%Y-%m-%dT%H:%M"),
        "notes": "",
    }
    refused = http.post(f"/clinics/{GLOW}/calendar/book", data={**form, "csrf_token": "wrong"}, headers=origin)
    assert refused.status_code == 403
    booked = http.post(f"/clinics/{GLOW}/calendar/book", data=form, headers=origin)
    assert booked.status_code == 303, booked.text
    assert booked.headers["location"] == f"/clinics/{GLOW}/calendar?date={local.date().isoformat()}&notice=booked"
    aid = _appointment_of(console, GLOW, patient.client_id)
    assert _row(console, GLOW, aid)["starts_at"] == start and len(_audit(console, GLOW, "appointment.booked", aid)) == 1
    day_page = http.get(booked.headers["location"])
    assert (
        day_page.status_code == 200
        and "Booked." in day_page.text
        and f'action="/clinics/{GLOW}/calendar/{aid}/check-in"' in day_page.text
    )

    clash = http.post(
        f"/clinics/{GLOW}/calendar/book",
        data={**form, "client_id": str(add_patient(console.database, GLOW).client_id)},
        headers=origin,
    )
    assert clash.status_code == 409 and "not available" in clash.text and 'data-testid="form-errors"' in clash.text

    soon = _free_soon(console, provider_id, 60)
    moved = http.post(
        f"/clinics/{GLOW}/calendar/{aid}/move",
        data={"csrf_token": csrf, "starts_at": soon.astimezone(clinic.tz).strftime("%Y-%m-%dT%H:%M")},
        headers=origin,
    )
    assert moved.status_code == 303, moved.text
    assert _row(console, GLOW, aid)["starts_at"] == soon
    assert (
        http.post(f"/clinics/{GLOW}/calendar/{aid}/check-in", data={"csrf_token": csrf}, headers=origin).status_code
        == 303
    )
    bad = http.post(
        f"/clinics/{GLOW}/calendar/{aid}/complete", data={"csrf_token": csrf, "amount": "-3"}, headers=origin
    )
    assert bad.status_code == 400 and "amount_charged_cents" in bad.text
    done = http.post(
        f"/clinics/{GLOW}/calendar/{aid}/complete",
        data={"csrf_token": csrf, "amount": "$450", "summary": "consultation"},
        headers=origin,
    )
    assert done.status_code == 303, done.text
    row = _row(console, GLOW, aid)
    assert row["status"] == rules.COMPLETED and row["amount_charged_cents"] == 45000
