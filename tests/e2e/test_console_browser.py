"""The staff console in a real browser (Debian's Chromium driven by Playwright): sign-in with a password and
with the local OIDC provider, lockout, CSRF-less POSTs refused, a provider kept to their own patients and
clinic, keyboard use, and axe-core accessibility checks (no serious or critical violation) at desktop and
phone width.  axe-core is vendored (tests/support/vendor): nothing is downloaded at run time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from domain.staff_access import StaffRole
from medspa.services import Infrastructure
from tests.e2e.test_widget_browser import CHROMIUM, LAUNCH_ARGS
from tests.fakes.oidc_provider import OidcUser
from tests.support.console import GLOW, HARBOR, PASSWORD, ConsoleStack, add_patient, provider_ids, running_console

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[1] / "support" / "vendor" / "axe-4.14.1.min.js"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 860}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is required (scripts/test.sh installs it)"
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def console(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    with running_console(infra, Path(tmp_path_factory.mktemp("console-browser"))) as stack:
        yield stack


def _context(browser: Any, viewport: dict[str, int] = DESKTOP, **kwargs: Any) -> Any:
    # Each context acts from its own address (uvicorn trusts X-Forwarded-For from localhost), so one test's
    # failed sign-ins never lock another's.
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    return browser.new_context(viewport=viewport, extra_http_headers={"X-Forwarded-For": address}, **kwargs)


def _sign_in(page: Any, console: ConsoleStack, email: str, password: str = PASSWORD) -> None:
    page.goto(console.base_url + "/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def _axe_serious(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def _seeded_day(console: ConsoleStack) -> tuple[Any, Any, str, Any]:
    mine_id, other_id = provider_ids(console.database, GLOW)[:2]
    start = datetime(2032, 2, 3, 18, 0, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 500)
    mine = add_patient(
        console.database,
        GLOW,
        provider_id=mine_id,
        starts_at=start,
        handoff="urgent",
        name=f"Ava Mine {uuid.uuid4().hex[:4]}",
        body="My lips feel a bit swollen, is that normal?",
    )
    other = add_patient(
        console.database,
        GLOW,
        provider_id=other_id,
        starts_at=start + timedelta(hours=1),
        name=f"Zed Other {uuid.uuid4().hex[:4]}",
    )
    day = start.astimezone(ZoneInfo("America/Los_Angeles")).date().isoformat()
    return mine, other, day, mine_id


def test_password_sign_in_and_the_main_pages_are_accessible_at_desktop_and_phone_width(console, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    mine, _other, day, _ = _seeded_day(console)
    owner = console.add_staff(GLOW, StaffRole.OWNER)
    pages = {
        "inbox": f"/clinics/{GLOW}/inbox",
        "conversation": f"/clinics/{GLOW}/conversations/{mine.conversation_id}",
        "client": f"/clinics/{GLOW}/clients/{mine.client_id}",
        "clients": f"/clinics/{GLOW}/clients?q=Ava",
        "calendar": f"/clinics/{GLOW}/calendar?date={day}",
        "audit": f"/clinics/{GLOW}/audit",
        "notifications": f"/clinics/{GLOW}/notifications",
    }
    for viewport in (DESKTOP, PHONE):
        context = _context(browser, viewport, bypass_csp=True)  # bypass only so the test can inject axe-core
        page = context.new_page()
        page.goto(console.base_url + "/sign-in")
        assert _axe_serious(page) == [], "sign-in page"
        _sign_in(page, console, owner.email)
        page.wait_for_url(f"**/clinics/{GLOW}/inbox")
        assert page.get_by_test_id("inbox-item").filter(has_text=mine.name).count() == 1
        for name, path in pages.items():
            response = page.goto(console.base_url + path)
            assert response is not None and response.status == 200, name
            violations = _axe_serious(page)
            assert violations == [], f"{name} at {viewport['width']}px: {violations}"
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} scrolls sideways at {viewport['width']}px"
            if viewport is PHONE:
                page.screenshot(path=str(ARTIFACTS / f"console-{name}-phone.png"), full_page=True)
        page.goto(console.base_url + pages["client"])
        assert page.get_by_test_id("client-name").inner_text() == mine.name
        assert page.get_by_test_id("consent-ledger").is_visible()
        assert page.get_by_test_id("upcoming-visits").is_visible()
        page.goto(console.base_url + pages["calendar"])
        assert page.get_by_test_id("calendar-entry").filter(has_text=mine.name).count() == 1
        context.close()


def test_the_console_is_usable_from_the_keyboard(console, browser):
    desk = console.add_staff(GLOW, StaffRole.FRONT_DESK)
    context = _context(browser)
    page = context.new_page()
    page.goto(console.base_url + "/sign-in")
    assert page.evaluate("() => document.activeElement.id") == "email", "the form starts where the typing does"
    page.keyboard.type(desk.email)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/clinics/{GLOW}/inbox")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.closest('main') !== null"), "the skip link skipped the header"
    context.close()


def test_sign_in_with_the_oidc_provider(console, browser):
    account = console.add_staff(GLOW, StaffRole.FRONT_DESK, password=None)
    assert console.oidc is not None
    console.oidc.next_user = OidcUser(email=account.email)
    context = _context(browser)
    page = context.new_page()
    page.goto(console.base_url + "/sign-in")
    page.get_by_test_id("oidc-sign-in").click()
    page.wait_for_url(f"**/clinics/{GLOW}/inbox")
    assert page.get_by_role("heading", name="Inbox").is_visible()
    assert console.oidc.violations == []
    context.close()


def test_repeated_failures_lock_the_account_with_a_clear_message(console, browser):
    account = console.add_staff(GLOW, StaffRole.MANAGER)
    context = _context(browser)
    page = context.new_page()
    for attempt in range(5):
        _sign_in(page, console, account.email, f"not my password {attempt}")
        page.get_by_test_id("sign-in-error").wait_for()
    _sign_in(page, console, account.email, PASSWORD)
    error = page.get_by_test_id("sign-in-error")
    assert "Too many failed sign-in attempts" in error.inner_text() and "locked" in error.inner_text()
    assert error.get_attribute("role") == "alert"
    assert "/sign-in" in page.url
    context.close()


def test_posts_without_the_csrf_token_are_rejected(console, browser):
    owner = console.add_staff(GLOW, StaffRole.OWNER)
    context = _context(browser)
    page = context.new_page()
    _sign_in(page, console, owner.email)
    page.wait_for_url(f"**/clinics/{GLOW}/inbox")
    statuses = page.evaluate(
        """async (clinic) => {
            const signOut = await fetch('/sign-out', {method: 'POST'});
            const token = await fetch(`/api/v1/clinics/${clinic}/tokens`, {method: 'POST',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify({scopes: ['clients:read']})});
            const me = await fetch('/api/v1/me');
            return [signOut.status, token.status, me.status];
        }""",
        GLOW,
    )
    assert statuses == [403, 403, 200], "refused, and the session is still there"
    with_token = page.evaluate(
        """async (clinic) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch(`/api/v1/clinics/${clinic}/tokens`, {method: 'POST', headers: {
                'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: JSON.stringify({scopes: ['clients:read']})});
            return r.status;
        }""",
        GLOW,
    )
    assert with_token == 201
    context.close()


def test_a_provider_cannot_open_another_providers_patient_or_another_clinic(console, browser):
    mine, other, day, mine_id = _seeded_day(console)
    harbor_patient = add_patient(console.database, HARBOR, name=f"Harbor Secret {uuid.uuid4().hex[:4]}")
    provider = console.add_staff(GLOW, StaffRole.PROVIDER, provider_id=mine_id)
    context = _context(browser)
    page = context.new_page()
    _sign_in(page, console, provider.email)
    page.wait_for_url(f"**/clinics/{GLOW}/inbox")
    assert page.get_by_test_id("inbox-item").filter(has_text=mine.name).count() == 1
    assert other.name not in page.content()

    for path, secret in (
        (f"/clinics/{GLOW}/clients/{other.client_id}", other.name),
        (f"/clinics/{GLOW}/conversations/{other.conversation_id}", other.name),
        (f"/clinics/{HARBOR}/inbox", harbor_patient.name),
        (f"/clinics/{HARBOR}/clients/{harbor_patient.client_id}", harbor_patient.name),
    ):
        response = page.goto(console.base_url + path)
        assert response is not None and response.status == 403, path
        assert page.get_by_test_id("error-status").inner_text().startswith("403")
        assert secret not in page.content(), path
        assert page.get_by_test_id("transcript").count() == 0 and page.get_by_test_id("client-name").count() == 0

    response = page.goto(console.base_url + f"/clinics/{GLOW}/calendar?date={day}")
    assert response is not None and response.status == 200
    assert page.get_by_test_id("calendar-entry").filter(has_text=mine.name).count() == 1
    assert other.name not in page.content()
    response = page.goto(console.base_url + f"/clinics/{GLOW}/clients/{mine.client_id}")
    assert response is not None and response.status == 200
    assert page.get_by_test_id("client-name").inner_text() == mine.name
    context.close()
