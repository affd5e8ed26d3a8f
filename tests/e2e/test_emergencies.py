"""Every emergency is answered and paged, in every state (real webhook, real worker, fakes only at Twilio/OpenAI).

A patient whose conversation is with staff, who opted out, who writes at night or while the model is down still
gets the immediate safety reply (call 911 / the ER, the clinic's number) and the on-call phone is paged — once.
"""

from __future__ import annotations

import threading
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text

from tests.fakes.openai_api import openai_error, text_reply
from tests.support.infra import wait_for
from tests.support.phones import random_phone
from tests.support.stack import GLOW_CLINIC_ID, GLOW_NUMBER, Stack, running_stack

ONCALL = "+14155550199"
CLINIC_PHONE_DIGITS = "5550100"
EMERGENCY = "my lips are turning blue and I can't breathe"


def _phone() -> str:
    return random_phone()


def _conversation(stack: Stack, phone: str) -> dict:
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        return dict(
            session.execute(
                text(
                    """SELECT c.id, c.agent_state, c.handoff_urgency, cl.consent_state FROM conversations c
                       JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = :p AND c.channel = 'sms'"""
                ),
                {"p": phone},
            )
            .mappings()
            .one()
        )


def _pages(stack: Stack, conversation_id: int) -> list[str]:
    return [body for body in stack.replies_to(ONCALL) if f"conversation {conversation_id} " in body]


def _sent_kinds(stack: Stack, conversation_id: int) -> list[tuple[str, str]]:
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        return [
            (str(kind), str(status))
            for kind, status in session.execute(
                text("SELECT kind, status FROM outbox WHERE conversation_id = :c ORDER BY id"), {"c": conversation_id}
            )
        ]


def _assert_safety_reply(reply: str) -> None:
    assert "911" in reply and "emergency room" in reply.lower(), reply
    assert CLINIC_PHONE_DIGITS in reply.replace("-", "").replace(" ", ""), reply


def _answered_and_paged_once(stack: Stack, phone: str, replies_before: int) -> dict:
    replies = stack.wait_replies(phone, replies_before + 1)
    _assert_safety_reply(replies[replies_before])
    conv = _conversation(stack, phone)
    pages = wait_for(lambda: _pages(stack, conv["id"]), 30, what="the on-call page")
    stack.wait_idle()
    assert len(stack.replies_to(phone)) == replies_before + 1, "one safety reply, nothing else"
    assert len(_pages(stack, conv["id"])) == 1 and "EMERGENCY" in pages[0], "paged exactly once"
    assert conv["handoff_urgency"] == "emergency" and conv["agent_state"].lower() == "handoff"
    return conv


def test_emergency_while_staff_have_the_conversation(stack):
    phone = _phone()
    stack.send_sms(GLOW_NUMBER, phone, "can I talk to a real person?")
    stack.wait_replies(phone, 1)
    stack.wait_idle()
    assert _conversation(stack, phone)["agent_state"].lower() == "handoff"

    stack.send_sms(GLOW_NUMBER, phone, EMERGENCY)
    conv = _answered_and_paged_once(stack, phone, 1)

    # Back to ordinary text: staff still have it, the agent stays silent and nobody is paged again.
    stack.send_sms(GLOW_NUMBER, phone, "ok, thanks")
    stack.wait_idle()
    assert len(stack.replies_to(phone)) == 2 and len(_pages(stack, conv["id"])) == 1


def test_emergency_from_an_opted_out_patient_at_night(stack):
    # 02:30 in the clinic's (and patient's) time zone: quiet hours do not hold back a safety reply.
    stack.clock.set(datetime(2027, 3, 3, 2, 30, tzinfo=ZoneInfo("America/Los_Angeles")))
    phone = _phone()
    stack.send_sms(GLOW_NUMBER, phone, "STOP")
    stack.wait_replies(phone, 1)
    stack.send_sms(GLOW_NUMBER, phone, "what time do you open?")
    stack.wait_idle()
    assert len(stack.replies_to(phone)) == 1, "an opted-out patient gets nothing ordinary"

    stack.send_sms(GLOW_NUMBER, phone, EMERGENCY)
    conv = _answered_and_paged_once(stack, phone, 1)
    assert conv["consent_state"] == "opted_out", "a safety reply does not re-subscribe anyone"
    assert ("safety", "sent") in _sent_kinds(stack, conv["id"])

    stack.send_sms(GLOW_NUMBER, phone, "ok")
    stack.wait_idle()
    assert len(stack.replies_to(phone)) == 2, "still opted out: nothing but the safety reply"


def test_emergency_during_a_model_outage_needs_no_model(infra, tmp_path):
    with running_stack(infra, tmp_path, model_provider="openai", model_deadline_s=2) as (stack, _container):
        phone = _phone()
        stack.openai.server_error_forever()
        stack.send_sms(GLOW_NUMBER, phone, "do you have anything open friday afternoon?")
        (apology,) = stack.wait_replies(phone, 1, timeout=60)
        stack.wait_idle()
        conv = _conversation(stack, phone)
        assert conv["agent_state"].lower() == "handoff" and conv["handoff_urgency"] == "normal", apology
        assert _pages(stack, conv["id"]) == [], "a model outage alone pages nobody"

        # Now the model hangs instead (timeouts); the emergency must not wait for it or call it at all.
        stack.openai.clear_script()
        hanging = openai_error(500, "late", "server_error")
        hanging.delay_s = 30
        stack.openai.script(hanging, times=None)
        model_calls = len(stack.openai.requests_to("POST", "/v1/chat/completions"))
        stack.send_sms(GLOW_NUMBER, phone, EMERGENCY)
        _answered_and_paged_once(stack, phone, 1)
        assert len(stack.openai.requests_to("POST", "/v1/chat/completions")) == model_calls


def _set_failed_turns(stack: Stack, phone: str, failed: int) -> None:
    """As if the last turns of this conversation had crashed (a lease taken ``failed`` times without a commit)."""
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        session.execute(
            text(
                """UPDATE conversations SET failed_turns = :n
                   WHERE client_id = (SELECT id FROM clients WHERE phone_e164 = :p) AND channel = 'sms'"""
            ),
            {"n": failed, "p": phone},
        )


def test_emergency_in_a_conversation_about_to_be_quarantined(stack):
    quarantine_after = stack.settings.quarantine_after_attempts
    ordinary, urgent = _phone(), _phone()
    for phone in (ordinary, urgent):
        stack.send_sms(GLOW_NUMBER, phone, "hi, what are your hours?")
        stack.wait_replies(phone, 1)
        stack.wait_idle()
        _set_failed_turns(stack, phone, quarantine_after)

    # An ordinary text in a conversation whose turns keep failing is quarantined for staff, unanswered ...
    stack.send_sms(GLOW_NUMBER, ordinary, "can I book botox?")
    wait_for(lambda: _conversation(stack, ordinary)["agent_state"].lower() == "handoff", 30, what="quarantine")
    stack.wait_idle()
    assert len(stack.replies_to(ordinary)) == 1
    # ... an emergency there is still answered and paged.
    stack.send_sms(GLOW_NUMBER, urgent, EMERGENCY)
    _answered_and_paged_once(stack, urgent, 1)


def test_emergency_from_a_sender_over_the_message_limit_is_recorded_and_answered(infra, tmp_path):
    # A 429 loses an inbound SMS for good (Twilio does not retry it); a patient texting fast because something is
    # wrong is exactly who must not lose one.
    with running_stack(infra, tmp_path, rate_limit_per_sender_per_min=3) as (stack, _container):
        phone = _phone()
        for body in ("hi", "what time do you open?", "and on saturday?"):
            stack.send_sms(GLOW_NUMBER, phone, body)
        stack.wait_idle()
        over = stack.post_twilio("/webhooks/twilio/sms", stack.sms_form(GLOW_NUMBER, phone, "and sunday?"))
        assert over.status_code == 429, "an ordinary text over the limit is refused"
        replies_before = len(stack.replies_to(phone))

        assert (
            stack.post_twilio("/webhooks/twilio/sms", stack.sms_form(GLOW_NUMBER, phone, EMERGENCY)).status_code == 200
        )
        _answered_and_paged_once(stack, phone, replies_before)


def test_an_emergency_told_over_two_texts_is_answered_and_paged(stack):
    # The lip in one text, its colour in the next: neither flags alone, together they are a blocked vessel.
    # Answered apart (a turn between them), the second must still be read with the first.
    phone = _phone()
    stack.send_sms(GLOW_NUMBER, phone, "the lip filler I got yesterday")
    stack.wait_replies(phone, 1)
    stack.wait_idle()

    stack.send_sms(GLOW_NUMBER, phone, "looks kind of pale now")
    conv = _answered_and_paged_once(stack, phone, 1)

    # Already handed off: the next ordinary text does not page again.
    stack.send_sms(GLOW_NUMBER, phone, "ok I'm calling")
    stack.wait_idle()
    assert len(_pages(stack, conv["id"])) == 1


def test_an_emergency_while_another_turn_waits_on_the_model_is_answered_at_once(infra, tmp_path):
    # The patient's first text is with a slow model; their next says they can't breathe.  Its turn would come only
    # after the running one commits: the safety reply and the page go out at once instead, and the turn that later
    # reads the text finds them written (one reply, one page).
    release = threading.Event()
    called = threading.Event()

    def slow_first_call(body: dict) -> dict:
        if not called.is_set():
            called.set()
            release.wait(60)
        return text_reply("Sure - we have Friday at 3pm open. Shall I book it?")

    with running_stack(infra, tmp_path, model_provider="openai", model_deadline_s=90) as (stack, _container):
        stack.openai.responder = slow_first_call
        phone = _phone()
        stack.send_sms(GLOW_NUMBER, phone, "do you have anything open friday afternoon?")
        assert called.wait(30), "the first turn reached the model"
        try:
            stack.send_sms(GLOW_NUMBER, phone, EMERGENCY)
            (safety,) = stack.wait_replies(phone, 1, timeout=20)
            _assert_safety_reply(safety)
            conv = _conversation(stack, phone)
            wait_for(lambda: _pages(stack, conv["id"]), 20, what="the on-call page while the model still runs")
            assert not release.is_set()
        finally:
            release.set()
        stack.wait_replies(phone, 2, timeout=60)
        stack.wait_idle()
        replies = stack.replies_to(phone)
        assert len(replies) == 2 and sum("911" in r for r in replies) == 1, replies
        assert len(_pages(stack, conv["id"])) == 1, "paged exactly once"
        conv = _conversation(stack, phone)
        assert conv["handoff_urgency"] == "emergency" and conv["agent_state"].lower() == "handoff"
