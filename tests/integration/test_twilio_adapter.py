"""TwilioSmsSender through the real twilio SDK against the local Messages API fake."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from twilio.request_validator import RequestValidator

from domain.ports import OutboundSms, SmsSendError
from tests.fakes.twilio_api import FakeTwilioApi, count_segments, twilio_signature
from worker.integrations.twilio_sms import TwilioSmsSender

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "test-auth-token-not-a-secret"
SERVICE = "MG" + "fedcba9876543210" * 2


@pytest.fixture
def fake() -> Iterator[FakeTwilioApi]:
    with FakeTwilioApi(SID, TOKEN) as server:
        yield server


def _sender(fake: FakeTwilioApi, **kwargs: object) -> TwilioSmsSender:
    return TwilioSmsSender(SID, TOKEN, base_url_override=fake.base_url, **kwargs)  # type: ignore[arg-type]


def _sms(body: str = "Your appointment is confirmed.", **kwargs: object) -> OutboundSms:
    fields: dict[str, object] = {
        "outbox_id": 7,
        "clinic_id": 1,
        "to": "+15551230001",
        "from_": "+15559870000",
        "body": body,
        "status_callback_url": "https://clinic.example/twilio/status",
    }
    fields.update(kwargs)
    return OutboundSms(**fields)  # type: ignore[arg-type]


def test_send_puts_form_fields_and_basic_auth_on_the_wire(fake: FakeTwilioApi) -> None:
    result = _sender(fake).send(_sms())

    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34
    assert result.status == "queued"
    assert result.segments == 1
    [request] = fake.requests_to("POST", f"/2010-04-01/Accounts/{SID}/Messages.json")
    form = {k: v[-1] for k, v in request.form().items()}
    assert form == {
        "To": "+15551230001",
        "From": "+15559870000",
        "Body": "Your appointment is confirmed.",
        "StatusCallback": "https://clinic.example/twilio/status",
    }
    assert request.header("Authorization") == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert fake.messages[0].status_callback == "https://clinic.example/twilio/status"
    fake.assert_clean()


def test_messaging_service_replaces_from(fake: FakeTwilioApi) -> None:
    _sender(fake, messaging_service_sid=SERVICE).send(_sms(status_callback_url=None))

    form = {k: v[-1] for k, v in fake.requests[0].form().items()}
    assert form["MessagingServiceSid"] == SERVICE
    assert "From" not in form and "StatusCallback" not in form
    fake.assert_clean()


def test_segments_come_from_the_api_response(fake: FakeTwilioApi) -> None:
    body = "Aftercare: " + "avoid heat and exercise for 24 hours. " * 6  # > 160 GSM-7 chars
    result = _sender(fake).send(_sms(body))
    assert result.segments == count_segments(body) == 2
    assert _sender(fake).send(_sms("Ça va? 💉")).segments == 1


def test_wrong_credentials_are_not_retryable(fake: FakeTwilioApi) -> None:
    sender = TwilioSmsSender(SID, "wrong-token", base_url_override=fake.base_url)
    with pytest.raises(SmsSendError) as caught:
        sender.send(_sms())
    assert caught.value.retryable is False
    assert caught.value.code == "20003"


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, 20429), (500, 20500), (503, None)],
)
def test_rate_limits_and_server_errors_are_retryable(fake: FakeTwilioApi, status: int, code: int | None) -> None:
    fake.fail_next(1, status, code=code)
    with pytest.raises(SmsSendError) as caught:
        _sender(fake).send(_sms())
    assert caught.value.retryable is True
    # one attempt only: the actor owns retries
    assert len(fake.requests) == 1
    # and the next attempt (by the caller) succeeds
    assert _sender(fake).send(_sms()).status == "queued"


def test_unsubscribed_recipient_is_final(fake: FakeTwilioApi) -> None:
    fake.unsubscribed_next()
    with pytest.raises(SmsSendError) as caught:
        _sender(fake).send(_sms())
    assert caught.value.code == "21610"
    assert caught.value.retryable is False


@pytest.mark.parametrize("code", [21211, 21614, 21408])
def test_invalid_or_unroutable_numbers_are_final(fake: FakeTwilioApi, code: int) -> None:
    fake.fail_next(1, 400, code=code, message="nope")
    with pytest.raises(SmsSendError) as caught:
        _sender(fake).send(_sms())
    assert caught.value.code == str(code)
    assert caught.value.retryable is False


def test_timeout_is_retryable(fake: FakeTwilioApi) -> None:
    fake.delay_next(5.0)
    with pytest.raises(SmsSendError) as caught:
        _sender(fake, timeout=0.3).send(_sms())
    assert caught.value.retryable is True
    assert caught.value.code is None


def test_connection_refused_is_retryable() -> None:
    with FakeTwilioApi(SID, TOKEN) as server:
        dead_url = server.base_url  # nothing listens here once the fake is stopped
    with pytest.raises(SmsSendError) as caught:
        TwilioSmsSender(SID, TOKEN, base_url_override=dead_url, timeout=2).send(_sms())
    assert caught.value.retryable is True


def test_find_sent_reconciles_an_unrecorded_send(fake: FakeTwilioApi) -> None:
    sender = _sender(fake)
    before = datetime.now(UTC) - timedelta(minutes=1)
    sent = sender.send(_sms("Reminder: tomorrow 10:00"))
    sender.send(_sms("Something else"))
    sender.send(_sms("Reminder: tomorrow 10:00", to="+15551230002"))

    assert sender.find_sent(_sms("Reminder: tomorrow 10:00"), before) == sent.provider_message_id
    assert sender.find_sent(_sms("Never sent"), before) is None
    [listing, *_] = fake.requests_to("GET", f"/2010-04-01/Accounts/{SID}/Messages.json")
    assert listing.query["To"] == ["+15551230001"]
    assert listing.query["From"] == ["+15559870000"]
    # No DateSent filter: it would hide every message still queued at Twilio (they have no sent date).
    assert not [key for key in listing.query if key.startswith("DateSent")]
    fake.assert_clean()


def test_find_sent_finds_a_message_still_queued_at_twilio(fake: FakeTwilioApi) -> None:
    """A brown-out: Twilio accepted the message but has not sent it yet (queued, no date_sent).  Reconciliation
    must find it, or the row is sent a second time."""
    fake.hold_in_queue = True
    sender = _sender(fake)
    before = datetime.now(UTC) - timedelta(minutes=5)
    queued = sender.send(_sms("Your visit is confirmed"))
    via_service = _sender(fake, messaging_service_sid=SERVICE).send(_sms("Sent through the service"))
    listed = {m.sid: m for m in sender._client.messages.list(to="+15551230001")}
    assert (
        listed[queued.provider_message_id].status == "queued" and listed[queued.provider_message_id].date_sent is None
    )
    assert listed[via_service.provider_message_id].status == "accepted"

    assert sender.find_sent(_sms("Your visit is confirmed"), before) == queued.provider_message_id
    assert (
        _sender(fake, messaging_service_sid=SERVICE).find_sent(_sms("Sent through the service"), before)
        == via_service.provider_message_id
    )
    assert sender.find_sent(_sms("Not this one"), before) is None
    fake.assert_clean()


def test_the_fake_filters_on_the_sent_date_like_twilio(fake: FakeTwilioApi) -> None:
    """What the fix relies on, checked on the fake: DateSent filters never match a message still queued, and
    match it once it has left the queue; pages follow PageSize."""
    fake.hold_in_queue = True
    sender = _sender(fake)
    for n in range(3):
        sender.send(_sms(f"Message {n}"))
    client = sender._client
    today = datetime.now(UTC) - timedelta(minutes=1)
    assert client.messages.list(to="+15551230001", date_sent_after=today) == []
    assert len(client.messages.list(to="+15551230001")) == 3
    assert fake.release_queue() == 3
    listed = client.messages.list(to="+15551230001", date_sent_after=today, page_size=2)
    assert [m.body for m in listed] == ["Message 2", "Message 1", "Message 0"]  # newest first, over two pages
    assert {m.status for m in listed} == {"sent"} and all(m.date_sent is not None for m in listed)
    assert len(fake.requests_to("GET", f"/2010-04-01/Accounts/{SID}/Messages.json")) == 4
    fake.assert_clean()


def test_find_sent_honours_since(fake: FakeTwilioApi) -> None:
    sender = _sender(fake)
    sender.send(_sms("Reminder"))
    assert sender.find_sent(_sms("Reminder"), datetime.now(UTC) + timedelta(hours=1)) is None


def test_find_sent_compares_since_in_utc(fake: FakeTwilioApi) -> None:
    from zoneinfo import ZoneInfo

    sender = _sender(fake)
    sent = sender.send(_sms("Reminder"))
    new_york = ZoneInfo("America/New_York")
    assert sender.find_sent(_sms("Reminder"), datetime.now(new_york) - timedelta(minutes=1)) == sent.provider_message_id
    assert sender.find_sent(_sms("Reminder"), datetime.now(new_york) + timedelta(minutes=1)) is None
    # A naive moment is taken as UTC.
    naive = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
    assert sender.find_sent(_sms("Reminder"), naive) == sent.provider_message_id


def test_no_phone_numbers_or_bodies_in_logs(fake: FakeTwilioApi, caplog: pytest.LogCaptureFixture) -> None:
    # urllib3 logs full URLs at DEBUG; the app's logging config keeps third-party loggers at INFO or above.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="worker.integrations")
    sender = _sender(fake)
    sender.send(_sms("Private body text"))
    sender.find_sent(_sms("Private body text"), datetime.now(UTC) - timedelta(minutes=5))
    fake.unsubscribed_next()
    with pytest.raises(SmsSendError):
        sender.send(_sms("Private body text"))
    text = caplog.text
    assert "5551230001" not in text and "Private body text" not in text
    assert "outbox_id=7" in text  # the failure is still traceable


def test_signature_helper_matches_twilio_validator() -> None:
    url = "https://clinic.example/twilio/sms"
    params = {"From": "+15551230001", "Body": "hi", "MessageSid": "SM" + "a" * 32}
    signature = twilio_signature(TOKEN, url, params)
    assert RequestValidator(TOKEN).validate(url, params, signature)
    assert not RequestValidator("other-token").validate(url, params, signature)
