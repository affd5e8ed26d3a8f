"""Who is calling and what they may do: the one check every API endpoint and console page goes through.

1. **Authenticate**: an ``Authorization: Bearer`` access token (integrations), else the session cookie (a
   browser).  A bad bearer token is a 401 — never a fall-back to the cookie.  The user must still be active,
   and a token's credentials version still the account's: a new password (reset by an owner or the operator)
   ends every token minted before it, as it ends every session (``console.tokens``).
2. **CSRF**: an unsafe method (POST, PUT, PATCH, DELETE) authenticated by the cookie must carry the session's
   synchronizer token (``X-CSRF-Token`` header or ``csrf_token`` form field) and, when the browser says where
   it comes from, come from the console's own origin.  Bearer requests carry no ambient credential.
3. **Clinic**: the clinic in the URL must be one the user belongs to (a token: the one it was minted for); the
   request then runs in that clinic's row-level-security scope.
4. **Role**: the permission the endpoint needs must be among the role's (a token's: its scopes ∩ its role's).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from console import store
from console.problems import Problem, forbidden, unauthenticated
from console.runtime import ConsoleRuntime
from console.tokens import InvalidAccessToken, credentials_version, verify_access_token
from domain.staff_access import PatientReach, Permission, effective_permissions, patient_reach

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class RequestFacts:
    """What the access check needs from a request (read on the event loop, checked in a worker thread)."""

    method: str
    path: str
    ip: str
    user_agent: str
    origin: str | None
    session_token: str | None
    bearer_token: str | None
    csrf_token: str | None


@dataclass(frozen=True)
class Principal:
    user: store.StaffUser
    via: str  # "session" | "token"
    session: store.BrowserSession | None = None
    token_clinic_id: int | None = None
    token_scopes: frozenset[str] | None = None

    @property
    def staff_user_id(self) -> int:
        return self.user.id


@dataclass(frozen=True)
class ClinicAccess:
    principal: Principal
    membership: store.Membership
    permissions: frozenset[Permission]

    @property
    def clinic_id(self) -> int:
        return self.membership.clinic_id

    @property
    def reach(self) -> PatientReach:
        return patient_reach(self.membership.role)

    @property
    def own_provider_id(self) -> int | None:
        """The provider whose patients and schedule bound what this user sees; None = the whole clinic."""
        return self.membership.provider_id if self.reach == PatientReach.OWN else None

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


def authenticate(session: Session, runtime: ConsoleRuntime, facts: RequestFacts) -> Principal:
    if facts.bearer_token is not None:
        try:
            claims = verify_access_token(runtime.keys, facts.bearer_token)
        except InvalidAccessToken:
            raise unauthenticated("The access token is not valid (expired, altered or not for this API).") from None
        store.set_staff_user(session, claims.staff_user_id)
        user = store.get_user(session, claims.staff_user_id)
        if user is None or not user.active:
            raise unauthenticated("The access token's user is disabled.")
        if claims.credentials_version != credentials_version(user.password_changed_at):
            raise unauthenticated("The access token was minted before its user's password changed.")
        return Principal(user, "token", token_clinic_id=claims.clinic_id, token_scopes=claims.scopes)
    if not facts.session_token:
        raise unauthenticated()
    browser = store.load_session(session, facts.session_token, runtime.session_idle)
    if browser is None or browser.second_factor_pending:
        raise unauthenticated("Your session has ended; sign in again.")
    store.set_staff_user(session, browser.staff_user_id)
    user = store.get_user(session, browser.staff_user_id)
    if user is None or not user.active:
        raise unauthenticated("This account is disabled.")
    return Principal(user, "session", session=browser)


def check_csrf(principal: Principal, facts: RequestFacts, runtime: ConsoleRuntime) -> None:
    if facts.method not in UNSAFE_METHODS or principal.via != "session" or principal.session is None:
        return
    check_same_origin(facts, runtime)
    expected = principal.session.csrf_token
    if not facts.csrf_token or not hmac.compare_digest(facts.csrf_token, expected):
        raise Problem(
            403,
            "CSRF check failed",
            "Reload the page and try again (the form's security token is missing).",
            kind="csrf",
        )


def check_same_origin(facts: RequestFacts, runtime: ConsoleRuntime) -> None:
    if facts.origin is not None and facts.origin != runtime.public_origin:
        raise Problem(403, "CSRF check failed", "The request came from another site.", kind="csrf")


def authorize_clinic(
    session: Session, principal: Principal, clinic_id: int, permission: Permission | None
) -> ClinicAccess:
    """The caller's access to ``clinic_id`` (inside that clinic's tenant scope), or 403."""
    if principal.token_clinic_id is not None and principal.token_clinic_id != clinic_id:
        raise forbidden("This access token is for another clinic.")
    membership = store.membership_in(session, principal.staff_user_id, clinic_id)
    if membership is None:
        raise forbidden("You are not a member of this clinic.")
    permissions = effective_permissions(membership.role, principal.token_scopes)
    if permission is not None and permission not in permissions:
        what = "this access token's scopes do not" if principal.via == "token" else "your role does not"
        raise forbidden(f"This needs the {permission.value} permission, which {what} include.")
    return ClinicAccess(principal, membership, permissions)


def request_origin(origin_header: str | None, referer: str | None) -> str | None:
    if origin_header:  # "null" (a sandboxed or privacy-redirected page) is another origin, and refused
        return origin_header
    if referer:
        split = urlsplit(referer)
        if split.scheme and split.netloc:
            return f"{split.scheme}://{split.netloc}"
    return None
