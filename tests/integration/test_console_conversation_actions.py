"""The console's conversation actions over HTTP on the real database: take over, reply (queued in the outbox to
the patient), hand back — authentication, roles (a provider acts on their own patients only), tenancy (another
clinic's conversation is not found and stays untouched), input validation, CSRF, the audit log; the handoff
notification settings (owners only); and the live inbox's server-sent events."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from domain.staff_access import StaffRole
from medspa.services import Infrastructure
from tests.support.console import GLOW, HARBOR, ConsoleStack, add_patient, provider_ids, running_console
from tests.support.infra import wait_for

OWNER, FRONT_DESK, PROVIDER = StaffRole.OWNER, StaffRole.FRONT_DESK, StaffRole.PROVIDER


@pytest.fixture(scope="module")
def console(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    with running_console(infra, Path(tmp_path_factory.mktemp("console-actions")), with_oidc=False) as stack:
        yield stack


@pytest.fixture()
def harbor_settings(console: ConsoleStack) -> Iterator[None]:
    """Tests that set Harbor's notification settings leave none behind for later tests."""
    yield
    with console.database.tenant_scope(HARBOR) as session:
        session.execute(text("DELETE FROM handoff_notify_settings WHERE clinic_id = :c"), {"c": HARBOR})


def _state(console: ConsoleStack, clinic_id: int, conversation_id: int) -> dict:
    with console.database.tenant_scope(clinic_id) as session:
        return dict(
            session.execute(
                text("SELECT agent_state, handoff_reason, handoff_urgency, version FROM conversations WHERE id = :c"),
                {"c": conversation_id},
            )
            .mappings()
            .one()
        )


def _staff_texts(console: ConsoleStack, clinic_id: int, conversation_id: int) -> list[dict]:
    with console.database.tenant_scope(clinic_id) as session:
        return [
            dict(r)
            for r in session.execute(
                text(
                    """SELECT o.to_address, o.body, o.kind, o.channel, m.meta->>'staff' AS staff
                       FROM outbox o JOIN messages m ON m.id = (o.meta->>'message_id')::bigint
                       WHERE o.conversation_id = :c AND o.kind = 'staff' ORDER BY o.id"""
                ),
                {"c": conversation_id},
            ).mappings()
        ]


def _problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


def test_front_desk_takes_over_replies_and_hands_back_with_an_audit_trail(console):
    patient = add_patient(console.database, GLOW, name="Reply Patient")
    desk = console.add_staff(GLOW, FRONT_DESK)
    http, csrf = console.sign_in(desk)
    headers = {"X-CSRF-Token": csrf, "Origin": console.base_url}
    base = f"/api/v1/clinics/{GLOW}/conversations/{patient.conversation_id}"
    before = _state(console, GLOW, patient.conversation_id)

    taken = http.post(f"{base}/takeover", headers=headers)
    assert taken.status_code == 200, taken.text
    assert taken.json() | {"outbox_ids": []} == {
        "conversation_id": patient.conversation_id,
        "agent_state": "handoff",
        "handoff": True,
        "changed": True,
        "message_id": None,
        "outbox_ids": [],
    }
    state = _state(console, GLOW, patient.conversation_id)
    assert state["agent_state"] == "handoff" and state["version"] == before["version"] + 1, "running turns fenced out"
    assert http.post(f"{base}/takeover", headers=headers).json()["changed"] is False

    replied = http.post(f"{base}/replies", json={"text": "Hi, this is the front desk."}, headers=headers)
    assert replied.status_code == 202, replied.text
    assert len(replied.json()["outbox_ids"]) == 1 and replied.json()["message_id"]
    assert _staff_texts(console, GLOW, patient.conversation_id) == [
        {
            "to_address": patient.phone,
            "body": "Hi, this is the front desk.",
            "kind": "staff",
            "channel": "sms",
            "staff": "Front_Desk",
        }
    ]
    shown = http.get(f"{base}/messages").json()["items"]
    assert shown[0]["role"] == "staff" and shown[0]["body"] == "Hi, this is the front desk."

    back = http.post(f"{base}/handback", headers=headers)
    assert back.status_code == 200 and back.json()["agent_state"] == "idle" and back.json()["changed"] is True
    assert _state(console, GLOW, patient.conversation_id)["agent_state"] == "idle"
    assert http.post(f"{base}/handback", headers=headers).json()["changed"] is False

    owner, _ = console.sign_in(console.add_staff(GLOW, OWNER))
    log = owner.get(f"/api/v1/clinics/{GLOW}/audit", params={"client_id": patient.client_id}).json()["items"]
    actions = [e["action"] for e in reversed(log) if e["staff_user_id"] == desk.id]
    assert actions[:3] == ["conversation.taken_over", "conversation.taken_over", "conversation.replied"]
    assert actions.count("conversation.handed_back") == 2
    assert all("front desk" not in json.dumps(e["detail"]) for e in log), "no message bodies in the audit log"


def test_a_provider_acts_on_their_own_patients_only(console):
    mine_id, other_id = provider_ids(console.database, GLOW)[:2]
    mine = add_patient(console.database, GLOW, provider_id=mine_id, handoff="normal")
    other = add_patient(console.database, GLOW, provider_id=other_id, handoff="normal")
    http, csrf = console.sign_in(console.add_staff(GLOW, PROVIDER, provider_id=mine_id))
    headers = {"X-CSRF-Token": csrf, "Origin": console.base_url}
    base = f"/api/v1/clinics/{GLOW}/conversations"
    refused = _problem(http.post(f"{base}/{other.conversation_id}/replies", json={"text": "hi"}, headers=headers), 403)
    assert "appointment with you" in refused["detail"]
    _problem(http.post(f"{base}/{other.conversation_id}/handback", headers=headers), 403)
    assert _state(console, GLOW, other.conversation_id)["agent_state"] == "handoff"
    assert _staff_texts(console, GLOW, other.conversation_id) == []
    ok = http.post(f"{base}/{mine.conversation_id}/replies", json={"text": "Your provider here"}, headers=headers)
    assert ok.status_code == 202, ok.text


def test_another_clinics_conversation_is_not_found_and_untouched(console):
    harbor = add_patient(console.database, HARBOR, handoff="urgent")
    http, csrf = console.sign_in(console.add_staff(GLOW, OWNER))
    headers = {"X-CSRF-Token": csrf, "Origin": console.base_url}
    before = _state(console, HARBOR, harbor.conversation_id)
    base = f"/api/v1/clinics/{GLOW}/conversations/{harbor.conversation_id}"
    for path, body in (("takeover", None), ("replies", {"text": "hello"}), ("handback", None)):
        problem = _problem(http.post(f"{base}/{path}", json=body, headers=headers), 404)
        assert "hello" not in json.dumps(problem) and harbor.name not in json.dumps(problem)
    assert _state(console, HARBOR, harbor.conversation_id) == before
    assert _staff_texts(console, HARBOR, harbor.conversation_id) == []
    _problem(
        http.post(f"/api/v1/clinics/{HARBOR}/conversations/{harbor.conversation_id}/handback", headers=headers), 403
    )


def test_replies_are_validated_and_a_patient_who_cannot_be_texted_gets_nothing(console):
    patient = add_patient(console.database, GLOW)
    http, csrf = console.sign_in(console.add_staff(GLOW, FRONT_DESK))
    headers = {"X-CSRF-Token": csrf, "Origin": console.base_url}
    url = f"/api/v1/clinics/{GLOW}/conversations/{patient.conversation_id}/replies"
    assert _problem(http.post(url, json={"text": ""}, headers=headers), 400)["errors"][0]["field"] == "text"
    assert _problem(http.post(url, json={"text": "   "}, headers=headers), 400)["errors"][0]["field"] == "text"
    assert _problem(http.post(url, json={"text": "x" * 1601}, headers=headers), 400)["errors"][0]["field"] == "text"
    assert (
        _problem(http.post(url, json={"text": "hi", "as": "Dr Who"}, headers=headers), 400)["errors"][0]["field"]
        == "as"
    )
    assert _problem(http.post(url, json={}, headers=headers), 400)["errors"][0]["field"] == "text"
    _problem(http.post(url, content=b"text=hi", headers=headers), 415)
    with console.database.tenant_scope(GLOW) as session:
        session.execute(text("UPDATE clients SET consent_state = 'opted_out' WHERE id = :c"), {"c": patient.client_id})
    refused = _problem(http.post(url, json={"text": "are you there?"}, headers=headers), 409)
    assert "opted out" in refused["detail"]
    assert _staff_texts(console, GLOW, patient.conversation_id) == []
    assert _state(console, GLOW, patient.conversation_id)["agent_state"] == "idle", "nothing changed"


def test_cookie_posts_need_the_csrf_token_and_form_posts_too(console):
    patient = add_patient(console.database, GLOW, handoff="normal")
    http, csrf = console.sign_in(console.add_staff(GLOW, FRONT_DESK))
    api = f"/api/v1/clinics/{GLOW}/conversations/{patient.conversation_id}"
    assert _problem(http.post(f"{api}/handback"), 403)["type"].endswith("csrf")
    page = f"/clinics/{GLOW}/conversations/{patient.conversation_id}"
    assert http.post(f"{page}/handback", data={}).status_code == 403
    assert http.post(f"{page}/reply", data={"text": "hi", "csrf_token": "wrong"}).status_code == 403
    assert _state(console, GLOW, patient.conversation_id)["agent_state"] == "handoff"
    done = http.post(f"{page}/reply", data={"text": "On it", "csrf_token": csrf}, headers={"Origin": console.base_url})
    assert done.status_code == 303 and done.headers["location"] == f"{page}?done=replied"
    shown = http.get(done.headers["location"])
    assert shown.status_code == 200 and "Reply queued" in shown.text and "On it" in shown.text
    assert [t["body"] for t in _staff_texts(console, GLOW, patient.conversation_id)] == ["On it"]
    anonymous = console.client().post(f"{page}/handback", data={"csrf_token": csrf})
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/sign-in")


def test_only_owners_set_who_hears_about_handoffs(console, harbor_settings):
    desk, desk_csrf = console.sign_in(console.add_staff(GLOW, FRONT_DESK))
    url = f"/api/v1/clinics/{HARBOR}/notification-settings"
    owner, csrf = console.sign_in(console.add_staff(HARBOR, OWNER))
    headers = {"X-CSRF-Token": csrf, "Origin": console.base_url}
    _problem(desk.get(f"/api/v1/clinics/{GLOW}/notification-settings"), 403)
    body = {"sms_numbers": ["+14155550142"], "emails": ["Desk@Harbor.example"], "quiet_hours": "22:00-06:30"}
    saved = owner.put(url, json=body, headers=headers)
    assert saved.status_code == 200, saved.text
    assert saved.json() | {"recent": []} == {
        "sms_numbers": ["+14155550142"],
        "emails": ["desk@harbor.example"],
        "quiet_hours": "22:00-06:30",
        "batch_window_s": None,
        "default_quiet_hours": console.settings.handoff_notify_quiet_hours,
        "default_batch_window_s": console.settings.handoff_notify_batch_s,
        "recent": [],
    }
    assert owner.get(url).json()["quiet_hours"] == "22:00-06:30"
    for bad, field in (
        ({"sms_numbers": ["415-555-0142"]}, "sms_numbers"),
        ({"emails": ["not-an-address"]}, "emails"),
        ({"quiet_hours": "25:00-07:00"}, "quiet_hours"),
        ({"batch_window_s": -1}, "batch_window_s"),
    ):
        assert _problem(owner.put(url, json=bad, headers=headers), 400)["errors"][0]["field"] == field
    assert owner.get(url).json()["sms_numbers"] == ["+14155550142"], "a refused update changes nothing"
    assert owner.put(url, json={"quiet_hours": ""}, headers=headers).json()["quiet_hours"] == ""
    _problem(owner.put(f"/api/v1/clinics/{GLOW}/notification-settings", json={}, headers=headers), 403)
    _problem(
        desk.put(f"/api/v1/clinics/{GLOW}/notification-settings", json={}, headers={"X-CSRF-Token": desk_csrf}), 403
    )


class _EventReader:
    """Reads a server-sent event stream in a thread and keeps the parsed events."""

    def __init__(self, http: httpx.Client, url: str) -> None:
        self.events: list[dict] = []
        self.status: int | None = None
        self._http, self._url = http, url
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with self._http.stream("GET", self._url, timeout=httpx.Timeout(60, read=60)) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except httpx.HTTPError:
            pass


def test_the_live_inbox_streams_events_and_a_provider_learns_only_their_own_patients_ids(console):
    mine_id = provider_ids(console.database, GLOW)[0]
    patient = add_patient(console.database, GLOW, provider_id=mine_id, handoff="normal")
    desk, csrf = console.sign_in(console.add_staff(GLOW, FRONT_DESK))
    provider, _ = console.sign_in(console.add_staff(GLOW, PROVIDER, provider_id=mine_id))
    assert console.client().get(f"/clinics/{GLOW}/inbox/events").status_code == 401
    assert desk.get(f"/clinics/{HARBOR}/inbox/events").status_code == 403
    desk_events = _EventReader(desk, f"/clinics/{GLOW}/inbox/events")
    provider_events = _EventReader(provider, f"/clinics/{GLOW}/inbox/events")
    wait_for(lambda: desk_events.status == 200 and provider_events.status == 200, 10, what="the streams to open")
    # The streams start from "now": post until the event arrives (a post before the first read is not replayed).
    url = f"/api/v1/clinics/{GLOW}/conversations/{patient.conversation_id}/replies"

    def sent() -> bool:
        desk.post(url, json={"text": "ping"}, headers={"X-CSRF-Token": csrf, "Origin": console.base_url})
        return any(e["conversation_id"] == patient.conversation_id for e in desk_events.events)

    wait_for(sent, 20, what="the desk's stream to carry the reply event")
    mine = [e for e in desk_events.events if e["conversation_id"] == patient.conversation_id]
    assert mine[0] == {"kind": "replied", "conversation_id": patient.conversation_id, "urgency": None}
    wait_for(
        lambda: any(e["conversation_id"] == patient.conversation_id for e in provider_events.events),
        20,
        what="the provider's event about their own patient",
    )
    other = add_patient(console.database, GLOW, handoff="normal")
    other_url = f"/api/v1/clinics/{GLOW}/conversations/{other.conversation_id}/replies"
    assert desk.post(other_url, json={"text": "hi"}, headers={"X-CSRF-Token": csrf}).status_code == 202
    wait_for(
        lambda: any(e["conversation_id"] == other.conversation_id for e in desk_events.events),
        20,
        what="the event about another provider's patient",
    )
    wait_for(lambda: len(provider_events.events) >= len(desk_events.events), 20, what="the provider's copy")
    assert other.conversation_id not in {e["conversation_id"] for e in provider_events.events}
    assert None in {e["conversation_id"] for e in provider_events.events}, "told something changed, not what"


def test_the_owners_notification_page_saves_through_the_same_validation(console, harbor_settings):
    owner, csrf = console.sign_in(console.add_staff(HARBOR, OWNER))
    page = f"/clinics/{HARBOR}/notifications"
    shown = owner.get(page)
    assert shown.status_code == 200 and 'data-testid="notification-settings"' in shown.text
    assert owner.post(page, data={"sms_numbers": "+14155550177"}).status_code == 403, "no CSRF token"
    form = {
        "csrf_token": csrf,
        "sms_numbers": "+14155550177\n+14155550178",
        "emails": "a@harbor.example, b@harbor.example",
        "quiet_hours": "none",
        "batch_window_s": "30",
    }
    saved = owner.post(page, data=form, headers={"Origin": console.base_url})
    assert saved.status_code == 303 and saved.headers["location"] == f"{page}?saved=1"
    api = owner.get(f"/api/v1/clinics/{HARBOR}/notification-settings").json()
    assert (api["sms_numbers"], api["emails"], api["quiet_hours"], api["batch_window_s"]) == (
        ["+14155550177", "+14155550178"],
        ["a@harbor.example", "b@harbor.example"],
        "",
        30,
    )
    bad = owner.post(page, data={**form, "quiet_hours": "late"}, headers={"Origin": console.base_url})
    assert bad.status_code == 400 and "quiet_hours" in bad.text
    desk, _ = console.sign_in(console.add_staff(HARBOR, FRONT_DESK))
    assert desk.get(page).status_code == 403 and "Notifications" not in desk.get(f"/clinics/{HARBOR}/inbox").text
