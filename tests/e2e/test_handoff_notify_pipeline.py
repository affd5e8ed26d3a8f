"""A handoff in the real pipeline notifies the on-call staff: the turn that hands off commits its alert, enqueues
``notify_handoffs`` by name, and the notification's text reaches the on-call number through the outbox and the
fake Twilio (real webhook app, real Dramatiq worker, real Postgres and Redis)."""

from __future__ import annotations

from sqlalchemy import text

from tests.support.infra import wait_for
from tests.support.phones import random_phone
from tests.support.stack import GLOW_CLINIC_ID, GLOW_NUMBER, running_stack
from worker.handoff_notify import StoredSettings, save_settings


def _phone() -> str:
    return random_phone()


def test_asking_for_a_person_texts_the_on_call_staff_once(infra, tmp_path):
    on_call = _phone()
    with running_stack(infra, tmp_path, handoff_notify_batch_s=1, handoff_notify_quiet_hours="") as (stack, _):
        with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
            save_settings(session, GLOW_CLINIC_ID, StoredSettings([on_call], [], "", 1))
        try:
            patient = _phone()
            stack.send_sms(GLOW_NUMBER, patient, "I want to talk to a person")
            stack.wait_replies(patient, 1)

            def notification() -> dict | None:
                with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
                    row = (
                        session.execute(
                            text(
                                """SELECT n.id, n.body, n.alerts, a.urgency FROM handoff_alerts a
                                   JOIN handoff_notifications n ON n.id = a.batch_id
                                   JOIN conversations c ON c.id = a.conversation_id
                                   JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = :p"""
                            ),
                            {"p": patient},
                        )
                        .mappings()
                        .one_or_none()
                    )
                return dict(row) if row else None

            sent = wait_for(notification, 30, what="the handoff's notification")
            assert sent["urgency"] == "normal"
            texts = wait_for(lambda: stack.replies_to(on_call), 30, what="the on-call text")
            assert sent["body"] in texts and texts.count(sent["body"]) == 1
            assert patient not in sent["body"] and "person" not in sent["body"], "no patient data in the text"
        finally:
            with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
                session.execute(text("DELETE FROM handoff_notify_settings WHERE clinic_id = :c"), {"c": GLOW_CLINIC_ID})
