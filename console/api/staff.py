"""Managing the clinic's staff (owners only): add someone with a role (a new account, or an existing one without
a password joining this clinic), change a role, remove from the clinic, disable or enable, reset a password.
The rules are ``console.staff_admin``'s — the same ``medspa staff-users`` applies; the list is
``GET /clinics/{clinic_id}/staff`` (``console/api/admin.py``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from console import staff_admin, store
from console.api.framework import ApiCall, ApiModel, api
from console.passwords import MIN_PASSWORD_LENGTH
from console.problems import Problem
from domain.staff_access import Permission, StaffRole

_STATUS = {"invalid": 400, "not-found": 404, "conflict": 409}
_TITLE = {"invalid": "Invalid input", "not-found": "Not found", "conflict": "Conflict"}


class StaffAdd(ApiModel):
    email: str = Field(min_length=3, max_length=320)
    role: StaffRole
    display_name: str = Field(default="", max_length=200)
    provider_id: int | None = Field(default=None, ge=1, description="the provider this person is (role provider)")
    password: str | None = Field(
        default=None,
        min_length=MIN_PASSWORD_LENGTH,
        max_length=1024,
        description="a first password for a new account; none: sign-in through the identity provider only",
    )


class RoleChange(ApiModel):
    role: StaffRole
    provider_id: int | None = Field(default=None, ge=1, description="required for, and only for, role provider")


class PasswordReset(ApiModel):
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)


class StaffChanged(BaseModel):
    id: int
    email: str
    role: str | None  # None: no longer on this clinic's staff
    provider_id: int | None
    disabled: bool
    created: bool = False


def admin_problem(exc: staff_admin.StaffAdminError) -> Problem:
    errors = [{"field": exc.field, "message": str(exc)}] if exc.field else None
    return Problem(
        _STATUS[exc.kind], _TITLE[exc.kind], str(exc), kind=exc.kind.replace("invalid", "validation"), errors=errors
    )


def run_change(call: ApiCall, change: Any) -> StaffChanged:
    """A ``staff_admin`` change with the caller as actor; its refusals as problem details; the member after it."""
    try:
        result: staff_admin.StaffChange = change(call.actor())
    except staff_admin.StaffAdminError as exc:
        raise admin_problem(exc) from None
    membership = store.membership_in(call.session, result.staff_user_id, call.clinic.clinic_id)
    user = store.get_user(call.session, result.staff_user_id) if membership else None
    return StaffChanged(
        id=result.staff_user_id,
        email=result.email,
        role=membership.role.value if membership else None,
        provider_id=membership.provider_id if membership else None,
        disabled=bool(user and not user.active),
        created=result.created,
    )


def _target(call: ApiCall) -> int:
    return int(call.path_params["staff_user_id"])


@api(
    "POST",
    "/clinics/{clinic_id:int}/staff",
    summary="Add a staff member with a role: a new account, or an existing single sign-on one joining (owners only)",
    tag="administration",
    permission=Permission.STAFF_MANAGE,
    body=StaffAdd,
    response=StaffChanged,
    status_code=201,
)
def add_staff(call: ApiCall) -> StaffChanged:
    """An email that already has an account (at another clinic) joins as it is, and only when it has no password
    (single sign-on only) — one with a password is a 409: the operator adds it (``medspa staff-users add``), as
    its password may be one another clinic's owner set.  One already on this clinic's staff is a 409 too (change
    the role instead)."""
    body: StaffAdd = call.body
    return run_change(
        call,
        lambda actor: staff_admin.add_staff(
            call.session,
            call.clinic.clinic_id,
            actor,
            email=body.email,
            role=body.role,
            provider_id=body.provider_id,
            display_name=body.display_name,
            password=body.password,
        ),
    )


@api(
    "PUT",
    "/clinics/{clinic_id:int}/staff/{staff_user_id:int}/role",
    summary="Change a staff member's role in this clinic (owners only; the clinic keeps an active owner)",
    tag="administration",
    permission=Permission.STAFF_MANAGE,
    body=RoleChange,
    response=StaffChanged,
)
def change_role(call: ApiCall) -> StaffChanged:
    body: RoleChange = call.body
    return run_change(
        call,
        lambda actor: staff_admin.set_role(
            call.session, call.clinic.clinic_id, actor, _target(call), body.role, body.provider_id
        ),
    )


@api(
    "POST",
    "/clinics/{clinic_id:int}/staff/{staff_user_id:int}/disable",
    summary="Disable an account: signed out everywhere, its API tokens stop working (owners only)",
    tag="administration",
    permission=Permission.STAFF_MANAGE,
    response=StaffChanged,
)
def disable_staff(call: ApiCall) -> StaffChanged:
    """Not your own, not the last active owner, and only an account that works at this clinic alone (409)."""
    return run_change(
        call, lambda actor: staff_admin.set_disabled(call.session, call.clinic.clinic_id, actor, _target(call), True)
    )


@api(
    "POST",
    "/clinics/{clinic_id:int}/staff/{staff_user_id:int}/enable",
    summary="Enable a disabled account again (owners only)",
    tag="administration",
    permission=Permission.STAFF_MANAGE,
    response=StaffChanged,
)
def enable_staff(call: ApiCall) -> StaffChanged:
    return run_change(
        call, lambda actor: staff_admin.set_disabled(call.session, call.clinic.clinic_id, actor, _target(call), False)
    )


@api(
    "POST",
    "/clinics/{clinic_id:int}/staff/{staff_user_id:int}/password",
    summary="Set a new password for a staff member; their sessions and API tokens end (owners only)",
    tag="administration",
    permission=Permission.STAFF_MANAGE,
    body=PasswordReset,
    response=StaffChanged,
)
def reset_staff_password(call: ApiCall) -> StaffChanged:
    """Only for an account that works at this clinic alone (409 otherwise: the password is theirs everywhere)."""
    body: PasswordReset = call.body
    return run_change(
        call,
        lambda actor: staff_admin.reset_password(
            call.session, call.clinic.clinic_id, actor, _target(call), body.password
        ),
    )


@api(
    "DELETE",
    "/clinics/{clinic_id:int}/staff/{staff_user_id:int}",
    summary="Remove someone from this clinic's staff; their account and other clinics stay (owners only)",
    tag="administration",
    permission=Permission.STAFF_MANAGE,
    response=StaffChanged,
)
def remove_staff(call: ApiCall) -> StaffChanged:
    """Not yourself, not the last active owner.  Their next request to this clinic is refused."""
    return run_change(
        call, lambda actor: staff_admin.remove_member(call.session, call.clinic.clinic_id, actor, _target(call))
    )
