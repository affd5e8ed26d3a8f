"""Signing in to the staff console on the real database: password, lockout (per account and per address,
durable across restarts), the TOTP second factor, OpenID Connect against a local provider, sessions and
sign-out, the sign-in forms' CSRF check, and what row-level security lets the app role see of staff."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest
from sqlalchemy import text

from console import store, totp
from console.keys import ConsoleKeys
from domain.staff_access import StaffRole
from medspa.services import Infrastructure
from tests.fakes.oidc_provider import OidcUser
from tests.support.console import CONSOLE_SECRET, GLOW, HARBOR, OIDC_DOMAIN, PASSWORD, ConsoleStack, running_console


@pytest.fixture(scope="module")
def console(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    with running_console(infra, Path(tmp_path_factory.mktemp("console"))) as stack:
        yield stack


def _error(response: httpx.Response) -> str:
    match = re.search(r'data-testid="sign-in-error">([^<]*)<', response.text)
    assert match, response.text[:400]
    return match.group(1)


# ------------------------------------------------------------------ password and sessions
def test_password_sign_in_sets_a_hardened_session_cookie_and_sign_out_revokes_it(console):
    account = console.add_staff(GLOW, StaffRole.FRONT_DESK)
    http = console.client()
    response = console.post_sign_in(http, account.email, PASSWORD, next_path=f"/clinics/{GLOW}/inbox")
    assert response.status_code == 303 and response.headers["location"] == f"/clinics/{GLOW}/inbox"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("medspa_console="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    token = http.cookies["medspa_console"]
    with console.database.directory_scope() as session:
        stored = session.execute(
            text("SELECT token_hash FROM staff_sessions WHERE token_hash = :h"), {"h": store.token_hash(token)}
        ).scalar()
        raw = session.execute(text("SELECT count(*) FROM staff_sessions WHERE token_hash = :t"), {"t": token}).scalar()
    assert stored and raw == 0, "only the token's hash is stored"
    page = http.get(f"/clinics/{GLOW}/inbox")
    assert page.status_code == 200 and "Inbox" in page.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]

    refused = http.post("/sign-out", data={}, headers={"Origin": console.base_url})
    assert refused.status_code == 403, "sign-out needs the session's CSRF token"
    out = http.post("/sign-out", data={"csrf_token": csrf}, headers={"Origin": console.base_url})
    assert out.status_code == 303
    replay = console.client()
    replay.cookies.set("medspa_console", token)
    assert replay.get("/api/v1/me").status_code == 401, "a signed-out session is dead on the server"
    assert replay.get(f"/clinics/{GLOW}/inbox").headers["location"].startswith("/sign-in?next=")


def test_wrong_passwords_lock_the_account_with_a_clear_message_even_from_elsewhere_and_after_a_restart(
    console, infra, tmp_path
):
    account = console.add_staff(GLOW, StaffRole.OWNER)
    http = console.client()
    for attempt in range(4):
        response = console.post_sign_in(http, account.email, f"wrong password {attempt}")
        assert response.status_code == 401 and "do not match" in _error(response)
    fifth = console.post_sign_in(http, account.email, "wrong password 5")
    assert fifth.status_code == 401 and "locked for 15 more minutes" in _error(fifth)
    right = console.post_sign_in(http, account.email, PASSWORD)
    assert right.status_code == 429 and "Too many failed sign-in attempts" in _error(right)
    elsewhere = console.client()
    assert console.post_sign_in(elsewhere, account.email.upper(), PASSWORD).status_code == 429
    with running_console(infra, tmp_path, with_oidc=False) as restarted:
        assert restarted.post_sign_in(restarted.client(), account.email, PASSWORD).status_code == 429
    other = console.add_staff(GLOW, StaffRole.OWNER)
    assert console.post_sign_in(http, other.email, PASSWORD).status_code == 303, "other accounts are unaffected"


def test_many_failures_from_one_address_lock_that_address(infra, tmp_path):
    with running_console(infra, tmp_path, with_oidc=False, console_login_ip_max_failures=3) as console:
        address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
        http = console.client(forwarded_for=address)
        for _ in range(3):
            stranger = f"nobody-{uuid.uuid4().hex[:6]}@{OIDC_DOMAIN}"
            assert console.post_sign_in(http, stranger, "guess guess guess").status_code == 401
        account = console.add_staff(GLOW, StaffRole.FRONT_DESK)
        locked = console.post_sign_in(http, account.email, PASSWORD)
        assert locked.status_code == 429 and "your network address" in _error(locked)
        assert console.post_sign_in(console.client(), account.email, PASSWORD).status_code == 303


def test_sign_in_forms_need_their_csrf_token_and_our_origin(console):
    account = console.add_staff(GLOW, StaffRole.FRONT_DESK)
    http = console.client()
    token = console.signin_token(http)
    form = {"email": account.email, "password": PASSWORD}
    assert http.post("/sign-in", data=form, headers={"Origin": console.base_url}).status_code == 403
    assert (
        http.post("/sign-in", data=form | {"csrf_token": "forged"}, headers={"Origin": console.base_url}).status_code
        == 403
    )
    foreign = http.post("/sign-in", data=form | {"csrf_token": token}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert "medspa_console" not in http.cookies


def test_a_disabled_account_cannot_sign_in_and_its_sessions_end(console):
    account = console.add_staff(GLOW, StaffRole.FRONT_DESK)
    http, _ = console.sign_in(account)
    with console.database.tenant_scope(GLOW) as session:
        store.set_disabled(session, account.id, True)
    assert http.get("/api/v1/me").status_code == 401
    assert console.post_sign_in(console.client(), account.email, PASSWORD).status_code == 401


# ------------------------------------------------------------------ TOTP
def _enrol_totp(console: ConsoleStack, account) -> str:  # type: ignore[no-untyped-def]
    secret = pyotp.random_base32()
    with console.database.tenant_scope(account.clinic_id) as session:
        store.set_totp_secret(session, account.id, totp.encrypt_secret(ConsoleKeys(CONSOLE_SECRET), secret))
    return secret


def test_an_owner_with_totp_needs_the_current_code_once(console):
    owner = console.add_staff(GLOW, StaffRole.OWNER)
    secret = _enrol_totp(console, owner)
    http = console.client()
    first = console.post_sign_in(http, owner.email, PASSWORD, next_path="/api/v1/me")
    assert first.status_code == 303 and first.headers["location"].startswith("/sign-in/totp")
    assert http.get("/api/v1/me").status_code == 401, "half signed in is not signed in"
    half_token = http.cookies["medspa_console"]
    token = console.signin_token(http)
    wrong = http.post(
        "/sign-in/totp",
        data={"csrf_token": token, "code": "000000", "next": "/api/v1/me"},
        headers={"Origin": console.base_url},
    )
    assert wrong.status_code == 401 and "not right" in _error(wrong)
    code = pyotp.TOTP(secret).now()
    ok = http.post(
        "/sign-in/totp",
        data={"csrf_token": console.signin_token(http), "code": code, "next": "/api/v1/me"},
        headers={"Origin": console.base_url},
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/api/v1/me"
    assert http.cookies["medspa_console"] != half_token, "the session token is rotated after the second factor"
    assert http.get("/api/v1/me").json()["second_factor"] is True

    again = console.client()
    console.post_sign_in(again, owner.email, PASSWORD)
    replay = again.post(
        "/sign-in/totp",
        data={"csrf_token": console.signin_token(again), "code": code},
        headers={"Origin": console.base_url},
    )
    assert replay.status_code == 401, "a code is accepted once"


def test_signing_out_half_signed_in_ends_the_pending_session_on_the_server(console):
    owner = console.add_staff(GLOW, StaffRole.OWNER)
    secret = _enrol_totp(console, owner)
    http = console.client()
    console.post_sign_in(http, owner.email, PASSWORD)
    half_token = http.cookies["medspa_console"]
    out = http.post("/sign-out", data={}, headers={"Origin": console.base_url})
    assert out.status_code == 303 and out.headers["location"] == "/sign-in"
    with console.database.directory_scope() as session:
        revoked = session.execute(
            text("SELECT revoked_at IS NOT NULL FROM staff_sessions WHERE token_hash = :h"),
            {"h": store.token_hash(half_token)},
        ).scalar()
    assert revoked, "the half-signed-in session is revoked, not only its cookie cleared"
    # Whoever kept the cookie cannot finish the sign-in with a good code.
    replay = console.client()
    replay.cookies.set("medspa_console", half_token)
    finish = replay.post(
        "/sign-in/totp",
        data={"csrf_token": console.signin_token(replay), "code": pyotp.TOTP(secret).now(), "next": "/api/v1/me"},
        headers={"Origin": console.base_url},
    )
    assert not (finish.status_code == 303 and finish.headers.get("location") == "/api/v1/me")
    assert replay.get("/api/v1/me").status_code == 401


# ------------------------------------------------------------------ OpenID Connect
def _oidc_round_trip(console: ConsoleStack, http: httpx.Client, next_path: str = "/") -> httpx.Response:
    """Browser hops: console start → provider authorize → console callback."""
    start = http.get("/auth/oidc/start", params={"next": next_path})
    assert start.status_code == 302, start.text
    authorize = httpx.get(start.headers["location"], follow_redirects=False)
    assert authorize.status_code in (302, 307), authorize.text
    callback = urlsplit(authorize.headers["location"])
    assert f"{callback.scheme}://{callback.netloc}" == console.base_url
    return http.get(callback.path + "?" + callback.query)


def test_oidc_sign_in_with_pkce_maps_a_verified_email_to_the_staff_user(console):
    assert console.oidc is not None
    account = console.add_staff(GLOW, StaffRole.FRONT_DESK, password=None)
    console.oidc.next_user = OidcUser(email=account.email.upper())
    http = console.client()
    done = _oidc_round_trip(console, http, next_path=f"/clinics/{GLOW}/inbox")
    assert done.status_code == 303 and done.headers["location"] == f"/clinics/{GLOW}/inbox", done.text[:500]
    me = http.get("/api/v1/me").json()
    assert me["id"] == account.id
    authorize = console.oidc.authorize_requests[-1]
    assert authorize["code_challenge_method"] == "S256" and authorize["nonce"] and authorize["state"]
    assert authorize["redirect_uri"] == console.base_url + "/auth/oidc/callback"
    assert console.oidc.violations == []
    # the callback cannot be replayed: the code is spent and the state cookie is gone
    assert "medspa_oidc" not in http.cookies


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unverified", "verified email"),
        ("other_domain", "email domain"),
        ("unknown", "no active staff account"),
        ("rogue_key", "could not be verified"),
        ("wrong_nonce", "could not be verified"),
        ("wrong_issuer", "could not be verified"),
        ("no_state_cookie", "start again"),
    ],
)
def test_oidc_refuses_what_it_cannot_trust(console, setup, message):
    assert console.oidc is not None
    account = console.add_staff(GLOW, StaffRole.FRONT_DESK, password=None)
    oidc = console.oidc
    oidc.next_user = OidcUser(email=account.email, email_verified=setup != "unverified")
    if setup == "other_domain":
        oidc.next_user = OidcUser(email=f"{uuid.uuid4().hex[:6]}@gmail.com")
    if setup == "unknown":
        oidc.next_user = OidcUser(email=f"new-{uuid.uuid4().hex[:6]}@{OIDC_DOMAIN}")
    oidc.sign_with_rogue_key = setup == "rogue_key"
    oidc.wrong_nonce = setup == "wrong_nonce"
    oidc.id_token_issuer = "https://someone-else.example" if setup == "wrong_issuer" else None
    http = console.client()
    try:
        if setup == "no_state_cookie":
            start = http.get("/auth/oidc/start")
            authorize = httpx.get(start.headers["location"], follow_redirects=False)
            response = console.client().get(authorize.headers["location"].split(console.base_url, 1)[1])
        else:
            response = _oidc_round_trip(console, http)
    finally:
        oidc.sign_with_rogue_key = oidc.wrong_nonce = False
        oidc.id_token_issuer = None
    assert response.status_code in (403, 401), response.text[:300]
    assert message in _error(response)
    assert http.get("/api/v1/me").status_code == 401


def test_the_sign_in_page_offers_the_configured_provider(console):
    page = console.client().get("/sign-in")
    assert "Sign in with Test SSO" in page.text and page.headers["content-security-policy"].startswith("default-src")


# ------------------------------------------------------------------ what the app role can see of staff
def test_row_level_security_keeps_staff_inside_their_clinics(console):
    glow_only = console.add_staff(GLOW, StaffRole.FRONT_DESK)
    harbor_only = console.add_staff(HARBOR, StaffRole.FRONT_DESK)
    database = console.database
    with database.directory_scope() as session:
        assert session.execute(text("SELECT count(*) FROM staff_users")).scalar() == 0
        assert session.execute(text("SELECT count(*) FROM staff_memberships")).scalar() == 0
        one = session.execute(text("SELECT count(*) FROM medspa_staff_sign_in(:e)"), {"e": glow_only.email}).scalar()
        assert one == 1
    with database.tenant_scope(HARBOR) as session:
        emails = set(session.execute(text("SELECT email FROM staff_users")).scalars())
        assert harbor_only.email in emails and glow_only.email not in emails
        assert (
            session.execute(
                text("SELECT count(*) FROM staff_memberships WHERE clinic_id <> :c"), {"c": HARBOR}
            ).scalar()
            == 0
        )
        assert (
            session.execute(text("SELECT count(*) FROM staff_audit_log WHERE clinic_id <> :c"), {"c": HARBOR}).scalar()
            == 0
        )
    with database.tenant_scope(HARBOR) as session:
        store.set_staff_user(session, glow_only.id)  # myself: my row and memberships, not other clinics' staff
        assert set(session.execute(text("SELECT id FROM staff_users WHERE id = :i"), {"i": glow_only.id}).scalars())
        with pytest.raises(Exception, match="row-level security"):
            session.execute(
                text("INSERT INTO staff_memberships (clinic_id, staff_user_id, role) VALUES (:c, :u, 'owner')"),
                {"c": GLOW, "u": glow_only.id},
            )
    with database.tenant_scope(GLOW) as session, pytest.raises(Exception, match="permission denied"):
        session.execute(text("DELETE FROM staff_audit_log"))
