"""A scenario's starting state: its clinic, its patient (reset, consent) and its setup steps."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from db.engine import Database
from tests.support.scenarios.model import ScenarioRun


# ------------------------------------------------------------------------------------------------ setup
def clinic_id_for(database: Database, slug: str) -> int:
    with database.directory_scope() as session:
        return int(session.execute(text("SELECT id FROM clinics WHERE slug = :s"), {"s": slug}).scalar_one())


def _local(value: str, tz: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(tz))


def _other_phone(phone: str) -> str:
    return phone[:-4] + str((int(phone[-4:]) + 5000) % 10_000).zfill(4)


def ensure_client(database: Database, clinic_id: int, phone: str, *, name: str | None, consent: str) -> int:
    with database.tenant_scope(clinic_id) as session:
        session.execute(
            text(
                """INSERT INTO clients (clinic_id, phone_e164, name, consent_state) VALUES (:c, :p, :n, :consent)
                   ON CONFLICT (clinic_id, phone_e164) DO UPDATE SET name = EXCLUDED.name"""
            ),
            {"c": clinic_id, "p": phone, "n": name, "consent": consent},
        )
        return int(
            session.execute(
                text("SELECT id FROM clients WHERE clinic_id = :c AND phone_e164 = :p"), {"c": clinic_id, "p": phone}
            ).scalar_one()
        )


def reset_patient(database: Database, clinic_id: int, phone: str) -> None:
    """Remove what an earlier run of this scenario left behind (appointments, conversation, setup rows)."""
    with database.tenant_scope(clinic_id) as session:
        for p in (phone, _other_phone(phone)):
            session.execute(
                text(
                    """DELETE FROM appointments WHERE clinic_id = :c
                       AND client_id IN (SELECT id FROM clients WHERE phone_e164 = :p)"""
                ),
                {"c": clinic_id, "p": p},
            )
            session.execute(
                text(
                    """DELETE FROM conversations WHERE clinic_id = :c
                       AND client_id IN (SELECT id FROM clients WHERE phone_e164 = :p)"""
                ),
                {"c": clinic_id, "p": p},
            )
            session.execute(
                text(
                    """DELETE FROM waitlist_entries WHERE clinic_id = :c
                       AND client_id IN (SELECT id FROM clients WHERE phone_e164 = :p)"""
                ),
                {"c": clinic_id, "p": p},
            )
            session.execute(
                text("UPDATE clients SET consent_state = 'opted_in' WHERE clinic_id = :c AND phone_e164 = :p"),
                {"c": clinic_id, "p": p},
            )


def apply_setup(
    database: Database, run: ScenarioRun, tz: str, appointments: list[dict[str, Any]] | None = None
) -> None:
    scenario = run.scenario
    patient = scenario.get("patient", {})
    if appointments is None:
        appointments = scenario.get("setup", {}).get("appointments", [])
    for appt in appointments:
        mine = appt.get("owner", "patient") == "patient"
        owner_phone = run.phone if mine else _other_phone(run.phone)
        client_id = ensure_client(
            database,
            run.clinic_id,
            owner_phone,
            name=patient.get("name") if mine else appt.get("owner_name", "Other Patient"),
            consent="opted_in",
        )
        start = _local(appt["start"], tz)
        with database.tenant_scope(run.clinic_id) as session:
            service = session.execute(
                text(
                    "SELECT id, duration_min, buffer_min, deposit_cents FROM services WHERE clinic_id = :c AND slug = :s"
                ),
                {"c": run.clinic_id, "s": appt["service"]},
            ).one()
            provider_id = session.execute(
                text("SELECT id FROM providers WHERE clinic_id = :c AND slug = :s"),
                {"c": run.clinic_id, "s": appt["provider"]},
            ).scalar_one()
            end = start + timedelta(minutes=service.duration_min)
            new_id = session.execute(
                text(
                    """INSERT INTO appointments (clinic_id, client_id, provider_id, service_id, starts_at, ends_at,
                           blocked_until, status, source_key, deposit_cents)
                       VALUES (:c, :client, :p, :s, :start, :end, :blocked, :status, :key, :dep) RETURNING id"""
                ),
                {
                    "c": run.clinic_id,
                    "client": client_id,
                    "p": provider_id,
                    "s": service.id,
                    "start": start,
                    "end": end,
                    "blocked": end + timedelta(minutes=service.buffer_min),
                    "status": appt.get("status", "booked"),
                    "key": f"scenario:{run.phone}:{appt.get('key', start)}",
                    "dep": int(appt.get("deposit_cents", 0)),
                },
            ).scalar_one()
        run.setup_ids[appt.get("key", str(new_id))] = int(new_id)
