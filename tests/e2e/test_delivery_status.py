"""Twilio's delivery status callbacks, as Twilio sends them, to the real webhook app and worker.

A reply carries the ``StatusCallback`` URL the sender gave Twilio; Twilio posts each status to it, signed.  The
row moves forward only, ``delivered`` stamps ``delivered_at``, and a carrier error code is applied to the
recipient in the same transaction (21610: the recipient unsubscribed at the carrier, so the consent ledger records
the opt-out; 21211: the number is invalid).
"""

from __future__ import annotations

import uuid

from sqlalchemy import text

from tests.support.infra import wait_for
from tests.support.stack import GLOW_CLINIC_ID, GLOW_NUMBER, Stack


def _phone() -> str:
    return "+1628" + str(6_000_000 + uuid.uuid4().int % 3_000_000)


def _replied(stack: Stack, phone: str) -> tuple[str, str]:
    """Text the clinic, wait for the reply; the reply's StatusCallback path and provider sid."""
    stack.send_sms(GLOW_NUMBER, phone, "what are your opening hours?")
    stack.wait_replies(phone, 1)
    sent = next(m for m in list(stack.twilio.messages) if m.to == phone)
    assert sent.status_callback is not None and sent.status_callback.startswith(stack.base_url)
    return sent.status_callback.removeprefix(stack.base_url), sent.sid


def _row(stack: Stack, phone: str) -> tuple[str, str | None, bool]:
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        status, error_code, delivered = session.execute(
            text("SELECT status, error_code, delivered_at IS NOT NULL FROM outbox WHERE to_address = :p"), {"p": phone}
        ).one()
    return str(status), error_code, bool(delivered)


def _callback(stack: Stack, path: str, sid: str, status: str, error_code: str | None = None) -> int:
    form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "0" * 32}
    if error_code is not None:
        form["ErrorCode"] = error_code
    return stack.post_twilio(path, form).status_code


def test_status_callbacks_move_the_reply_forward_only_and_stamp_delivery(stack: Stack) -> None:
    phone = _phone()
    path, sid = _replied(stack, phone)
    wait_for(lambda: _row(stack, phone)[0] == "sent", 10, what="the reply marked sent")

    assert _callback(stack, path, sid, "delivered") == 204
    assert _row(stack, phone) == ("delivered", None, True)
    # A late "sent" (callbacks may arrive out of order) never moves the row back.
    assert _callback(stack, path, sid, "sent") == 204
    assert _row(stack, phone) == ("delivered", None, True)


def test_a_carrier_opt_out_in_a_status_callback_is_recorded_before_the_204(stack: Stack) -> None:
    # In the callback's own transaction, not left to a queue: Redis losing a message must not lose an opt-out.
    phone = _phone()
    path, sid = _replied(stack, phone)

    def consent() -> tuple[str, int]:
        with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
            state, carrier_events = session.execute(
                text(
                    """SELECT cl.consent_state, (SELECT count(*) FROM consent_events e
                                                 WHERE e.client_id = cl.id AND e.source = 'carrier')
                       FROM clients cl WHERE cl.phone_e164 = :p"""
                ),
                {"p": phone},
            ).one()
        return str(state), int(carrier_events)

    assert _callback(stack, path, sid, "undelivered", "21610") == 204
    assert _row(stack, phone)[:2] == ("undelivered", "21610")
    assert consent() == ("opted_out", 1)
    # Twilio may post the same status again (and "failed" after "undelivered"): the verdict is recorded once.
    assert _callback(stack, path, sid, "undelivered", "21610") == 204
    assert _callback(stack, path, sid, "failed", "21610") == 204
    assert consent() == ("opted_out", 1)


def test_an_invalid_number_in_a_status_callback_marks_the_clients_number(stack: Stack) -> None:
    phone = _phone()
    path, sid = _replied(stack, phone)
    assert _callback(stack, path, sid, "failed", "21211") == 204
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        number = session.execute(text("SELECT sms_status FROM clients WHERE phone_e164 = :p"), {"p": phone}).one()[0]
    assert number == "invalid"


def test_an_unsigned_status_callback_changes_nothing(stack: Stack) -> None:
    phone = _phone()
    path, sid = _replied(stack, phone)
    wait_for(lambda: _row(stack, phone)[0] == "sent", 10, what="the reply marked sent")
    form = {"MessageSid": sid, "MessageStatus": "delivered"}
    assert stack.post_twilio(path, form, signature="not-a-signature").status_code == 403
    assert _row(stack, phone) == ("sent", None, False)


def test_a_status_callback_with_an_error_code_longer_than_its_column_is_a_400(stack: Stack) -> None:
    phone = _phone()
    path, sid = _replied(stack, phone)
    wait_for(lambda: _row(stack, phone)[0] == "sent", 10, what="the reply marked sent")
    response = stack.post_twilio(path, {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": "3" * 33})
    assert response.status_code == 400 and "ErrorCode" in response.json()["error"]
    assert _row(stack, phone) == ("sent", None, False)
