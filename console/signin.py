"""Signing in: password (+ the optional TOTP second factor), OpenID Connect, signing out.

HTTP-free: the pages (console/web/auth_pages.py) call these in a worker thread and turn the result into
cookies and redirects.  Messages are what a person reads; none says whether an email belongs to a staff user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from console import passwords, store, totp
from console.runtime import ConsoleRuntime

log = logging.getLogger(__name__)

_ACCOUNT_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 7177))")
WRONG_CREDENTIALS = "That email and password do not match an active staff account."


@dataclass(frozen=True)
class SignInResult:
    ok: bool
    message: str = ""
    session: store.NewSession | None = None
    second_factor_pending: bool = False
    status: int = 200  # for a refusal: 401 wrong credentials, 429 locked out
    restart: bool = False  # the half-signed-in session is gone: back to the first step


def _locked_message(lockout: store.Lockout) -> str:
    minutes = max(1, (lockout.retry_after_s + 59) // 60)
    who = "this account" if lockout.scope == "account" else "your network address"
    return (
        f"Too many failed sign-in attempts: sign-in for {who} is locked for {minutes} more minute"
        f"{'s' if minutes != 1 else ''}. Try again later, or ask a clinic owner to reset your password."
    )


def password_sign_in(runtime: ConsoleRuntime, email: str, password: str, ip: str, user_agent: str) -> SignInResult:
    email = email.strip()
    key = runtime.keys.account_key(email)
    with runtime.database.directory_scope() as session:
        # One sign-in per account at a time: concurrent guesses cannot slip past the failure count.
        session.execute(_ACCOUNT_LOCK, {"key": key})
        lockout = store.lockout_for(session, key, ip, runtime.throttle)
        if lockout is not None:
            log.warning("console sign-in refused: locked out", extra={"scope": lockout.scope})
            return SignInResult(False, _locked_message(lockout), status=429)
        row = store.find_for_sign_in(session, email) if email else None
        matched = passwords.verify_password(row.password_hash if row else None, password)
        ok = bool(row is not None and matched and row.disabled_at is None)
        store.record_attempt(session, key, ip, ok, runtime.throttle)
        if not ok or row is None:
            log.info("console sign-in failed", extra={"method": "password"})
            now_locked = store.lockout_for(session, key, ip, runtime.throttle)
            return SignInResult(False, _locked_message(now_locked) if now_locked else WRONG_CREDENTIALS, status=401)
        store.set_staff_user(session, row.id)
        if row.password_hash and passwords.needs_rehash(row.password_hash):
            store.rehash_password(session, row.id, row.password_hash, passwords.hash_password(password))
        return _open_session(runtime, session, row, "password", ip, user_agent)


def _open_session(
    runtime: ConsoleRuntime, session: Any, row: store.SignInRow, method: str, ip: str, user_agent: str
) -> SignInResult:
    pending = row.totp_secret is not None
    new = store.create_session(
        session,
        staff_user_id=row.id,
        auth_method=method,
        second_factor_pending=pending,
        ip=ip,
        user_agent=user_agent,
        ttl=runtime.session_ttl,
    )
    if not pending:
        store.mark_signed_in(session, row.id)
    log.info("console sign-in", extra={"staff_user_id": row.id, "method": method, "second_factor": pending})
    return SignInResult(True, session=new, second_factor_pending=pending)


def second_factor(runtime: ConsoleRuntime, session_token: str, code: str, ip: str) -> SignInResult:
    """Check the TOTP code of a half-signed-in session.  Wrong codes count towards the account's lockout, so six
    digits cannot be guessed; an accepted code cannot be used twice."""
    with runtime.database.directory_scope() as session:
        pending = store.load_session(session, session_token, runtime.session_idle)
        if pending is None or not pending.second_factor_pending:
            return SignInResult(False, "Your sign-in has expired; start again.", status=401, restart=True)
        store.set_staff_user(session, pending.staff_user_id)
        user = store.get_user(session, pending.staff_user_id)
        row = store.find_for_sign_in(session, user.email) if user else None
        if row is None or row.disabled_at is not None or row.totp_secret is None:
            store.revoke_session(session, pending.id)
            return SignInResult(False, WRONG_CREDENTIALS, status=401, restart=True)
        key = runtime.keys.account_key(row.email)
        session.execute(_ACCOUNT_LOCK, {"key": key})
        lockout = store.lockout_for(session, key, ip, runtime.throttle)
        if lockout is not None:
            store.revoke_session(session, pending.id)
            return SignInResult(False, _locked_message(lockout), status=429, restart=True)
        step = totp.matching_step(
            totp.decrypt_secret(runtime.keys, row.totp_secret), code, last_step=row.totp_last_step
        )
        ok = step is not None and store.use_totp_step(session, row.id, step)
        store.record_attempt(session, key, ip, ok, runtime.throttle)
        if not ok:
            now_locked = store.lockout_for(session, key, ip, runtime.throttle)
            if now_locked:
                store.revoke_session(session, pending.id)
                return SignInResult(False, _locked_message(now_locked), status=429, restart=True)
            return SignInResult(
                False, "That code is not right (or was already used). Enter the current code.", status=401
            )
        rotated = store.complete_second_factor(session, pending.id)
        store.mark_signed_in(session, row.id)
        return SignInResult(True, session=rotated)


def oidc_sign_in(runtime: ConsoleRuntime, claims: dict[str, Any], ip: str, user_agent: str) -> SignInResult:
    """Map a validated ID token (issuer, audience, signature, expiry and nonce already checked by authlib) to an
    existing staff user by verified email in an allowed domain.  Nobody is created on the fly."""
    assert runtime.oidc is not None
    email = str(claims.get("email") or "").strip()
    if not email or claims.get("email_verified") is not True:
        return SignInResult(False, "Your identity provider did not confirm a verified email address.", status=403)
    domain = email.rsplit("@", 1)[-1].lower()
    if domain not in runtime.oidc.allowed_domains:
        log.info("console OIDC sign-in refused: domain not allowed")
        return SignInResult(False, "Accounts from that email domain cannot sign in to this console.", status=403)
    with runtime.database.directory_scope() as session:
        row = store.find_for_sign_in(session, email)
        if row is None or row.disabled_at is not None:
            log.info("console OIDC sign-in refused: no active staff user")
            return SignInResult(
                False, "There is no active staff account for that email. Ask a clinic owner to add you.", status=403
            )
        store.set_staff_user(session, row.id)
        store.record_attempt(session, runtime.keys.account_key(email), ip, True, runtime.throttle)
        return _open_session(runtime, session, row, "oidc", ip, user_agent)
