"""A patient's "C" to a reminder confirms the appointment through the real webhook and worker."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.support.stack import GLOW_NUMBER


def test_reply_c_to_a_reminder_confirms_the_appointment(stack):
    phone = "+1415888" + str(random.randint(0, 9999)).zfill(4)
    start = datetime(2033, 1, 10, 19, 0, tzinfo=UTC) + timedelta(days=random.randint(0, 300))
    with stack.database.tenant_scope(1) as session:
        client_id = session.execute(
            text(
                "INSERT INTO clients (clinic_id, phone_e164, name, consent_state) VALUES (1, :p, 'Rae Test', 'opted_in') "
                "RETURNING id"
            ),
            {"p": phone},
        ).scalar_one()
        provider_id, service_id = session.execute(
            text(
                "SELECT ps.provider_id, ps.service_id FROM provider_services ps JOIN services s ON s.id = ps.service_id "
                "WHERE s.slug LIKE 'hydra%' LIMIT 1"
            )
        ).one()
        appointment_id = session.execute(
            text(
                """INSERT INTO appointments (clinic_id, client_id, provider_id, service_id, starts_at, ends_at,
                                         blocked_until, status)
               VALUES (1, :c, :p, :s, :start, :end, :end, 'booked') RETURNING id"""
            ),
            {"c": client_id, "p": provider_id, "s": service_id, "start": start, "end": start + timedelta(hours=1)},
        ).scalar_one()
        session.execute(
            text(
                """INSERT INTO outbox (clinic_id, client_id, channel, kind, to_address, body, status, sent_at, meta)
               VALUES (1, :c, 'sms', 'automation', :p, 'Reminder: ... Reply C to confirm or R to reschedule.',
                       'sent', :sent_at, CAST(:meta AS jsonb))"""
            ),
            {
                "c": client_id,
                "p": phone,
                "sent_at": start - timedelta(hours=24),
                "meta": json.dumps({"automation": "reminder_24h", "appointment_id": appointment_id}),
            },
        )
    stack.clock.set(start - timedelta(hours=23))
    stack.send_sms(GLOW_NUMBER, phone, "C")
    (reply,) = stack.wait_replies(phone, 1)
    assert "confirm" in reply.lower()
    with stack.database.tenant_scope(1) as session:
        status, confirmed_at = session.execute(
            text("SELECT status, patient_confirmed_at FROM appointments WHERE id = :id"), {"id": appointment_id}
        ).one()
    assert status == "confirmed" and confirmed_at is not None
    stack.clock.set(None)
