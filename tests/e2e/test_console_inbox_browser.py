"""The live inbox and the staff actions in a real browser (Debian's Chromium through Playwright) against the
whole service: the webhook app, a real Dramatiq worker and the fake Twilio, plus the console.

A front-desk user opens the inbox (handoffs first), allows alerts; a patient texting "I want to talk to a person"
appears in the open page without a reload (server-sent events) with an alert; the user takes the handoff over,
replies — the patient receives the text through the outbox (the fake Twilio's record) — and hands back.
CSRF-less POSTs are refused; the pages have no serious or critical accessibility violation (axe-core)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.staff_access import StaffRole
from medspa.services import Infrastructure
from tests.e2e.test_console_browser import _axe_serious, _context, _sign_in, browser  # noqa: F401 - the fixture
from tests.support.console import GLOW, ConsoleStack, add_patient, running_console
from tests.support.phones import random_phone
from tests.support.stack import GLOW_NUMBER, Stack, running_stack

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def service(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, ConsoleStack]]:
    with (
        running_stack(infra, Path(tmp_path_factory.mktemp("inbox-stack"))) as (stack, _container),
        running_console(infra, Path(tmp_path_factory.mktemp("inbox-console")), with_oidc=False) as console,
    ):
        yield stack, console


def _phone() -> str:
    return random_phone()


def _state(stack: Stack, conversation_id: int) -> str:
    from sqlalchemy import text

    with stack.database.tenant_scope(GLOW) as session:
        state = session.execute(
            text("SELECT agent_state FROM conversations WHERE id = :c"), {"c": conversation_id}
        ).scalar_one()
    return str(state).lower()


def test_front_desk_sees_a_handoff_arrive_takes_it_over_replies_and_hands_back(service, browser: Any):  # noqa: F811
    stack, console = service
    waiting = add_patient(console.database, GLOW, handoff="urgent", name=f"Waiting {uuid.uuid4().hex[:4]}")
    desk = console.add_staff(GLOW, StaffRole.FRONT_DESK)
    context = _context(browser, bypass_csp=True)  # bypass only so the test can inject axe-core
    context.grant_permissions(["notifications"], origin=console.base_url)
    page = context.new_page()
    _sign_in(page, console, desk.email)
    page.wait_for_url(f"**/clinics/{GLOW}/inbox")
    assert page.get_by_test_id("inbox-item").filter(has_text=waiting.name).count() == 1
    assert _axe_serious(page) == [], "inbox"
    page.wait_for_function("document.body.dataset.live === 'on'", timeout=10_000)
    page.get_by_test_id("enable-alerts").click()
    page.get_by_text("Alerts are on for new handoffs.").wait_for()

    # A patient asks for a person: the open page shows it without a reload, with an alert.
    phone = _phone()
    stack.send_sms(GLOW_NUMBER, phone, "I want to talk to a person")
    stack.wait_replies(phone, 1)
    arrived = page.get_by_test_id("inbox-item").filter(has_text=phone)
    arrived.wait_for(timeout=20_000)
    assert "normal handoff" in arrived.inner_text()
    page.wait_for_function("Number(document.body.dataset.handoffAlerts || 0) >= 1", timeout=20_000)
    assert "New normal handoff" in page.get_by_test_id("live-status").inner_text()
    handoffs = page.get_by_test_id("inbox-item").evaluate_all(
        "items => items.map(i => i.classList.contains('handoff'))"
    )
    assert handoffs == sorted(handoffs, reverse=True), "handoffs first"

    # Take it over, reply (the patient receives the text), hand back.
    arrived.get_by_role("link").click()
    page.wait_for_url(f"**/clinics/{GLOW}/conversations/*")
    conversation_id = int(page.url.rsplit("/", 1)[1].split("?")[0])
    assert _axe_serious(page) == [], "conversation"
    page.get_by_test_id("take-over").click()
    page.get_by_test_id("action-notice").wait_for()
    assert "You have the conversation" in page.get_by_test_id("action-notice").inner_text()
    staff_text = f"Hi, this is the front desk at Glow ({uuid.uuid4().hex[:4]}). How can we help?"
    page.get_by_label("Reply to the patient (text message)").fill(staff_text)
    page.get_by_test_id("send-reply").click()
    page.get_by_test_id("action-notice").filter(has_text="Reply queued").wait_for()
    assert page.get_by_test_id("message").filter(has_text=staff_text).count() == 1
    replies = stack.wait_replies(phone, 2)
    assert replies[1] == staff_text
    sent = [m for m in stack.twilio.messages if m.to == phone and m.body == staff_text]
    assert len(sent) == 1 and sent[0].from_ == GLOW_NUMBER
    assert _state(stack, conversation_id) == "handoff"

    page.get_by_test_id("hand-back").click()
    page.get_by_test_id("action-notice").filter(has_text="Handed back").wait_for()
    assert "with the agent" in page.get_by_test_id("conversation-state").inner_text()
    assert _state(stack, conversation_id) == "idle"
    stack.send_sms(GLOW_NUMBER, phone, "what are your hours on saturday?")
    assert len(stack.wait_replies(phone, 3)) == 3, "the agent answers again"

    # Without the CSRF token nothing is done: not through a form post, not through the API.
    before = _state(stack, conversation_id)
    statuses = page.evaluate(
        """async ([clinic, conversation]) => {
            const form = await fetch(`/clinics/${clinic}/conversations/${conversation}/takeover`, {method: 'POST'});
            const api = await fetch(`/api/v1/clinics/${clinic}/conversations/${conversation}/replies`, {
                method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({text: 'x'})});
            return [form.status, api.status];
        }""",
        [GLOW, conversation_id],
    )
    assert statuses == [403, 403]
    assert _state(stack, conversation_id) == before != "handoff", "not taken over"
    stack.wait_idle()
    assert len(stack.replies_to(phone)) == 3, "no staff text sent"
    context.close()
