"""The staff console's JSON API over HTTP on the real database: authentication on every endpoint, roles,
tenancy (another clinic's data is never returned), input validation, pagination, CSRF, access tokens, and the
OpenAPI document."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from argon2 import PasswordHasher
from openapi_spec_validator import validate
from sqlalchemy import text

from console import store
from console.api import endpoints
from console.keys import ConsoleKeys
from console.tokens import mint_access_token
from domain.staff_access import StaffRole
from medspa.services import Infrastructure
from tests.support.console import (
    CONSOLE_SECRET,
    GLOW,
    HARBOR,
    ConsoleStack,
    add_patient,
    provider_ids,
    running_console,
)

ENDPOINTS = endpoints()
OWNER, MANAGER, FRONT_DESK, PROVIDER = StaffRole.OWNER, StaffRole.MANAGER, StaffRole.FRONT_DESK, StaffRole.PROVIDER


@pytest.fixture(scope="module")
def console(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    with running_console(infra, Path(tmp_path_factory.mktemp("console")), with_oidc=False) as stack:
        yield stack


def _concrete(path: str, clinic_id: int = GLOW, **ids: int) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(clinic_id if name == "clinic_id" else ids.get(name, 1))

    return "/api/v1" + re.sub(r"\{(\w+)(?::\w+)?\}", fill, path)


def _is_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"]
    return body


# ------------------------------------------------------------------ OpenAPI
def test_the_openapi_document_is_valid_and_covers_every_endpoint(console):
    response = console.client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)  # raises on an invalid OpenAPI 3.1 document
    operations = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    expected = {(s.method, re.sub(r"\{(\w+):\w+\}", r"{\1}", s.path)) for s in ENDPOINTS}
    assert operations == expected
    assert document["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status"]
    search = document["paths"]["/clinics/{clinic_id}/clients"]["get"]
    assert {p["name"] for p in search["parameters"]} == {"clinic_id", "q", "cursor", "limit"}


# ------------------------------------------------------------------ authentication
@pytest.mark.parametrize("spec", ENDPOINTS, ids=lambda s: f"{s.method} {s.path}")
def test_every_endpoint_requires_authentication(console, spec):
    http = console.client()
    url = _concrete(spec.path)
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = http.request(spec.method, url, headers=headers, json={} if spec.method != "GET" else None)
        body = _is_problem(response, 401)
        assert "items" not in body


@pytest.mark.parametrize("spec", [s for s in ENDPOINTS if s.clinic_scoped], ids=lambda s: f"{s.method} {s.path}")
def test_another_clinics_endpoints_are_refused_with_nothing_in_the_answer(console, spec):
    owner = console.add_staff(GLOW, OWNER)
    http, csrf = console.sign_in(owner)
    response = http.request(
        spec.method,
        _concrete(spec.path, HARBOR),
        headers={"X-CSRF-Token": csrf, "Origin": console.base_url},
        json={"scopes": ["clients:read"]} if spec.method != "GET" else None,
    )
    body = _is_problem(response, 403)
    assert set(body) <= {"type", "title", "status", "detail", "instance"}
    assert "member" in body["detail"]


def test_ids_of_another_clinic_return_nothing(console):
    harbor_patient = add_patient(console.database, HARBOR, name="Harbor Only Patient")
    glow_patient = add_patient(console.database, GLOW, name="Glow Visible Patient")
    owner = console.add_staff(GLOW, OWNER)
    http, _ = console.sign_in(owner)
    _is_problem(http.get(f"/api/v1/clinics/{GLOW}/clients/{harbor_patient.client_id}"), 404)
    _is_problem(http.get(f"/api/v1/clinics/{GLOW}/conversations/{harbor_patient.conversation_id}/messages"), 404)
    found = http.get(f"/api/v1/clinics/{GLOW}/clients", params={"q": "Patient", "limit": 200}).json()["items"]
    names = {c["name"] for c in found}
    assert "Glow Visible Patient" in names and "Harbor Only Patient" not in names
    ok = http.get(f"/api/v1/clinics/{GLOW}/clients/{glow_patient.client_id}")
    assert ok.status_code == 200 and ok.json()["consent_ledger"][0]["kind"] == "opt_in"


# ------------------------------------------------------------------ roles
def test_roles_decide_what_each_user_may_read(console):
    expectations = {
        OWNER: {"audit": 200, "staff": 200, "automations": 200, "campaigns": 200, "clients": 200},
        MANAGER: {"audit": 403, "staff": 403, "automations": 200, "campaigns": 200, "clients": 200},
        FRONT_DESK: {"audit": 403, "staff": 403, "automations": 403, "campaigns": 403, "clients": 200},
    }
    for role, statuses in expectations.items():
        http, _ = console.sign_in(console.add_staff(GLOW, role))
        for path, status in statuses.items():
            response = http.get(f"/api/v1/clinics/{GLOW}/{path}")
            assert response.status_code == status, (role, path, response.text)
            if status == 403:
                assert "permission" in response.json()["detail"]
    me = console.sign_in(console.add_staff(GLOW, MANAGER))[0].get("/api/v1/me").json()
    assert me["clinics"][0]["role"] == "manager" and "audit:read" not in me["clinics"][0]["permissions"]


def test_a_provider_sees_only_their_own_patients_and_schedule(console):
    mine_id, other_id = provider_ids(console.database, GLOW)[:2]
    day = datetime(2031, 3, 4, 18, 0, tzinfo=UTC) + timedelta(days=int(time.time()) % 900)
    mine = add_patient(
        console.database, GLOW, provider_id=mine_id, starts_at=day, name="Mine Patient", handoff="urgent"
    )
    other = add_patient(
        console.database, GLOW, provider_id=other_id, starts_at=day, name="Other Patient", handoff="urgent"
    )
    provider = console.add_staff(GLOW, PROVIDER, provider_id=mine_id)
    http, _ = console.sign_in(provider)
    base = f"/api/v1/clinics/{GLOW}"

    names = {c["name"] for c in http.get(f"{base}/clients", params={"q": "Patient", "limit": 200}).json()["items"]}
    assert "Mine Patient" in names and "Other Patient" not in names
    assert http.get(f"{base}/clients/{mine.client_id}").status_code == 200
    refused = _is_problem(http.get(f"{base}/clients/{other.client_id}"), 403)
    assert "Other Patient" not in str(refused)
    _is_problem(http.get(f"{base}/conversations/{other.conversation_id}/messages"), 403)
    inbox_ids = {c["id"] for c in http.get(f"{base}/conversations", params={"limit": 200}).json()["items"]}
    assert mine.conversation_id in inbox_ids and other.conversation_id not in inbox_ids

    local_day = day.astimezone(__import__("zoneinfo").ZoneInfo("America/Los_Angeles")).date().isoformat()
    schedule = http.get(f"{base}/appointments", params={"date": local_day}).json()["items"]
    assert schedule and {e["provider_id"] for e in schedule} == {mine_id}
    _is_problem(http.get(f"{base}/appointments", params={"date": local_day, "provider_id": other_id}), 403)
    _is_problem(http.get(f"{base}/automations"), 403)

    front_desk, _ = console.sign_in(console.add_staff(GLOW, FRONT_DESK))
    everyone = front_desk.get(f"{base}/appointments", params={"date": local_day}).json()["items"]
    assert {mine_id, other_id} <= {e["provider_id"] for e in everyone}


# ------------------------------------------------------------------ input validation and pagination
def test_invalid_input_gets_a_clear_problem(console):
    http, csrf = console.sign_in(console.add_staff(GLOW, OWNER))
    base = f"/api/v1/clinics/{GLOW}"
    body = _is_problem(http.get(f"{base}/clients", params={"limit": 0}), 400)
    assert body["errors"][0]["field"] == "limit" and "limit" in body["detail"]
    body = _is_problem(http.get(f"{base}/clients", params={"cursor": "not-a-cursor"}), 400)
    assert body["errors"][0]["field"] == "cursor"
    body = _is_problem(http.get(f"{base}/clients", params={"colour": "blue"}), 400)
    assert "colour" in body["detail"]
    body = _is_problem(http.get(f"{base}/appointments", params={"date": "2031-13-01"}), 400)
    assert body["errors"][0]["field"] == "date"
    _is_problem(http.get(f"{base}/services", params={"x": "1"}), 400)
    headers = {"X-CSRF-Token": csrf, "Origin": console.base_url}
    _is_problem(http.post(f"{base}/tokens", content=b"scopes=x", headers=headers), 415)
    body = _is_problem(http.post(f"{base}/tokens", json={"scopes": ["clients:read"], "ttl_s": 5}, headers=headers), 400)
    assert body["errors"][0]["field"] == "ttl_s"
    body = _is_problem(http.post(f"{base}/tokens", json={"scopes": ["root"]}, headers=headers), 400)
    assert "root" in body["detail"]
    body = _is_problem(
        http.post(f"{base}/tokens", json={"scopes": ["clients:read"], "admin": True}, headers=headers), 400
    )
    assert body["errors"][0]["field"] == "admin"
    assert http.get("/api/v1/nothing-here").status_code == 404


def test_cursor_pagination_walks_every_client_once(console):
    tag = f"Paged{int(time.time() * 1000) % 10**8}"
    created = {add_patient(console.database, GLOW, name=f"{tag} {i}").client_id for i in range(5)}
    http, _ = console.sign_in(console.add_staff(GLOW, FRONT_DESK))
    seen: list[int] = []
    params: dict[str, object] = {"q": tag, "limit": 2}
    for _ in range(10):
        page = http.get(f"/api/v1/clinics/{GLOW}/clients", params=params).json()
        seen += [c["id"] for c in page["items"]]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert sorted(seen) == sorted(created) and len(seen) == len(set(seen))


def _cursor(*values: object) -> str:
    """A cursor as a client could forge one: the same encoding as ours, values of the client's choosing."""
    raw = json.dumps(values, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def test_a_tampered_cursor_with_values_the_database_cannot_hold_is_a_400(console):
    """Well-formed JSON of the right shape and types, but values no cursor of ours carries and Postgres refuses
    ("integer out of range", a NUL in text, a lone surrogate): a 400 naming the cursor, never a 500."""
    patient = add_patient(console.database, GLOW)
    http, _ = console.sign_in(console.add_staff(GLOW, OWNER))
    base = f"/api/v1/clinics/{GLOW}"
    when = datetime.now(UTC).isoformat()
    tampered = {
        "conversations": [
            _cursor(2**40, when, 1),  # the inbox's rank (1-4 a handoff, 9 with the agent) is an int
            _cursor(10, when, 1),
            _cursor(1, when, 2**63),  # past bigint
            _cursor(1, when, -(2**70)),
            _cursor(1, "2031-01-01T10:00:00", 1),  # no offset: not an instant
        ],
        f"conversations/{patient.conversation_id}/messages": [_cursor(2**63), _cursor(0)],
        "clients": [_cursor("a\u0000b", 1), _cursor("\ud800", 1), _cursor("a", 2**64)],
        "appointments": [_cursor(when, 2**63)],
        "audit": [_cursor(2**80)],
    }
    for path, cursors in tampered.items():
        for cursor in cursors:
            body = _is_problem(http.get(f"{base}/{path}", params={"cursor": cursor}), 400)
            assert body["errors"] == [{"field": "cursor", "message": "not a cursor this API issued"}], (path, cursor)
    first = http.get(f"{base}/conversations", params={"limit": 1}).json()
    assert http.get(f"{base}/conversations", params={"cursor": first["next_cursor"]}).status_code == 200


def test_the_inbox_puts_handoffs_first_most_urgent_on_top(console):
    normal = add_patient(console.database, GLOW, handoff="normal")
    quiet = add_patient(console.database, GLOW)
    emergency = add_patient(console.database, GLOW, handoff="emergency")
    urgent = add_patient(console.database, GLOW, handoff="urgent")
    http, _ = console.sign_in(console.add_staff(GLOW, FRONT_DESK))
    items = http.get(f"/api/v1/clinics/{GLOW}/conversations", params={"limit": 200}).json()["items"]
    order = [i["id"] for i in items]
    positions = [order.index(c.conversation_id) for c in (emergency, urgent, normal, quiet)]
    assert positions == sorted(positions)
    ranks = [(0 if i["handoff"] else 1) for i in items]
    assert ranks == sorted(ranks), "every handoff before every other conversation"
    handoffs = http.get(f"/api/v1/clinics/{GLOW}/conversations", params={"handoffs_only": "true", "limit": 200})
    assert all(i["handoff"] for i in handoffs.json()["items"])


# ------------------------------------------------------------------ CSRF and tokens
def test_a_cookie_authenticated_post_needs_the_csrf_token_and_our_origin(console):
    owner = console.add_staff(GLOW, OWNER)
    http, csrf = console.sign_in(owner)
    url = f"/api/v1/clinics/{GLOW}/tokens"
    body = {"scopes": ["clients:read"]}
    assert _is_problem(http.post(url, json=body), 403)["type"].endswith("csrf")
    assert _is_problem(http.post(url, json=body, headers={"X-CSRF-Token": "wrong"}), 403)["type"].endswith("csrf")
    foreign = {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    assert _is_problem(http.post(url, json=body, headers=foreign), 403)["type"].endswith("csrf")
    minted = http.post(url, json=body, headers={"X-CSRF-Token": csrf, "Origin": console.base_url})
    assert minted.status_code == 201, minted.text


def test_access_tokens_carry_scopes_for_one_clinic_and_die_with_their_user(console):
    owner = console.add_staff(GLOW, OWNER)
    http, csrf = console.sign_in(owner)
    desk = console.add_staff(GLOW, FRONT_DESK)
    headers = {"X-CSRF-Token": csrf, "Origin": console.base_url}
    refused = http.post(
        f"/api/v1/clinics/{GLOW}/tokens", json={"scopes": ["audit:read"], "staff_user_id": desk.id}, headers=headers
    )
    assert "audit:read" in _is_problem(refused, 400)["detail"], "a token never exceeds its user's role"
    minted = http.post(
        f"/api/v1/clinics/{GLOW}/tokens",
        json={"scopes": ["clients:read"], "ttl_s": 600, "staff_user_id": desk.id},
        headers=headers,
    ).json()
    api = console.client()
    bearer = {"Authorization": f"Bearer {minted['access_token']}"}
    assert api.get(f"/api/v1/clinics/{GLOW}/clients", headers=bearer).status_code == 200
    assert "catalog:read" in _is_problem(api.get(f"/api/v1/clinics/{GLOW}/services", headers=bearer), 403)["detail"]
    assert "another clinic" in _is_problem(api.get(f"/api/v1/clinics/{HARBOR}/clients", headers=bearer), 403)["detail"]
    me = api.get("/api/v1/me", headers=bearer).json()
    assert me["authenticated_by"] == "token" and me["clinics"][0]["permissions"] == ["clients:read"]
    # a token cannot mint another (even an owner's)
    owner_token = http.post(f"/api/v1/clinics/{GLOW}/tokens", json={"scopes": ["clients:read"]}, headers=headers)
    mint_again = api.post(
        f"/api/v1/clinics/{GLOW}/tokens",
        json={"scopes": ["clients:read"]},
        headers={"Authorization": f"Bearer {owner_token.json()['access_token']}"},
    )
    assert mint_again.status_code == 403
    # tampered, expired, wrong key: all 401
    keys = ConsoleKeys(CONSOLE_SECRET)
    expired, _ = mint_access_token(
        keys,
        staff_user_id=desk.id,
        clinic_id=GLOW,
        scopes=frozenset({"clients:read"}),
        ttl_s=60,
        password_changed_at=None,
        now=datetime.now(UTC) - timedelta(hours=2),
    )
    forged = jwt.encode({"sub": str(desk.id), "clinic": GLOW, "scope": "clients:read"}, "guess", algorithm="HS256")
    header, payload, signature = minted["access_token"].split(".")
    tampered = ".".join([header, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), signature])
    for token in (expired, forged, tampered):
        _is_problem(api.get(f"/api/v1/clinics/{GLOW}/clients", headers={"Authorization": f"Bearer {token}"}), 401)
    # disabling the user stops their tokens at once
    with console.database.tenant_scope(GLOW) as session:
        store.set_disabled(session, desk.id, True)
    _is_problem(api.get(f"/api/v1/clinics/{GLOW}/clients", headers=bearer), 401)


def test_a_new_password_ends_the_accounts_access_tokens_and_later_ones_work(console):
    owner = console.add_staff(GLOW, OWNER)
    http, csrf = console.sign_in(owner)
    headers = {"X-CSRF-Token": csrf, "Origin": console.base_url}
    desk = console.add_staff(GLOW, FRONT_DESK)
    sso_only = console.add_staff(GLOW, FRONT_DESK, password=None)

    def bearer(staff_user_id: int) -> dict[str, str]:
        minted = http.post(
            f"/api/v1/clinics/{GLOW}/tokens",
            json={"scopes": ["clients:read"], "staff_user_id": staff_user_id},
            headers=headers,
        )
        assert minted.status_code == 201, minted.text
        return {"Authorization": f"Bearer {minted.json()['access_token']}"}

    api, clients = console.client(), f"/api/v1/clinics/{GLOW}/clients"
    before, never_had_one = bearer(desk.id), bearer(sso_only.id)
    assert api.get(clients, headers=before).status_code == 200
    assert api.get(clients, headers=never_had_one).status_code == 200, "an account without a password: null version"

    reset = http.post(
        f"/api/v1/clinics/{GLOW}/staff/{desk.id}/password", json={"password": "a fresh passphrase"}, headers=headers
    )
    assert reset.status_code == 200, reset.text
    refused = _is_problem(api.get(clients, headers=before), 401)
    assert "password" in refused["detail"] and "access token" in refused["detail"]
    assert api.get("/api/v1/me", headers=before).status_code == 401
    assert api.get(clients, headers=bearer(desk.id)).status_code == 200, "minted after the reset"
    assert api.get(clients, headers=never_had_one).status_code == 200, "another account's tokens are untouched"

    # an owner setting a password on an account that had none ends its tokens too
    given = http.post(
        f"/api/v1/clinics/{GLOW}/staff/{sso_only.id}/password", json={"password": "a first passphrase"}, headers=headers
    )
    assert given.status_code == 200, given.text
    _is_problem(api.get(clients, headers=never_had_one), 401)


def test_a_rehash_at_sign_in_is_no_password_change_and_keeps_the_tokens(console):
    """Signing in re-hashes a password stored with weaker parameters; the password is the same, so its tokens
    stay: the credentials version moves with a new password, not with a new hash of the same one."""
    owner = console.add_staff(GLOW, OWNER)
    http, csrf = console.sign_in(owner)
    desk = console.add_staff(GLOW, FRONT_DESK)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(desk.password or "")
    with console.database.tenant_scope(GLOW) as session:
        store.set_password_hash(session, desk.id, weak)
    minted = http.post(
        f"/api/v1/clinics/{GLOW}/tokens",
        json={"scopes": ["clients:read"], "staff_user_id": desk.id},
        headers={"X-CSRF-Token": csrf, "Origin": console.base_url},
    )
    bearer = {"Authorization": f"Bearer {minted.json()['access_token']}"}
    assert console.post_sign_in(console.client(), desk.email, desk.password or "").status_code == 303
    with console.database.tenant_scope(GLOW) as session:
        stored = session.execute(text("SELECT password_hash FROM staff_users WHERE id = :i"), {"i": desk.id}).scalar()
    assert stored != weak, "re-hashed with today's parameters"
    assert console.client().get(f"/api/v1/clinics/{GLOW}/clients", headers=bearer).status_code == 200


# ------------------------------------------------------------------ audit
def test_viewing_a_patient_is_audited_and_only_owners_read_the_log(console):
    patient = add_patient(console.database, GLOW)
    desk = console.add_staff(GLOW, FRONT_DESK)
    desk_http, _ = console.sign_in(desk)
    assert desk_http.get(f"/api/v1/clinics/{GLOW}/clients/{patient.client_id}").status_code == 200
    assert desk_http.get(f"/api/v1/clinics/{GLOW}/audit").status_code == 403
    owner_http, _ = console.sign_in(console.add_staff(GLOW, OWNER))
    log = owner_http.get(f"/api/v1/clinics/{GLOW}/audit", params={"client_id": patient.client_id}).json()["items"]
    assert [(e["action"], e["actor"], e["staff_user_id"]) for e in log] == [("client.viewed", desk.email, desk.id)]
    harbor_owner, _ = console.sign_in(console.add_staff(HARBOR, OWNER))
    harbor_log = harbor_owner.get(f"/api/v1/clinics/{HARBOR}/audit", params={"limit": 200}).json()["items"]
    assert all(e["client_id"] != patient.client_id for e in harbor_log)


def test_me_and_my_clinics(console):
    account = console.add_staff(GLOW, FRONT_DESK)
    console.add_staff(HARBOR, MANAGER, email=account.email)
    http, _ = console.sign_in(account)
    me = http.get("/api/v1/me").json()
    assert me["email"] == account.email and me["authenticated_by"] == "session"
    assert {(c["clinic_id"], c["role"]) for c in me["clinics"]} == {(GLOW, "front_desk"), (HARBOR, "manager")}
    assert http.get("/api/v1/clinics").json()["items"] == me["clinics"]
    assert http.get(f"/api/v1/clinics/{HARBOR}/campaigns").status_code == 200
    assert http.get(f"/api/v1/clinics/{GLOW}/campaigns").status_code == 403


def test_every_unsafe_route_refuses_a_post_without_the_csrf_token(console):
    from starlette.routing import Mount, Route

    from console.app import create_app

    app = create_app(console.settings, database=console.database)
    unsafe: list[tuple[str, str]] = []
    for route in app.routes:
        children = route.routes if isinstance(route, Mount) else [route]
        prefix = route.path if isinstance(route, Mount) else ""
        for child in children:
            if isinstance(child, Route) and child.methods:
                path = prefix + _concrete(child.path).removeprefix("/api/v1")
                unsafe += [(m, path) for m in sorted(child.methods & {"POST", "PUT", "PATCH", "DELETE"})]
    paths = {path for _, path in unsafe}
    assert {"/sign-in", "/sign-in/totp", "/sign-out", f"/api/v1/clinics/{GLOW}/tokens"} <= paths
    assert {("PATCH", f"/api/v1/clinics/{GLOW}/settings"), ("DELETE", f"/api/v1/clinics/{GLOW}/kb/articles/1")} <= set(
        unsafe
    )
    http, csrf = console.sign_in(console.add_staff(GLOW, OWNER))
    for method, path in unsafe:
        response = http.request(method, path, json={"scopes": ["clients:read"]}, headers={"Origin": console.base_url})
        assert response.status_code == 403, (method, path, response.status_code)
    assert http.get("/api/v1/me").status_code == 200, "still signed in: nothing was done"


def test_pages_redirect_to_sign_in_refresh_the_inbox_in_place_and_refuse_other_clinics(console):
    anonymous = console.client()
    redirect = anonymous.get(f"/clinics/{GLOW}/inbox?handoffs_only=true")
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/sign-in?next=%2Fclinics%2F1%2Finbox%3Fhandoffs_only%3Dtrue"
    patient = add_patient(console.database, GLOW, handoff="urgent")
    http, _ = console.sign_in(console.add_staff(GLOW, FRONT_DESK))
    full = http.get(f"/clinics/{GLOW}/inbox")
    assert (
        full.status_code == 200
        and "<html" in full.text
        and f'data-conversation-id="{patient.conversation_id}"' in full.text
    )
    assert full.headers["content-security-policy"].startswith("default-src 'self'")
    fragment = http.get(f"/clinics/{GLOW}/inbox", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and f'data-conversation-id="{patient.conversation_id}"' in fragment.text
    other = http.get(f"/clinics/{HARBOR}/inbox")
    assert other.status_code == 403 and "data-conversation-id" not in other.text
    bearer_page = console.client().get(f"/clinics/{GLOW}/inbox", headers={"Authorization": "Bearer x"})
    assert bearer_page.status_code == 401
