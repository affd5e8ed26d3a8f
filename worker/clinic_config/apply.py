"""The one-transaction apply: the owner role, ``app.clinic_id`` set, deactivate (never delete) what the file
no longer names.
"""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import set_clinic
from worker.clinic_config.state import JSON_SERVICE_FIELDS, SERVICE_FIELDS, ClinicState


# ---------------------------------------------------------------------------------------------- apply
def lock_slug(session: Session, slug: str) -> None:
    """Serialise concurrent applies of one clinic (held until the transaction ends)."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('medspa-clinic-apply:' || :s))"), {"s": slug})


def _service_value(field_name: str) -> str:
    return f"CAST(:{field_name} AS jsonb)" if field_name in JSON_SERVICE_FIELDS else f":{field_name}"


def write_state(session: Session, current: ClinicState | None, desired: ClinicState) -> int:
    """Make the database hold ``desired``; runs inside the caller's (owner-role) transaction.  Returns the id."""
    c = desired.clinic
    values = {
        "slug": c["slug"],
        "name": c["name"],
        "timezone": c["timezone"],
        "public_key": c["public_key"],
        "phone": c["phone"],
        "oncall_phone": c["oncall_phone"],
        "address": c["address"],
        "business_hours": json.dumps(c["business_hours"]),
        "holidays": json.dumps(c["holidays"]),
        "policies": json.dumps(c["policies"]),
        "chat_origins": json.dumps(c["chat_origins"]),
    }
    if current is None:
        clinic_id = int(
            session.execute(
                text("""INSERT INTO clinics (slug, name, timezone, public_key, phone, oncall_phone, address,
                                         business_hours, holidays, policies, chat_origins)
                    VALUES (:slug, :name, :timezone, :public_key, :phone, :oncall_phone, :address,
                            CAST(:business_hours AS jsonb), CAST(:holidays AS jsonb), CAST(:policies AS jsonb),
                            CAST(:chat_origins AS jsonb))
                    RETURNING id"""),
                values,
            ).scalar_one()
        )
    else:
        clinic_id = int(current.clinic_id or 0)
        session.execute(
            text("""UPDATE clinics SET name = :name, timezone = :timezone, public_key = :public_key, phone = :phone,
                           oncall_phone = :oncall_phone, address = :address,
                           business_hours = CAST(:business_hours AS jsonb), holidays = CAST(:holidays AS jsonb),
                           policies = CAST(:policies AS jsonb), chat_origins = CAST(:chat_origins AS jsonb)
                    WHERE id = :id"""),
            {**values, "id": clinic_id},
        )
    set_clinic(session, clinic_id)  # owner connections are subject to the FORCEd RLS too

    # SMS numbers (tenant directory)
    session.execute(
        text("DELETE FROM clinic_phone_numbers WHERE clinic_id = :c AND NOT (e164 = ANY(:numbers))"),
        {"c": clinic_id, "numbers": list(desired.sms_numbers)},
    )
    for number, sid in desired.sms_numbers.items():
        session.execute(
            text("""INSERT INTO clinic_phone_numbers (clinic_id, e164, messaging_service_sid) VALUES (:c, :n, :sid)
                    ON CONFLICT (e164) DO UPDATE SET messaging_service_sid = EXCLUDED.messaging_service_sid
                    WHERE clinic_phone_numbers.clinic_id = EXCLUDED.clinic_id"""),
            {"c": clinic_id, "n": number, "sid": sid},
        )

    # services
    service_ids: dict[str, int] = {}
    for slug, s in desired.services.items():
        service_ids[slug] = int(
            session.execute(
                text(f"""INSERT INTO services (clinic_id, slug, active, {", ".join(SERVICE_FIELDS)})
                     VALUES (:c, :slug, true, {", ".join(_service_value(f) for f in SERVICE_FIELDS)})
                     ON CONFLICT (clinic_id, slug) DO UPDATE SET active = true,
                         {", ".join(f"{f} = EXCLUDED.{f}" for f in SERVICE_FIELDS)}
                     RETURNING id"""),
                {
                    "c": clinic_id,
                    "slug": slug,
                    **{f: (json.dumps(v) if f in JSON_SERVICE_FIELDS else v) for f, v in s.items()},
                },
            ).scalar_one()
        )
    session.execute(
        text("UPDATE services SET active = false WHERE clinic_id = :c AND active AND NOT (slug = ANY(:keep))"),
        {"c": clinic_id, "keep": list(desired.services)},
    )

    # providers and who does what
    session.execute(text("DELETE FROM provider_services WHERE clinic_id = :c"), {"c": clinic_id})
    for slug, p in desired.providers.items():
        provider_id = int(
            session.execute(
                text("""INSERT INTO providers (clinic_id, slug, name, title, calendar_id, working_hours, active)
                    VALUES (:c, :slug, :name, :title, :calendar_id, CAST(:hours AS jsonb), true)
                    ON CONFLICT (clinic_id, slug) DO UPDATE SET name = EXCLUDED.name, title = EXCLUDED.title,
                        calendar_id = EXCLUDED.calendar_id, working_hours = EXCLUDED.working_hours, active = true
                    RETURNING id"""),
                {
                    "c": clinic_id,
                    "slug": slug,
                    "name": p["name"],
                    "title": p["title"],
                    "calendar_id": p["calendar_id"],
                    "hours": json.dumps(p["working_hours"]),
                },
            ).scalar_one()
        )
        for skill in p["skills"]:
            session.execute(
                text("INSERT INTO provider_services (clinic_id, provider_id, service_id) VALUES (:c, :p, :s)"),
                {"c": clinic_id, "p": provider_id, "s": service_ids[skill]},
            )
    session.execute(
        text("UPDATE providers SET active = false WHERE clinic_id = :c AND active AND NOT (slug = ANY(:keep))"),
        {"c": clinic_id, "keep": list(desired.providers)},
    )

    # automations
    for kind, a in desired.automations.items():
        session.execute(
            text("""INSERT INTO automations (clinic_id, kind, enabled, template, settings)
                    VALUES (:c, :kind, :enabled, :template, CAST(:settings AS jsonb))
                    ON CONFLICT (clinic_id, kind) DO UPDATE SET enabled = EXCLUDED.enabled,
                        template = EXCLUDED.template, settings = EXCLUDED.settings"""),
            {
                "c": clinic_id,
                "kind": kind,
                "enabled": a["enabled"],
                "template": a["template"],
                "settings": json.dumps(a["settings"]),
            },
        )
    session.execute(
        text("UPDATE automations SET enabled = false WHERE clinic_id = :c AND enabled AND NOT (kind = ANY(:keep))"),
        {"c": clinic_id, "keep": list(desired.automations)},
    )
    return clinic_id
