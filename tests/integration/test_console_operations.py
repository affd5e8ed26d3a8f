"""The console's write features over HTTP on the real database: campaigns (preview, create, send, pause, resume,
cancel, report), knowledge-base articles (create, edit, delete; the embedding job handed to the workers), clinic
settings (validated like the clinic file), staff management — each with authentication, roles, tenancy (another
clinic's ids answer 404, its URLs 403) and clear problem details; the pages' forms post through the same code."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from console import staff_admin
from console.api import endpoints
from console.audit import Actor
from domain.staff_access import Permission, StaffRole, permissions_of
from medspa.services import Infrastructure
from tests.support.console import GLOW, HARBOR, PASSWORD, ConsoleStack, add_patient, provider_ids, running_console

OWNER, MANAGER, FRONT_DESK, PROVIDER = StaffRole.OWNER, StaffRole.MANAGER, StaffRole.FRONT_DESK, StaffRole.PROVIDER
OPERATOR = Actor(None, "cli")  # `medspa staff-users` on the server


@pytest.fixture(scope="module")
def console(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    with running_console(infra, Path(tmp_path_factory.mktemp("console-ops")), with_oidc=False) as stack:
        yield stack


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"]
    return body


def _signed_in(console: ConsoleStack, clinic: int, role: StaffRole, **kwargs: Any) -> tuple[Any, dict[str, str]]:
    http, csrf = console.sign_in(console.add_staff(clinic, role, **kwargs))
    return http, {"X-CSRF-Token": csrf, "Origin": console.base_url}


def _audit(console: ConsoleStack, clinic: int, action: str, target_id: int) -> int:
    with console.database.tenant_scope(clinic) as session:
        return int(
            session.execute(
                text("SELECT count(*) FROM staff_audit_log WHERE action = :a AND target_id = :t"),
                {"a": action, "t": target_id},
            ).scalar_one()
        )


def _tagged_patients(console: ConsoleStack, clinic: int, tag: str, names: list[str], granted: list[bool]) -> None:
    for name, marketing in zip(names, granted, strict=True):
        patient = add_patient(console.database, clinic, name=name)
        with console.database.tenant_scope(clinic) as session:
            session.execute(
                text("UPDATE clients SET tags = ARRAY[:tag], marketing_consent = :m WHERE id = :id"),
                {"tag": tag, "m": "granted" if marketing else "none", "id": patient.client_id},
            )


# ------------------------------------------------------------------ every write endpoint and every role
WRITES = [
    s
    for s in endpoints()
    if s.permission
    in (Permission.CAMPAIGNS_MANAGE, Permission.KB_MANAGE, Permission.SETTINGS_MANAGE, Permission.STAFF_MANAGE)
]


@pytest.mark.parametrize("role", [MANAGER, FRONT_DESK, PROVIDER])
def test_each_write_endpoint_refuses_a_role_without_its_permission(console, role):
    assert len(WRITES) >= 20
    provider = provider_ids(console.database, GLOW)[0] if role == PROVIDER else None
    http, headers = _signed_in(console, GLOW, role, provider_id=provider)
    for spec in WRITES:
        if spec.permission in permissions_of(role):
            continue
        path = "/api/v1" + re.sub(
            r"\{(\w+)(?::\w+)?\}", lambda m: str(GLOW if m.group(1) == "clinic_id" else 1), spec.path
        )
        refused = _problem(http.request(spec.method, path, json={}, headers=headers), 403)
        assert spec.permission.value in refused["detail"], (spec.method, spec.path)


# ------------------------------------------------------------------ campaigns
def test_an_owner_previews_a_segment_creates_sends_pauses_and_cancels_a_campaign(console, infra):
    tag = f"ops-{uuid.uuid4().hex[:8]}"
    _tagged_patients(console, GLOW, tag, [f"Nora {tag}", f"Omar {tag}", f"Pia {tag}"], [True, True, False])
    http, headers = _signed_in(console, GLOW, OWNER)
    base = f"/api/v1/clinics/{GLOW}/campaigns"
    request = {"template": "Hi {first_name}, spring openings at {clinic_name}!", "segment": {"tags": [tag]}}

    preview = http.post(f"{base}/preview", json=request, headers=headers)
    assert preview.status_code == 200, preview.text
    result = preview.json()
    assert result["matched"] == 3
    assert result["recipients"] + result["excluded"]["no_consent"] == 3 and result["excluded"]["no_consent"] == 1
    assert len(result["samples"]) == result["recipients"] == 2
    assert all(s.startswith("Hi N") or s.startswith("Hi O") for s in result["samples"]) and result["segments"] >= 2
    assert f"tagged {tag}" in result["segment"]

    created = http.post(base, json={**request, "name": "Spring opening", "rate_cap_per_s": 5}, headers=headers)
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert campaign["status"] == "draft" and campaign["segment"] == {"tags": [tag]}
    cid = campaign["id"]
    assert http.get(f"{base}/{cid}").json()["segment_description"] == f"tagged {tag}"

    sent = http.post(f"{base}/{cid}/send", headers=headers)
    assert sent.status_code == 200 and sent.json()["status"] == "sending", sent.text
    queued = _queued(infra, "run_campaign_slice")
    assert [GLOW, cid] in [m["args"][:2] for m in queued], "the runner was handed to the workers after the commit"
    again = _problem(http.post(f"{base}/{cid}/send", headers=headers), 409)
    assert "sending" in again["detail"]
    assert http.post(f"{base}/{cid}/pause", headers=headers).json()["status"] == "paused"
    assert http.post(f"{base}/{cid}/resume", headers=headers).json()["status"] == "sending"
    cancelled = http.post(f"{base}/{cid}/cancel", headers=headers)
    assert cancelled.json()["status"] == "cancelled"
    _problem(http.post(f"{base}/{cid}/cancel", headers=headers), 409)
    report = http.get(f"{base}/{cid}/report").json()
    assert report["status"] == "cancelled" and report["recipients"] == sum(report["breakdown"].values())
    for action in ("created", "sent", "paused", "resumed", "cancelled"):
        assert _audit(console, GLOW, f"campaign.{action}", cid) == 1, action


def _queued(infra: Infrastructure, actor: str) -> list[dict[str, Any]]:
    """Messages for ``actor`` waiting on the bulk queue (nothing consumes it in this module)."""
    client = redis.Redis.from_url(infra.redis_url)
    try:
        messages = [json.loads(raw) for raw in client.hvals("dramatiq:bulk.msgs")]
    finally:
        client.close()
    return [m for m in messages if m.get("actor_name") == actor]


def test_a_campaign_scheduled_in_clinic_local_time_and_the_builders_mistakes(console):
    http, headers = _signed_in(console, GLOW, OWNER)
    base = f"/api/v1/clinics/{GLOW}/campaigns"
    body = _problem(http.post(f"{base}/preview", json={"template": "Hi {nickname}"}, headers=headers), 400)
    assert body["errors"][0]["field"] == "template" and "nickname" in body["detail"]
    body = _problem(
        http.post(
            f"{base}/preview",
            json={"template": "Hi", "segment": {"last_visit_after": "2030-01-01", "last_visit_before": "2029-01-01"}},
            headers=headers,
        ),
        400,
    )
    assert body["errors"][0]["field"] == "segment" and "last_visit_after" in body["detail"]
    body = _problem(http.post(f"{base}/preview", json={"template": "Hi", "segment": {"age": 3}}, headers=headers), 400)
    assert body["errors"][0]["field"] == "segment.age"
    body = _problem(http.post(base, json={"template": "Hi", "name": "  "}, headers=headers), 400)
    assert body["errors"][0]["field"] == "name"

    cid = http.post(base, json={"template": "Hi {first_name}", "name": "Later"}, headers=headers).json()["id"]
    scheduled = http.post(f"{base}/{cid}/schedule", json={"at": "2031-05-04T10:00:00"}, headers=headers).json()
    assert scheduled["status"] == "scheduled"
    at = datetime.fromisoformat(scheduled["scheduled_at"])
    assert at == datetime(2031, 5, 4, 17, 0, tzinfo=UTC), "10:00 in Los Angeles"
    _problem(http.post(f"{base}/{cid}/schedule", json={"at": "next tuesday"}, headers=headers), 400)
    _problem(http.post(f"{base}/{cid}/resume", headers=headers), 409)


def test_campaign_roles_and_tenancy(console):
    owner, headers = _signed_in(console, GLOW, OWNER)
    cid = owner.post(
        f"/api/v1/clinics/{GLOW}/campaigns", json={"template": "Hi", "name": "Roles"}, headers=headers
    ).json()["id"]
    manager, manager_headers = _signed_in(console, GLOW, MANAGER)
    assert manager.get(f"/api/v1/clinics/{GLOW}/campaigns/{cid}").status_code == 200, "managers read campaigns"
    for path in ("campaigns/preview", "campaigns", f"campaigns/{cid}/send", f"campaigns/{cid}/cancel"):
        refused = _problem(
            manager.post(
                f"/api/v1/clinics/{GLOW}/{path}", json={"template": "x", "name": "x"}, headers=manager_headers
            ),
            403,
        )
        assert "campaigns:manage" in refused["detail"]
    desk, _ = _signed_in(console, GLOW, FRONT_DESK)
    _problem(desk.get(f"/api/v1/clinics/{GLOW}/campaigns/{cid}"), 403)
    harbor, harbor_headers = _signed_in(console, HARBOR, OWNER)
    _problem(harbor.get(f"/api/v1/clinics/{HARBOR}/campaigns/{cid}"), 404)
    _problem(harbor.post(f"/api/v1/clinics/{HARBOR}/campaigns/{cid}/send", headers=harbor_headers), 404)
    assert owner.get(f"/api/v1/clinics/{GLOW}/campaigns/{cid}").json()["status"] == "draft", "untouched"


# ------------------------------------------------------------------ knowledge base
def test_knowledge_articles_are_created_edited_and_deleted_and_embedded_by_the_workers(console, infra):
    http, headers = _signed_in(console, GLOW, MANAGER)
    base = f"/api/v1/clinics/{GLOW}/kb/articles"
    word = f"zeolite{uuid.uuid4().hex[:6]}"
    created = http.post(base, json={"title": f"Gift cards {word}", "body": "We sell gift cards."}, headers=headers)
    assert created.status_code == 201, created.text
    article = created.json()
    assert article["slug"] == f"gift-cards-{word}" and article["chunks"] == 1 and article["embedding"] == "queued"
    assert [GLOW, article["id"]] in [m["args"] for m in _queued(infra, "embed_kb_document")]
    listed = http.get(base, params={"q": word}).json()["items"]
    assert [a["id"] for a in listed] == [article["id"]]

    duplicate = _problem(http.post(base, json={"title": f"Gift cards {word}", "body": "x"}, headers=headers), 409)
    assert duplicate["errors"][0]["field"] == "slug"
    body = "Gift cards never expire.\n\nThey can be used for any treatment."
    edited = http.put(f"{base}/{article['id']}", json={"title": "Gift cards", "body": body}, headers=headers).json()
    assert edited["changed"] and edited["slug"] == article["slug"]
    assert http.get(f"{base}/{article['id']}").json()["body"] == body
    same = http.put(f"{base}/{article['id']}", json={"title": "Gift cards", "body": body}, headers=headers).json()
    assert not same["changed"] and same["embedding"] == "not needed"
    with console.database.tenant_scope(GLOW) as session:
        chunks = session.execute(
            text("SELECT content FROM kb_chunks WHERE document_id = :d"), {"d": article["id"]}
        ).scalars()
        assert "never expire" in " ".join(chunks)

    _problem(http.put(f"{base}/{article['id']}", json={"title": " ", "body": "x"}, headers=headers), 400)
    deleted = http.delete(f"{base}/{article['id']}", headers=headers)
    assert deleted.status_code == 200 and deleted.json()["deleted"]
    _problem(http.get(f"{base}/{article['id']}"), 404)
    _problem(http.delete(f"{base}/{article['id']}", headers=headers), 404)
    for action in ("created", "updated", "deleted"):
        assert _audit(console, GLOW, f"kb.article_{action}", article["id"]) == 1, action


def test_knowledge_writes_need_kb_manage_and_stay_in_their_clinic(console):
    owner, headers = _signed_in(console, GLOW, OWNER)
    article = owner.post(
        f"/api/v1/clinics/{GLOW}/kb/articles",
        json={"title": f"Glow only {uuid.uuid4().hex[:6]}", "body": "Glow's own text."},
        headers=headers,
    ).json()
    desk, desk_headers = _signed_in(console, GLOW, FRONT_DESK)
    assert desk.get(f"/api/v1/clinics/{GLOW}/kb/articles/{article['id']}").status_code == 200, "reads it"
    refused = _problem(
        desk.put(
            f"/api/v1/clinics/{GLOW}/kb/articles/{article['id']}",
            json={"title": "x", "body": "y"},
            headers=desk_headers,
        ),
        403,
    )
    assert "kb:manage" in refused["detail"]
    harbor, harbor_headers = _signed_in(console, HARBOR, OWNER)
    url = f"/api/v1/clinics/{HARBOR}/kb/articles/{article['id']}"
    _problem(harbor.get(url), 404)
    _problem(harbor.put(url, json={"title": "Taken over", "body": "by harbor"}, headers=harbor_headers), 404)
    _problem(harbor.delete(url, headers=harbor_headers), 404)
    kept = owner.get(f"/api/v1/clinics/{GLOW}/kb/articles/{article['id']}").json()
    assert kept["body"] == "Glow's own text."


# ------------------------------------------------------------------ clinic settings
def test_an_owner_edits_hours_closed_dates_and_policies_validated_like_the_clinic_file(console):
    http, headers = _signed_in(console, HARBOR, OWNER)
    url = f"/api/v1/clinics/{HARBOR}/settings"
    original = http.get(url).json()
    window = int(original["policies"]["cancellation_window_hours"]) + 7
    glow_before = _clinic_row(console, GLOW)
    try:
        changed = http.patch(
            url,
            json={
                "business_hours": {**original["business_hours"], "sat": ["10:00-14:00"], "sun": []},
                "holidays": ["2031-12-25", "2031-01-01"],
                "policies": {"quiet_hours": {"start": "09:00", "end": "20:00"}, "cancellation_window_hours": window},
            },
            headers=headers,
        )
        assert changed.status_code == 200, changed.text
        result = changed.json()
        assert result["settings"]["business_hours"]["sat"] == ["10:00-14:00"]
        assert result["settings"]["holidays"] == ["2031-01-01", "2031-12-25"]
        assert result["settings"]["policies"]["quiet_hours"] == {"start": "09:00", "end": "20:00"}
        assert any("cancellation_window_hours" in line for line in result["changes"])
        row = _clinic_row(console, HARBOR)
        assert row["policies"]["cancellation_window_hours"] == window and row["business_hours"]["sat"] == [
            ["10:00", "14:00"]
        ]
        assert _clinic_row(console, GLOW) == glow_before, "another clinic's row is untouched"
        assert _audit(console, HARBOR, "settings.updated", HARBOR) >= 1

        for edit, field, words in (
            ({"business_hours": {"mon": ["18:00-09:00"]}}, "business_hours", "mon: time range 18:00-09:00 ends before"),
            ({"business_hours": {"funday": ["09:00-10:00"]}}, "business_hours", "unknown day"),
            ({"policies": {"quiet_hours": {"start": "25:00", "end": "20:00"}}}, "policies.quiet_hours.start", "25:00"),
            ({"policies": {"quiet_hours": {"start": "21:00", "end": "08:00"}}}, "policies.quiet_hours", "start before"),
            ({"policies": {"cancellation_window_hours": -1}}, "policies.cancellation_window_hours", "greater than"),
            ({"policies": {"phone": "+15550100"}}, "policies.phone", "unknown policy"),
            ({"holidays": ["someday"]}, "holidays.0", "date"),
            ({}, "settings", "business_hours"),
        ):
            body = _problem(http.patch(url, json=edit, headers=headers), 400)
            assert body["errors"][0]["field"] == field and words in body["detail"], body
        assert http.get(url).json()["policies"]["cancellation_window_hours"] == window, "a refused edit stores nothing"
    finally:
        restored = http.patch(
            url,
            json={k: original[k] for k in ("business_hours", "holidays", "policies")},
            headers=headers,
        )
        assert restored.status_code == 200, restored.text
    for role in (MANAGER, FRONT_DESK):
        other, other_headers = _signed_in(console, HARBOR, role)
        assert "settings:manage" in _problem(other.get(url), 403)["detail"]
        _problem(other.patch(url, json={"holidays": []}, headers=other_headers), 403)


def _clinic_row(console: ConsoleStack, clinic: int) -> dict[str, Any]:
    with console.database.directory_scope() as session:
        row = session.execute(
            text("SELECT business_hours, holidays, policies FROM clinics WHERE id = :id"), {"id": clinic}
        ).mappings()
        return dict(row.one())


def test_the_app_role_writes_settings_only_through_the_function_and_only_for_its_clinic(console):
    from sqlalchemy.exc import ProgrammingError

    with pytest.raises(ProgrammingError), console.database.tenant_scope(GLOW) as session:
        session.execute(text("UPDATE clinics SET policies = '{}'::jsonb WHERE id = :id"), {"id": GLOW})
    with console.database.directory_scope() as session:  # no clinic in scope: the function changes nothing
        changed = session.execute(text("SELECT medspa_set_clinic_settings('{}', '[]', '{}')")).scalar()
    assert changed is None


# ------------------------------------------------------------------ staff
def test_an_owner_adds_staff_changes_roles_disables_and_resets_passwords(console):
    http, headers = _signed_in(console, GLOW, OWNER)
    base = f"/api/v1/clinics/{GLOW}/staff"
    email = f"new-{uuid.uuid4().hex[:8]}@glow.example"
    added = http.post(
        base,
        json={"email": email, "role": "front_desk", "display_name": "New Desk", "password": PASSWORD},
        headers=headers,
    )
    assert added.status_code == 201, added.text
    member = added.json()
    assert member["created"] and member["role"] == "front_desk"
    newcomer = console.client()
    assert console.post_sign_in(newcomer, email, PASSWORD).status_code == 303
    assert newcomer.get("/api/v1/me").json()["clinics"][0]["role"] == "front_desk"

    _problem(http.post(base, json={"email": email, "role": "manager"}, headers=headers), 409)
    body = _problem(http.put(f"{base}/{member['id']}/role", json={"role": "provider"}, headers=headers), 400)
    assert body["errors"][0]["field"] == "provider"
    provider_id = provider_ids(console.database, GLOW)[0]
    as_provider = http.put(
        f"{base}/{member['id']}/role", json={"role": "provider", "provider_id": provider_id}, headers=headers
    )
    assert as_provider.json()["role"] == "provider" and as_provider.json()["provider_id"] == provider_id
    harbor_provider = provider_ids(console.database, HARBOR)[0]
    _problem(
        http.put(
            f"{base}/{member['id']}/role", json={"role": "provider", "provider_id": harbor_provider}, headers=headers
        ),
        400,
    )

    assert http.post(f"{base}/{member['id']}/disable", headers=headers).json()["disabled"]
    assert newcomer.get("/api/v1/me").status_code == 401, "disabled: signed out at once"
    assert not http.post(f"{base}/{member['id']}/enable", headers=headers).json()["disabled"]
    reset = http.post(f"{base}/{member['id']}/password", json={"password": "a brand new passphrase"}, headers=headers)
    assert reset.status_code == 200, reset.text
    assert console.post_sign_in(console.client(), email, PASSWORD).status_code == 401
    assert console.post_sign_in(console.client(), email, "a brand new passphrase").status_code == 303
    short = _problem(http.post(f"{base}/{member['id']}/password", json={"password": "short"}, headers=headers), 400)
    assert short["errors"][0]["field"] == "password"
    for action in ("staff.added", "staff.role_set", "staff.disabled", "staff.enabled", "staff.password_reset"):
        assert _audit(console, GLOW, action, member["id"]) >= 1, action


def test_staff_management_is_for_owners_and_never_reaches_into_another_clinic(console):
    http, headers = _signed_in(console, GLOW, OWNER)
    me = http.get("/api/v1/me").json()["id"]
    base = f"/api/v1/clinics/{GLOW}/staff"
    assert "own account" in _problem(http.post(f"{base}/{me}/disable", headers=headers), 409)["detail"]

    # someone who also works at Harbor: their account has a password, so only the operator brings it to Glow;
    # then Glow's owner may change their role here, not their account
    shared = console.add_staff(HARBOR, OWNER)
    _problem(http.post(base, json={"email": shared.email, "role": "front_desk"}, headers=headers), 409)
    with console.database.tenant_scope(GLOW) as session:
        joined = staff_admin.add_staff(session, GLOW, OPERATOR, email=shared.email, role=FRONT_DESK)
    assert joined.staff_user_id == shared.id and not joined.created
    with_password = http.post(
        base, json={"email": f"x{shared.email}", "role": "manager", "password": "short"}, headers=headers
    )
    _problem(with_password, 400)
    refused = _problem(http.post(f"{base}/{shared.id}/disable", headers=headers), 409)
    assert "another clinic" in refused["detail"]
    _problem(http.post(f"{base}/{shared.id}/password", json={"password": "taking over harbor"}, headers=headers), 409)
    assert console.post_sign_in(console.client(), shared.email, PASSWORD).status_code == 303, "their password stands"
    assert http.put(f"{base}/{shared.id}/role", json={"role": "manager"}, headers=headers).json()["role"] == "manager"
    shared_http, _ = console.sign_in(shared)
    assert shared_http.get(f"/api/v1/clinics/{GLOW}/clients").status_code == 200
    removed = http.delete(f"{base}/{shared.id}", headers=headers)
    assert removed.status_code == 200 and removed.json()["role"] is None, removed.text
    assert shared_http.get(f"/api/v1/clinics/{GLOW}/clients").status_code == 403, "off Glow's staff at once"
    assert shared_http.get(f"/api/v1/clinics/{HARBOR}/clients").status_code == 200, "still Harbor's owner"
    assert shared.email not in {m["email"] for m in http.get(base).json()["items"]}
    assert "yourself" in _problem(http.delete(f"{base}/{me}", headers=headers), 409)["detail"]
    assert _audit(console, GLOW, "staff.removed", shared.id) == 1

    harbor_only = console.add_staff(HARBOR, FRONT_DESK)
    _problem(http.post(f"{base}/{harbor_only.id}/disable", headers=headers), 404)
    _problem(http.put(f"{base}/{harbor_only.id}/role", json={"role": "owner"}, headers=headers), 404)
    for role in (MANAGER, FRONT_DESK):
        other, other_headers = _signed_in(console, GLOW, role)
        assert (
            "staff:manage"
            in _problem(
                other.post(base, json={"email": "x@glow.example", "role": "owner"}, headers=other_headers), 403
            )["detail"]
        )


@pytest.mark.parametrize("glow_keeps_it", [False, True])
def test_an_owner_cannot_plant_a_password_on_an_account_another_clinic_then_adds(console, glow_keeps_it):
    """The cross-clinic takeover: Glow's owner creates an account for Harbor's new hire with a password of their
    choosing (and takes it off Glow's staff, or not); Harbor's owner later adds that email.  The add is refused —
    from the API and the page's form — so the password Glow knows never opens Harbor's patients."""
    glow, glow_headers = _signed_in(console, GLOW, OWNER)
    harbor, harbor_headers = _signed_in(console, HARBOR, OWNER)
    harbor_patient = add_patient(console.database, HARBOR)
    email, planted = f"new-hire-{uuid.uuid4().hex[:8]}@harbor.example", "glow chose this passphrase"
    made = glow.post(
        f"/api/v1/clinics/{GLOW}/staff",
        json={"email": email, "role": "front_desk", "password": planted},
        headers=glow_headers,
    )
    assert made.status_code == 201 and made.json()["created"], made.text
    if not glow_keeps_it:
        assert glow.delete(f"/api/v1/clinics/{GLOW}/staff/{made.json()['id']}", headers=glow_headers).status_code == 200

    refused = _problem(
        harbor.post(
            f"/api/v1/clinics/{HARBOR}/staff", json={"email": email, "role": "front_desk"}, headers=harbor_headers
        ),
        409,
    )
    assert refused["type"].endswith("conflict") and refused["title"] == "Conflict"
    assert "medspa staff-users add" in refused["detail"] and "single sign-on" in refused["detail"]
    assert "\n" not in refused["detail"], "one line"
    form = harbor.post(
        f"/clinics/{HARBOR}/staff",
        data={"csrf_token": harbor_headers["X-CSRF-Token"], "email": email, "role": "front_desk"},
        headers={"Origin": console.base_url},
    )
    assert form.status_code == 409 and "medspa staff-users add" in form.text, form.text[:500]
    harbor_staff = harbor.get(f"/api/v1/clinics/{HARBOR}/staff").json()["items"]
    assert email not in {m["email"] for m in harbor_staff}

    attacker = console.client()
    assert console.post_sign_in(attacker, email, planted).status_code == 303, "the account itself still signs in"
    assert attacker.get(f"/api/v1/clinics/{HARBOR}/clients").status_code == 403
    patient = attacker.get(f"/api/v1/clinics/{HARBOR}/clients/{harbor_patient.client_id}")
    assert patient.status_code == 403 and harbor_patient.name not in patient.text
    assert _audit(console, HARBOR, "staff.added", made.json()["id"]) == 0


def test_an_account_without_a_password_joins_and_then_no_owner_can_give_it_one(console):
    """Single sign-on only: the identity provider proves the email at every sign-in, so such an account may join
    another clinic from the console.  Once it works at two, neither owner can set a password on it (which would
    turn it into the account the other owner's clinic cannot vouch for)."""
    glow, glow_headers = _signed_in(console, GLOW, OWNER)
    harbor, harbor_headers = _signed_in(console, HARBOR, OWNER)
    email = f"sso-{uuid.uuid4().hex[:8]}@harbor.example"
    made = glow.post(f"/api/v1/clinics/{GLOW}/staff", json={"email": email, "role": "front_desk"}, headers=glow_headers)
    assert made.status_code == 201 and made.json()["created"], made.text
    account = made.json()["id"]
    with_password = harbor.post(
        f"/api/v1/clinics/{HARBOR}/staff",
        json={"email": email, "role": "manager", "password": "harbor picks one too"},
        headers=harbor_headers,
    )
    assert _problem(with_password, 400)["errors"][0]["field"] == "password"
    joined = harbor.post(
        f"/api/v1/clinics/{HARBOR}/staff", json={"email": email, "role": "manager"}, headers=harbor_headers
    )
    assert joined.status_code == 201, joined.text
    assert joined.json()["id"] == account and joined.json()["role"] == "manager" and not joined.json()["created"]

    for http, headers, clinic in ((glow, glow_headers, GLOW), (harbor, harbor_headers, HARBOR)):
        reset = http.post(
            f"/api/v1/clinics/{clinic}/staff/{account}/password", json={"password": "now I know it"}, headers=headers
        )
        assert "another clinic" in _problem(reset, 409)["detail"], clinic
    assert console.post_sign_in(console.client(), email, "now I know it").status_code == 401, "still no password"


def test_the_last_active_owner_stays(console, owner_engine):
    slug = f"solo-{uuid.uuid4().hex[:6]}"
    with owner_engine.begin() as conn:
        clinic = conn.execute(
            text(
                "INSERT INTO clinics (slug, name, timezone, public_key, phone) VALUES (:s, 'Solo', 'UTC', :s, "
                "'+14155550100') RETURNING id"
            ),
            {"s": slug},
        ).scalar_one()
    http, headers = _signed_in(console, clinic, OWNER)
    me = http.get("/api/v1/me").json()["id"]
    demote = _problem(
        http.put(f"/api/v1/clinics/{clinic}/staff/{me}/role", json={"role": "manager"}, headers=headers), 409
    )
    assert "without an active owner" in demote["detail"]
    second = console.add_staff(clinic, OWNER)
    assert http.post(f"/api/v1/clinics/{clinic}/staff/{second.id}/disable", headers=headers).status_code == 200
    _problem(http.put(f"/api/v1/clinics/{clinic}/staff/{me}/role", json={"role": "manager"}, headers=headers), 409)


# ------------------------------------------------------------------ the pages' forms
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_the_pages_forms_post_through_the_same_code_with_csrf(console):
    http, headers = _signed_in(console, GLOW, OWNER)
    page = http.get(f"/clinics/{GLOW}/kb/new")
    assert page.status_code == 200 and '<label for="title">' in page.text
    token = _CSRF.search(page.text)
    assert token
    word = f"kelp{uuid.uuid4().hex[:6]}"
    form = {"csrf_token": token.group(1), "title": f"Parking {word}", "body": "Free parking behind the building."}
    refused = http.post(
        f"/clinics/{GLOW}/kb/new", data={**form, "csrf_token": "forged"}, headers={"Origin": console.base_url}
    )
    assert refused.status_code == 403
    saved = http.post(f"/clinics/{GLOW}/kb/new", data=form, headers={"Origin": console.base_url})
    assert saved.status_code == 303 and saved.headers["location"].endswith("?notice=created"), saved.text
    shown = http.get(saved.headers["location"])
    assert f"Parking {word}" in shown.text and 'data-testid="notice"' in shown.text
    invalid = http.post(f"/clinics/{GLOW}/kb/new", data={**form, "title": " "}, headers={"Origin": console.base_url})
    assert invalid.status_code == 400 and 'data-testid="form-errors"' in invalid.text
    assert "Free parking behind the building." in invalid.text, "what was typed comes back with the errors"

    settings = http.post(
        f"/clinics/{GLOW}/settings",
        data={"csrf_token": token.group(1), "hours_mon": "18:00-09:00", "quiet_start": "08:00", "quiet_end": "21:00"},
        headers={"Origin": console.base_url},
    )
    assert settings.status_code == 400 and "ends before it starts" in settings.text
    desk, _ = _signed_in(console, GLOW, FRONT_DESK)
    for path in ("settings", "staff", "campaigns/new", "kb/new"):
        assert desk.get(f"/clinics/{GLOW}/{path}").status_code == 403, path
