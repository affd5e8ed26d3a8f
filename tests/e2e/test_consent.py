"""Consent is scoped and never widened by accident (real webhook, real worker, real CLI, real Postgres).

Transactional consent (conversation, reminders) and marketing consent are separate facts: STOP revokes,
START restores what STOP revoked and never more, a bare "yes" re-subscribes nobody, a marketing grant needs
its own wording and source, and a web form can't opt an arbitrary phone in.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from domain.audience import SegmentFilter
from tests.e2e.test_cli_clinic import assert_one_line_error, medspa
from tests.e2e.test_emergencies import EMERGENCY
from tests.support.infra import wait_for
from tests.support.stack import GLOW_CLINIC_ID, GLOW_NUMBER, Stack
from worker.campaigns.segments import preview

TEMPLATE = "Hi {first_name}, spring offers at {clinic_name}!"


def _phone() -> str:
    return "+1628" + str(5_000_000 + uuid.uuid4().int % 4_000_000)


def _client(stack: Stack, phone: str, *, tag: str, marketing: str, clinic_id: int = GLOW_CLINIC_ID) -> int:
    with stack.database.tenant_scope(clinic_id) as session:
        return int(
            session.execute(
                text(
                    """INSERT INTO clients (clinic_id, phone_e164, name, consent_state, marketing_consent, tags)
                       VALUES (:c, :p, 'Sam Tester', 'opted_in', :m, ARRAY[:tag]) RETURNING id"""
                ),
                {"c": clinic_id, "p": phone, "m": marketing, "tag": tag},
            ).scalar_one()
        )


def _consent(stack: Stack, phone: str, clinic_id: int = GLOW_CLINIC_ID) -> tuple[str, str, list[tuple[str, str]]]:
    with stack.database.tenant_scope(clinic_id) as session:
        state, marketing, client_id = session.execute(
            text("SELECT consent_state, marketing_consent, id FROM clients WHERE phone_e164 = :p"), {"p": phone}
        ).one()
        ledger = session.execute(
            text("SELECT kind, scope FROM consent_events WHERE client_id = :id ORDER BY id"), {"id": client_id}
        ).all()
    return state, marketing, [(str(k), str(s)) for k, s in ledger]


def _campaign_preview(stack: Stack, tag: str):
    noon = datetime.now(UTC).replace(hour=20, minute=0)  # 12:00/13:00 in Los Angeles: inside 08:00-21:00
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        return preview(session, GLOW_CLINIC_ID, TEMPLATE, SegmentFilter(tags=(tag,)), noon)


def test_stop_then_start_restores_what_stop_revoked_and_never_marketing(stack):
    tag = "consent-" + uuid.uuid4().hex[:8]
    reminders_only, offers_too = _phone(), _phone()
    _client(stack, reminders_only, tag=tag, marketing="none")
    _client(stack, offers_too, tag=tag, marketing="granted")
    assert _campaign_preview(stack, tag).recipients == 1

    for phone in (reminders_only, offers_too):
        stack.send_sms(GLOW_NUMBER, phone, "STOP")
        stack.wait_replies(phone, 1)
    stopped = _campaign_preview(stack, tag)
    assert (stopped.recipients, stopped.excluded["opted_out"]) == (0, 2)

    for phone in (reminders_only, offers_too):
        stack.send_sms(GLOW_NUMBER, phone, "START")
    only_reminders = stack.wait_replies(reminders_only, 2)[1]
    with_offers = stack.wait_replies(offers_too, 2)[1]
    restarted = _campaign_preview(stack, tag)
    assert (restarted.recipients, restarted.excluded["no_consent"]) == (1, 1), "START granted no marketing"
    assert "appointment texts" in only_reminders and "offers" not in only_reminders
    assert "appointment texts and offers" in with_offers
    assert _consent(stack, reminders_only) == (
        "opted_in",
        "none",
        [("opt_out", "all"), ("opt_in", "transactional")],
    )
    assert _consent(stack, offers_too)[:2] == ("opted_in", "granted")


def test_a_bare_yes_after_stop_does_not_resubscribe(stack):
    phone = _phone()
    stack.send_sms(GLOW_NUMBER, phone, "STOP")
    stack.wait_replies(phone, 1)
    for text_ in ("yes", "Yes please!", "si"):
        stack.send_sms(GLOW_NUMBER, phone, text_)
    stack.wait_idle()
    assert len(stack.replies_to(phone)) == 1, stack.replies_to(phone)
    assert _consent(stack, phone) == ("opted_out", "none", [("opt_out", "all")])


def test_a_marketing_grant_needs_its_wording_and_is_recorded_with_its_source(stack, infra):
    tag = "consent-" + uuid.uuid4().hex[:8]
    phone = _phone()
    client_id = _client(stack, phone, tag=tag, marketing="none")
    base = ("clients", "consent", str(client_id), "--clinic", "glow-medspa", "--opt-in", "--scope", "marketing")

    assert_one_line_error(medspa(infra, *base, "--wording", "  "), "--wording")
    assert _campaign_preview(stack, tag).recipients == 0
    wording = "Yes, text me Glow MedSpa offers and promotions (front desk, signed form #12)."
    granted = medspa(infra, *base, "--wording", wording)
    assert granted.returncode == 0, granted.stderr
    assert "marketing: yes" in granted.stdout
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        ledger = session.execute(
            text("SELECT kind, scope, source, wording FROM consent_events WHERE client_id = :id"), {"id": client_id}
        ).all()
    assert [tuple(r) for r in ledger] == [("opt_in", "marketing", "staff", wording)]
    assert _campaign_preview(stack, tag).recipients == 1


def _own_clinic(stack: Stack, owner_engine) -> dict:
    """A clinic of its own with an on-call phone and a chat origin (pages and STOPs must not touch the demo's)."""
    slug = "consent-" + uuid.uuid4().hex[:8]
    number, oncall = _phone(), _phone()
    with owner_engine.begin() as conn:
        clinic_id = conn.execute(
            text(
                """INSERT INTO clinics (slug, name, timezone, public_key, phone, oncall_phone, policies, chat_origins)
                   SELECT :slug, 'Consent Spa', timezone, :slug, '+14155550000', :oncall, policies,
                          '["http://consent.example"]'::jsonb
                   FROM clinics WHERE id = 1 RETURNING id"""
            ),
            {"slug": slug, "oncall": oncall},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO clinic_phone_numbers (clinic_id, e164) VALUES (:c, :n)"), {"c": clinic_id, "n": number}
        )
    return {"id": int(clinic_id), "slug": slug, "number": number, "oncall": oncall}


def test_the_chat_handover_form_cannot_opt_a_phone_in(stack, owner_engine):
    clinic = _own_clinic(stack, owner_engine)
    # The on-call phone texted STOP to the clinic's number: no more texts to it from this clinic.
    stack.send_sms(clinic["number"], clinic["oncall"], "STOP")
    stack.wait_replies(clinic["oncall"], 1)

    # Anyone on the clinic's web chat types that number into the "continue by text" form and ticks the box.
    chat = stack.base_url + "/webhooks/chat"
    origin = {"Origin": "http://consent.example"}
    session = stack.http.post(chat + "/session", json={"clinic_key": clinic["slug"]}, headers=origin).json()
    handover = stack.http.post(
        chat + "/handover",
        headers={"Authorization": f"Bearer {session['session_token']}", **origin},
        json={"phone": clinic["oncall"], "consent": True, "consent_text": "I agree to receive texts."},
    )
    assert handover.status_code == 200, handover.text
    assert _consent(stack, clinic["oncall"], clinic["id"])[0] == "opted_out"
    with stack.database.tenant_scope(clinic["id"]) as db:
        recorded = db.execute(
            text("SELECT kind, source FROM consent_events WHERE phone_e164 = :p ORDER BY id"), {"p": clinic["oncall"]}
        ).all()
    assert [tuple(r) for r in recorded] == [("opt_out", "sms_keyword"), ("request", "web_form")]

    # So the number's own STOP still stands: the next page to it is suppressed, not sent.
    patient = _phone()
    stack.send_sms(clinic["number"], patient, EMERGENCY)
    stack.wait_replies(patient, 1)

    def page_status() -> str | None:
        with stack.database.tenant_scope(clinic["id"]) as db:
            return db.execute(
                text("SELECT status FROM outbox WHERE kind = 'notification' AND to_address = :p"),
                {"p": clinic["oncall"]},
            ).scalar_one_or_none()

    assert wait_for(lambda: page_status() in ("suppressed", "sent"), 30, what="the page's fate") and (
        page_status() == "suppressed"
    )
    assert len(stack.replies_to(clinic["oncall"])) == 1  # only the STOP confirmation
