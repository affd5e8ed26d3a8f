"""Handoff notifications on the real database (worker/handoff_notify.py): several handoffs within the window go
out as one notification (texts queued in the outbox to every on-call number, an email through a real SMTP
exchange with a local server), staff quiet hours hold normal handoffs until they end, urgent handoffs bypass
both, concurrent runs never notify an alert twice, and a clinic's settings replace the defaults."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from db.engine import Database
from medspa.settings import Settings
from tests.fakes.smtp_server import FakeSmtpServer
from tests.support.phones import random_phone
from worker.handoff_notify import (
    INSERT_ALERT,
    ClinicFacts,
    StoredSettings,
    alert_params,
    notify,
    save_settings,
    send_emails,
)
from worker.integrations.email import SmtpEmailSender

LA = "America/Los_Angeles"
DESK_PHONE = "+14155550142"


def _phone() -> str:
    return random_phone()


@pytest.fixture()
def clinic(owner_engine, database: Database) -> Iterator[ClinicFacts]:  # type: ignore[no-untyped-def]
    """A clinic of its own (alerts of other tests never ride along), on-call phone and one more on-call number."""
    slug = "notify-" + uuid.uuid4().hex[:8]
    oncall = _phone()
    with owner_engine.begin() as conn:
        clinic_id = conn.execute(
            text(
                """INSERT INTO clinics (slug, name, timezone, public_key, phone, oncall_phone, policies)
                   SELECT :slug, 'Notify Spa', :tz, :slug, '+14155550000', :oncall, policies
                   FROM clinics WHERE id = 1 RETURNING id"""
            ),
            {"slug": slug, "oncall": oncall, "tz": LA},
        ).scalar_one()
    yield ClinicFacts(int(clinic_id), "Notify Spa", LA, "+14155550000", oncall)


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "handoff_notify_batch_s": 120,
        "handoff_notify_quiet_hours": "21:00-07:00",
        "console_public_url": "https://console.example",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _local(hour: int, minute: int = 0, day: int = 10) -> datetime:
    return datetime(2031, 3, day, hour, minute, tzinfo=ZoneInfo(LA)).astimezone(UTC)


def _alert(database: Database, clinic: ClinicFacts, urgency: str, at: datetime) -> int:
    """An alert written with the statement the turn's commit uses; ``created_at`` set to the test's clock."""
    conversation_id = 10_000 + uuid.uuid4().int % 10**6
    with database.tenant_connection(clinic.clinic_id) as conn:
        conn.execute(INSERT_ALERT, alert_params(clinic.clinic_id, conversation_id, urgency, f"t:{uuid.uuid4()}"))
    with database.tenant_scope(clinic.clinic_id) as session:
        session.execute(
            text("UPDATE handoff_alerts SET created_at = :at WHERE conversation_id = :c"),
            {"at": at, "c": conversation_id},
        )
    return conversation_id


def _texts(database: Database, clinic: ClinicFacts) -> list[dict]:
    with database.tenant_scope(clinic.clinic_id) as session:
        return [
            dict(r)
            for r in session.execute(
                text(
                    """SELECT to_address, body, kind, status, conversation_id, client_id, from_address FROM outbox
                       WHERE kind = 'notification' ORDER BY id"""
                )
            ).mappings()
        ]


def test_handoffs_within_the_window_become_one_notification_to_every_on_call_number(database, clinic):
    with database.tenant_scope(clinic.clinic_id) as session:
        save_settings(session, clinic.clinic_id, StoredSettings([clinic.oncall_phone or "", DESK_PHONE], [], "", 60))
    t0 = _local(14)
    ids = [_alert(database, clinic, "normal", t0 + timedelta(seconds=s)) for s in (0, 20, 45)]
    settings = _settings()
    waiting = notify(database, clinic, settings, t0 + timedelta(seconds=50))
    assert waiting.notification_id is None and waiting.wait_until == t0 + timedelta(seconds=60)
    assert _texts(database, clinic) == []

    sent = notify(database, clinic, settings, t0 + timedelta(seconds=61))
    assert sent.alerts == 3 and len(sent.outbox_ids) == 2
    texts = _texts(database, clinic)
    assert sorted(t["to_address"] for t in texts) == sorted([clinic.oncall_phone, DESK_PHONE])
    for t in texts:
        assert t["status"] == "queued" and t["client_id"] is None and t["from_address"] == clinic.sms_number
        assert t["body"].startswith("Notify Spa: 3 new handoffs (") and all(str(i) in t["body"] for i in ids)
        assert f"https://console.example/clinics/{clinic.clinic_id}/inbox" in t["body"]
    assert notify(database, clinic, settings, t0 + timedelta(seconds=62)).why == "nothing pending"

    later = _alert(database, clinic, "normal", t0 + timedelta(seconds=300))
    again = notify(database, clinic, settings, t0 + timedelta(seconds=361))
    assert again.alerts == 1 and len(_texts(database, clinic)) == 4
    assert f"new normal handoff (conversation {later})" in _texts(database, clinic)[-1]["body"]


def test_quiet_hours_hold_normal_handoffs_and_urgent_ones_bypass_them(database, clinic):
    settings = _settings()  # no settings row: the clinic's on-call phone, default quiet hours 21:00-07:00
    night = _local(23, 10)
    _alert(database, clinic, "normal", night)
    held = notify(database, clinic, settings, night + timedelta(minutes=5))
    assert held.why == "quiet hours" and held.wait_until == _local(7, 0, day=11) and _texts(database, clinic) == []

    urgent = _alert(database, clinic, "emergency", night + timedelta(minutes=6))
    with database.tenant_scope(clinic.clinic_id) as session:
        save_settings(
            session, clinic.clinic_id, StoredSettings([clinic.oncall_phone or "", DESK_PHONE], [], None, None)
        )
    at_once = notify(database, clinic, settings, night + timedelta(minutes=6, seconds=1))
    assert at_once.why == "urgent" and at_once.alerts == 1
    texts = _texts(database, clinic)
    # The turn paged the clinic's on-call phone itself: the notification reaches the rest of the list.
    assert [t["to_address"] for t in texts] == [DESK_PHONE]
    assert f"new emergency handoff (conversation {urgent})" in texts[0]["body"]

    still = notify(database, clinic, settings, _local(6, 59, day=11))
    assert still.why == "quiet hours" and len(_texts(database, clinic)) == 1
    morning = notify(database, clinic, settings, _local(7, 0, day=11))
    assert morning.alerts == 1 and len(_texts(database, clinic)) == 3


def test_a_clinic_without_quiet_hours_and_concurrent_runs_notify_each_alert_once(database, clinic):
    with database.tenant_scope(clinic.clinic_id) as session:
        save_settings(session, clinic.clinic_id, StoredSettings([DESK_PHONE], [], "", 0))
    night = _local(2)
    for _ in range(5):
        _alert(database, clinic, "low", night)
    results = []
    runs = [
        threading.Thread(
            target=lambda: results.append(notify(database, clinic, _settings(), night + timedelta(seconds=1)))
        )
        for _ in range(4)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(30)
    assert sorted(r.alerts for r in results) == [0, 0, 0, 5]
    assert len(_texts(database, clinic)) == 1
    with database.tenant_scope(clinic.clinic_id) as session:
        assert session.execute(text("SELECT count(*) FROM handoff_alerts WHERE batch_id IS NULL")).scalar_one() == 0


def test_the_email_goes_out_once_through_smtp_and_a_failure_is_retried(database, clinic):
    smtp = FakeSmtpServer().start()
    try:
        with database.tenant_scope(clinic.clinic_id) as session:
            save_settings(
                session, clinic.clinic_id, StoredSettings([], ["desk@glow.example", "dr@glow.example"], "", 0)
            )
        at = _local(11)
        _alert(database, clinic, "normal", at)
        _alert(database, clinic, "urgent", at)
        _alert(database, clinic, "normal", at)
        sender = SmtpEmailSender("127.0.0.1", smtp.port, sender="alerts@medspa.example", starttls=False)
        settings = _settings()
        assert notify(database, clinic, settings, at).alerts == 1  # the urgent one, at once
        smtp.fail_next = 1
        with pytest.raises(Exception):  # noqa: B017 - smtplib's SMTPDataError: the row stays pending
            send_emails(database, clinic.clinic_id, sender)
        assert smtp.received == []
        assert send_emails(database, clinic.clinic_id, sender) == 1
        assert notify(database, clinic, settings, at + timedelta(seconds=1)).alerts == 2
        assert send_emails(database, clinic.clinic_id, sender) == 1
        assert send_emails(database, clinic.clinic_id, sender) == 0
        assert [m.subject for m in smtp.received] == [
            "MedSpa console: URGENT: a new handoff",
            "MedSpa console: 2 new handoffs",
        ]
        first = smtp.received[0]
        assert first.recipients == ["desk@glow.example", "dr@glow.example"] and first.sender == "alerts@medspa.example"
        assert "new urgent handoff" in first.body and "/inbox" in first.body
    finally:
        smtp.stop()
