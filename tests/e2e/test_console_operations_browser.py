"""The console's write features in a real browser (Debian's Chromium driven by Playwright): an owner builds a
campaign segment and previews it, writes and edits a knowledge-base article from the keyboard; a front-desk user
is refused the clinic settings (403, nothing of them in the page); the new pages have no serious or critical
axe-core violation and do not scroll sideways at desktop or phone width."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from domain.staff_access import StaffRole
from tests.e2e.test_console_browser import DESKTOP, PHONE, _axe_serious, _context, _sign_in, browser, console
from tests.support.console import GLOW, ConsoleStack, add_patient

pytestmark = pytest.mark.browser
__all__ = ["browser", "console"]  # the module-scoped fixtures of the console's browser tests, shared


def _tagged(console: ConsoleStack, tag: str, names: list[str]) -> None:
    for name in names:
        patient = add_patient(console.database, GLOW, name=name)
        with console.database.tenant_scope(GLOW) as session:
            session.execute(
                text("UPDATE clients SET tags = ARRAY[:t], marketing_consent = 'granted' WHERE id = :id"),
                {"t": tag, "id": patient.client_id},
            )


def _owner_page(console: ConsoleStack, browser: Any, viewport: dict[str, int] = DESKTOP, **kwargs: Any) -> Any:
    owner = console.add_staff(GLOW, StaffRole.OWNER)
    context = _context(browser, viewport, **kwargs)
    page = context.new_page()
    _sign_in(page, console, owner.email)
    page.wait_for_url(f"**/clinics/{GLOW}/inbox")
    return context, page


def test_an_owner_previews_a_campaign_segment(console, browser):
    tag = f"vip{uuid.uuid4().hex[:6]}"
    _tagged(console, tag, [f"Quinn {tag}", f"Rosa {tag}"])
    context, page = _owner_page(console, browser)
    page.get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Text").fill("Hi {first_name}, our spring menu is here. Reply to book!")
    page.get_by_label("Tagged (any of, comma-separated)").fill(tag)
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_test_id("campaign-preview")
    preview.wait_for()
    assert page.get_by_test_id("preview-matched").inner_text() == "2"
    assert page.get_by_test_id("preview-recipients").inner_text() == "2"
    samples = page.get_by_test_id("preview-samples").locator("li").all_inner_texts()
    assert sorted(s.split(",")[0] for s in samples) == ["Hi Quinn", "Hi Rosa"]
    assert page.get_by_label("Tagged (any of, comma-separated)").input_value() == tag, "the builder keeps its values"
    with console.database.tenant_scope(GLOW) as session:
        saved = session.execute(text("SELECT count(*) FROM campaigns WHERE segment->'tags' ? :t"), {"t": tag})
        assert saved.scalar_one() == 0, "a preview saves nothing"

    page.get_by_label("Name").fill(f"Spring {tag}")
    page.get_by_role("button", name="Save as draft").click()
    page.get_by_test_id("notice").wait_for()
    assert page.get_by_test_id("campaign-name").inner_text() == f"Spring {tag}"
    assert page.get_by_test_id("campaign-status").inner_text() == "draft"
    context.close()


def test_an_owner_writes_and_edits_a_knowledge_base_article_from_the_keyboard(console, browser):
    word = f"orchid{uuid.uuid4().hex[:6]}"
    context, page = _owner_page(console, browser)
    page.goto(console.base_url + f"/clinics/{GLOW}/kb")
    page.get_by_role("link", name="New article").click()
    page.get_by_label("Title").focus()
    page.keyboard.type(f"Gift cards {word}")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "body"
    page.keyboard.type("Gift cards are sold at the front desk.")
    page.get_by_role("button", name="Save article").focus()
    page.keyboard.press("Enter")
    page.get_by_test_id("notice").wait_for()
    assert page.get_by_test_id("kb-title").inner_text() == f"Gift cards {word}"

    page.get_by_label("Text").fill("Gift cards are sold at the front desk and never expire.")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_test_id("notice").wait_for()
    assert page.get_by_test_id("notice").inner_text() == "Saved."
    assert "never expire" in page.get_by_label("Text").input_value()
    with console.database.tenant_scope(GLOW) as session:
        body = session.execute(
            text("SELECT body FROM kb_documents WHERE slug = :s"), {"s": f"gift-cards-{word}"}
        ).scalar_one()
        chunks = session.execute(
            text(
                "SELECT string_agg(k.content, ' ') FROM kb_chunks k JOIN kb_documents d ON d.id = k.document_id "
                "WHERE d.slug = :s"
            ),
            {"s": f"gift-cards-{word}"},
        ).scalar_one()
    assert body.endswith("never expire.") and "never expire" in chunks, "re-chunked: searchable at once"

    page.get_by_label("Title").fill("")
    page.get_by_role("button", name="Save changes").click()
    # the browser's own check stops an empty required field; nothing was sent
    assert page.evaluate("() => document.getElementById('title').validity.valueMissing")
    context.close()


def test_a_front_desk_user_gets_403_on_the_clinic_settings(console, browser):
    desk = console.add_staff(GLOW, StaffRole.FRONT_DESK)
    context = _context(browser)
    page = context.new_page()
    _sign_in(page, console, desk.email)
    page.wait_for_url(f"**/clinics/{GLOW}/inbox")
    assert page.get_by_role("link", name="Settings").count() == 0, "not offered"
    assert page.get_by_role("link", name="Knowledge").count() == 1
    for path in ("settings", "staff", "campaigns/new"):
        response = page.goto(console.base_url + f"/clinics/{GLOW}/{path}")
        assert response is not None and response.status == 403, path
        assert page.get_by_test_id("error-status").inner_text().startswith("403")
        assert page.get_by_test_id("settings-form").count() == 0 and page.get_by_test_id("staff-list").count() == 0
    assert page.get_by_label("Opening hours").count() == 0
    context.close()


def test_the_new_pages_are_accessible_at_desktop_and_phone_width(console, browser):
    owner_http, csrf = console.sign_in(console.add_staff(GLOW, StaffRole.OWNER))
    headers = {"X-CSRF-Token": csrf, "Origin": console.base_url}
    article = owner_http.post(
        f"/api/v1/clinics/{GLOW}/kb/articles",
        json={"title": f"Aftercare {uuid.uuid4().hex[:6]}", "body": "Avoid the sun for two days."},
        headers=headers,
    ).json()
    campaign = owner_http.post(
        f"/api/v1/clinics/{GLOW}/campaigns", json={"name": "A11y", "template": "Hi {first_name}"}, headers=headers
    ).json()
    pages = {
        "campaigns": f"/clinics/{GLOW}/campaigns",
        "campaign-builder": f"/clinics/{GLOW}/campaigns/new",
        "campaign": f"/clinics/{GLOW}/campaigns/{campaign['id']}",
        "kb": f"/clinics/{GLOW}/kb",
        "kb-new": f"/clinics/{GLOW}/kb/new",
        "kb-article": f"/clinics/{GLOW}/kb/{article['id']}",
        "settings": f"/clinics/{GLOW}/settings",
        "staff": f"/clinics/{GLOW}/staff",
    }
    for viewport in (DESKTOP, PHONE):
        context, page = _owner_page(console, browser, viewport, bypass_csp=True)  # bypass only to inject axe-core
        for name, path in pages.items():
            response = page.goto(console.base_url + path)
            assert response is not None and response.status == 200, name
            violations = _axe_serious(page)
            assert violations == [], f"{name} at {viewport['width']}px: {violations}"
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} scrolls sideways at {viewport['width']}px"
        page.goto(console.base_url + pages["campaign"])
        page.get_by_role("button", name="Preview now").click()
        page.get_by_test_id("campaign-preview").wait_for()
        assert _axe_serious(page) == [], "the campaign page with its preview"
        context.close()
