"""A front desk books and completes a visit from the calendar page in a real browser (Debian's Chromium driven by
Playwright): the Book form, Move, Check in, Complete with the amount — the same handlers as the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from domain.staff_access import StaffRole
from medspa.services import Infrastructure
from tests.e2e.test_console_browser import _context, _sign_in
from tests.e2e.test_widget_browser import CHROMIUM, LAUNCH_ARGS
from tests.integration.test_console_calendar import _clinic, _free_soon, _open_slot
from tests.support.console import GLOW, ConsoleStack, add_patient, running_console

pytestmark = pytest.mark.browser


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
    with running_console(infra, Path(tmp_path_factory.mktemp("console-calendar-browser")), with_oidc=False) as stack:
        yield stack


def _visit(console: ConsoleStack, client_id: int) -> dict[str, Any]:
    with console.database.tenant_scope(GLOW) as session:
        return dict(
            session.execute(
                text("SELECT id, status, starts_at, amount_charged_cents FROM appointments WHERE client_id = :c"),
                {"c": client_id},
            )
            .mappings()
            .one()
        )


def test_front_desk_books_and_completes_a_visit_from_the_calendar(console, browser):
    clinic = _clinic(console, GLOW)
    patient = add_patient(console.database, GLOW, name="Cora Calendar")
    start, provider_id, service_id = _open_slot(console, "consultation")
    local = start.astimezone(clinic.tz)
    desk = console.add_staff(GLOW, StaffRole.FRONT_DESK)
    context = _context(browser)
    page = context.new_page()
    _sign_in(page, console, desk.email)
    page.wait_for_url(f"**/clinics/{GLOW}/inbox")
    page.goto(console.base_url + f"/clinics/{GLOW}/calendar?date={local.date().isoformat()}")

    book = page.get_by_test_id("book-form")
    book.get_by_label("Client id").fill(str(patient.client_id))
    book.get_by_label("Service").select_option(str(service_id))
    book.get_by_label("Provider").select_option(str(provider_id))
    book.get_by_label("Start (clinic time)").fill(local.strftime("%Y-%m-%dT%H:%M"))
    book.get_by_role("button", name="Book").click()
    page.wait_for_url("**notice=booked")
    assert page.get_by_test_id("notice").inner_text() == "Booked."
    entry = page.get_by_test_id("calendar-entry").filter(has_text=patient.name)
    assert entry.count() == 1 and _visit(console, patient.client_id)["starts_at"] == start

    soon = _free_soon(console, provider_id, 60).astimezone(clinic.tz)
    entry.locator("summary").click()
    entry.get_by_label("New start").fill(soon.strftime("%Y-%m-%dT%H:%M"))
    entry.get_by_role("button", name="Move").click()
    page.wait_for_url("**notice=moved")
    assert _visit(console, patient.client_id)["starts_at"] == soon

    page.goto(console.base_url + f"/clinics/{GLOW}/calendar?date={soon.date().isoformat()}")
    entry = page.get_by_test_id("calendar-entry").filter(has_text=patient.name)
    entry.locator("summary").click()
    entry.get_by_role("button", name="Check in").click()
    page.wait_for_url("**notice=checked-in")
    entry = page.get_by_test_id("calendar-entry").filter(has_text=patient.name)
    assert "checked in" in entry.inner_text().lower()
    entry.locator("summary").click()
    entry.get_by_label("Amount charged").fill("450")
    entry.get_by_label("What was done").fill("consultation and plan")
    entry.get_by_role("button", name="Complete").click()
    page.wait_for_url("**notice=completed")
    visit = _visit(console, patient.client_id)
    assert visit["status"] == "completed" and visit["amount_charged_cents"] == 45000
    assert "completed" in page.get_by_test_id("calendar-entry").filter(has_text=patient.name).inner_text().lower()
    context.close()
