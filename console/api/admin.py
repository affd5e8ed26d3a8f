"""Owner-only: the audit log, the clinic's staff, and access tokens for integrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from console import store
from console.api.framework import ApiCall, ApiModel, Page, PageQuery, api, decode_cursor, encode_cursor
from console.problems import Problem, forbidden, not_found
from console.queries import content as queries
from console.tokens import MIN_TTL_S, mint_access_token
from domain.staff_access import Permission, parse_scopes


class AuditQuery(PageQuery):
    client_id: int | None = Field(default=None, ge=1, description="only actions on this patient")


class AuditEntry(BaseModel):
    id: int
    created_at: datetime
    staff_user_id: int | None
    actor: str
    action: str
    target_type: str
    target_id: int | None
    client_id: int | None
    detail: dict[str, Any]
    ip: str


class StaffMember(BaseModel):
    id: int
    email: str
    display_name: str
    role: str
    provider_id: int | None
    disabled: bool
    second_factor: bool
    last_sign_in_at: datetime | None


class StaffList(BaseModel):
    items: list[StaffMember]


class TokenRequest(ApiModel):
    scopes: list[str] = Field(min_length=1, max_length=20, description="permissions the token carries")
    ttl_s: int = Field(default=900, ge=MIN_TTL_S, description="lifetime in seconds (at most the configured maximum)")
    staff_user_id: int | None = Field(default=None, ge=1, description="whom it acts for (default: me)")


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_at: datetime
    scopes: list[str]
    clinic_id: int
    staff_user_id: int


@api(
    "GET",
    "/clinics/{clinic_id:int}/audit",
    summary="The audit log of staff actions, newest first (owners only)",
    tag="administration",
    permission=Permission.AUDIT_READ,
    query=AuditQuery,
    response=Page[AuditEntry],
)
def list_audit(call: ApiCall) -> Page[AuditEntry]:
    query: AuditQuery = call.query
    before = decode_cursor(query.cursor, (int,))[0] if query.cursor else None
    rows = queries.audit_log(call.session, client_id=query.client_id, before_id=before, limit=query.limit + 1)
    page = [AuditEntry.model_validate(r) for r in rows[: query.limit]]
    return Page[AuditEntry](items=page, next_cursor=encode_cursor(page[-1].id) if len(rows) > query.limit else None)


@api(
    "GET",
    "/clinics/{clinic_id:int}/staff",
    summary="The clinic's staff and their roles (owners only)",
    tag="administration",
    permission=Permission.STAFF_MANAGE,
    response=StaffList,
)
def list_staff(call: ApiCall) -> StaffList:
    return StaffList(
        items=[
            StaffMember(
                id=int(r["id"]),  # type: ignore[call-overload]
                email=str(r["email"]),
                display_name=str(r["display_name"]),
                role=str(r["role"]),
                provider_id=r["provider_id"],  # type: ignore[arg-type]
                disabled=r["disabled_at"] is not None,
                second_factor=bool(r["has_totp"]),
                last_sign_in_at=r["last_sign_in_at"],  # type: ignore[arg-type]
            )
            for r in store.clinic_staff(call.session, call.clinic.clinic_id)
        ]
    )


@api(
    "POST",
    "/clinics/{clinic_id:int}/tokens",
    summary="Mint a short-lived access token for an integration (owners only; audited)",
    tag="administration",
    permission=Permission.TOKENS_MINT,
    body=TokenRequest,
    response=TokenOut,
    status_code=201,
)
def create_token(call: ApiCall) -> TokenOut:
    """The token acts for a staff member of this clinic (default: the caller) with at most that member's role;
    it is valid in this clinic only, for ``ttl_s`` seconds (capped by CONSOLE_ACCESS_TOKEN_MAX_TTL_S), and
    until the member is disabled, leaves the clinic or gets a new password."""
    if call.principal.via != "session":
        raise forbidden("An access token cannot mint another; sign in to the console.")
    body: TokenRequest = call.body
    max_ttl = call.runtime.settings.console_access_token_max_ttl_s
    if body.ttl_s > max_ttl:
        raise Problem(
            400,
            "Invalid input",
            f"ttl_s: at most {max_ttl} seconds",
            kind="validation",
            errors=[{"field": "ttl_s", "message": f"at most {max_ttl}"}],
        )
    subject_id = body.staff_user_id or call.principal.staff_user_id
    membership = store.membership_in(call.session, subject_id, call.clinic.clinic_id)
    subject = store.get_user(call.session, subject_id) if membership else None
    if membership is None or subject is None or not subject.active:
        raise not_found("active staff member with that id")
    scopes, refused = parse_scopes(body.scopes, membership.role)
    if refused:
        raise Problem(
            400,
            "Invalid input",
            f"scopes not allowed for a {membership.role.value}: {', '.join(refused)}",
            kind="validation",
            errors=[{"field": "scopes", "message": f"not allowed: {', '.join(refused)}"}],
        )
    token, claims = mint_access_token(
        call.runtime.keys,
        staff_user_id=subject_id,
        clinic_id=call.clinic.clinic_id,
        scopes=frozenset(s.value for s in scopes),
        ttl_s=body.ttl_s,
        password_changed_at=subject.password_changed_at,
        now=call.now,
    )
    call.audit(
        "token.minted",
        target_type="staff_user",
        target_id=subject_id,
        detail={"token_id": claims.token_id, "scopes": sorted(claims.scopes), "expires_at": claims.expires_at},
    )
    return TokenOut(
        access_token=token,
        expires_at=claims.expires_at,
        scopes=sorted(claims.scopes),
        clinic_id=claims.clinic_id,
        staff_user_id=subject_id,
    )
