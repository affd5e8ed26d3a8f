"""The chat widget in a real browser (Debian's Chromium driven by Playwright), against the real app and worker."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import text

from medspa.devstack import free_port

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is required (scripts/test.sh installs it)"
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield instance
        instance.close()


def _allow_origin(owner_engine, origin: str, allowed: bool = True) -> None:
    with owner_engine.begin() as conn:
        origins = conn.execute(text("SELECT chat_origins FROM clinics WHERE id = 1")).scalar_one()
        origins = [o for o in origins if o != origin] + ([origin] if allowed else [])
        conn.execute(
            text("UPDATE clinics SET chat_origins = CAST(:o AS jsonb) WHERE id = 1"),
            {"o": __import__("json").dumps(origins)},
        )


@contextlib.contextmanager
def _other_origin_site(app_base: str) -> Iterator[str]:
    """A clinic website on another origin that embeds the widget from the app's origin."""
    import tempfile

    folder = Path(tempfile.mkdtemp())
    (folder / "index.html").write_text(
        "<!doctype html><html><head><title>Other site</title></head><body><h1>Clinic site</h1>"
        f'<script src="{app_base}/widget.js" data-clinic-key="glow-medspa-public" async></script></body></html>'
    )
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(SimpleHTTPRequestHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()


def _open_widget(page) -> None:  # type: ignore[no-untyped-def]
    page.get_by_test_id("msa-launcher").click()
    page.get_by_test_id("msa-panel").wait_for(state="visible")


def _send(page, text_: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_test_id("msa-input").fill(text_)
    page.get_by_test_id("msa-send").click()


def _assistant_count(page) -> int:  # type: ignore[no-untyped-def]
    return page.locator('[data-testid="msa-message"][data-role="assistant"]').count()


def _wait_assistant(page, count: int, timeout_ms: int = 30_000) -> str:  # type: ignore[no-untyped-def]
    locator = page.locator('[data-testid="msa-message"][data-role="assistant"]')
    locator.nth(count - 1).wait_for(state="visible", timeout=timeout_ms)
    return locator.nth(count - 1).inner_text()


def test_demo_page_chat_price_question_booking_reload_and_injection(stack, owner_engine, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    _allow_origin(owner_engine, stack.base_url)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(stack.base_url + "/demo")
    _open_widget(page)

    _send(page, "do you do lip filler and what does it cost?")
    answer = _wait_assistant(page, 1)
    assert "$" in answer and "filler" in answer.lower()

    _send(page, "I'd like to book botox tomorrow afternoon")
    offered = _wait_assistant(page, 2)
    chips = page.get_by_test_id("msa-chip")
    chips.first.wait_for(state="visible", timeout=30_000)
    assert chips.count() >= 1, offered
    chips.first.click()
    confirm_prompt = _wait_assistant(page, 3)
    assert "confirm" in confirm_prompt.lower() or "yes" in confirm_prompt.lower()
    _send(page, "yes")
    booked = _wait_assistant(page, 4)
    assert "book" in booked.lower() or "confirmed" in booked.lower() or "deposit" in booked.lower()

    conversation_id = page.evaluate(
        "() => { for (const k of Object.keys(localStorage)) if (k.startsWith('msa-session:')) "
        "return JSON.parse(localStorage[k]).conversation_id || null; return null; }"
    )
    with stack.database.tenant_scope(1) as session:
        rows = session.execute(
            text(
                """SELECT a.status, s.category FROM appointments a JOIN services s ON s.id = a.service_id
               JOIN conversations c ON c.client_id = a.client_id
               WHERE c.channel = 'chat' AND a.created_at > now() - interval '5 minutes'
                 AND (CAST(:cid AS bigint) IS NULL OR c.id = :cid)"""
            ),
            {"cid": conversation_id},
        ).all()
    assert rows and rows[0][1] == "neurotoxin" and rows[0][0] in ("booked", "pending_deposit")

    injection = "<img src=x onerror=\"document.body.dataset.pwned='1'\"> hello"
    _send(page, injection)
    _wait_assistant(page, 5)
    user_bubbles = page.locator('[data-testid="msa-message"][data-role="user"]')
    assert injection in user_bubbles.last.inner_text()
    assert page.locator("#msa-root img").count() == 0
    assert page.evaluate("() => document.body.dataset.pwned") is None
    page.screenshot(path=str(ARTIFACTS / "widget-open.png"))

    before_reload = page.locator('[data-testid="msa-message"]').count()
    page.reload()
    _open_widget(page)
    page.locator('[data-testid="msa-message"]').nth(before_reload - 1).wait_for(state="visible", timeout=15_000)
    assert page.locator('[data-testid="msa-message"]').count() >= before_reload
    context.close()


def test_widget_on_another_origin_works_only_when_that_origin_is_allowed(stack, owner_engine, browser):
    with _other_origin_site(stack.base_url) as site:
        _allow_origin(owner_engine, site, allowed=False)
        context = browser.new_context()
        page = context.new_page()
        page.goto(site + "/index.html")
        _open_widget(page)
        page.get_by_test_id("msa-error").wait_for(state="visible", timeout=15_000)
        assert page.locator('[data-testid="msa-message"][data-role="assistant"]').count() == 0
        context.close()

        _allow_origin(owner_engine, site)
        stack.http.post(stack.base_url + "/webhooks/chat/session", json={"clinic_key": "nope"})  # refresh cache
        context = browser.new_context()
        page = context.new_page()
        page.goto(site + "/index.html")
        _open_widget(page)
        _send(page, "what are your hours?")
        reply = _wait_assistant(page, 1)
        assert reply
        context.close()
