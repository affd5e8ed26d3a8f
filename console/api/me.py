"""Who am I, and which clinics may I work in."""

from __future__ import annotations

from pydantic import BaseModel

from console import store
from console.api.framework import ApiCall, api
from domain.staff_access import effective_permissions


class ClinicMembership(BaseModel):
    clinic_id: int
    slug: str
    name: str
    timezone: str
    role: str
    provider_id: int | None
    permissions: list[str]


class Me(BaseModel):
    id: int
    email: str
    display_name: str
    authenticated_by: str  # session | token
    second_factor: bool
    clinics: list[ClinicMembership]


class ClinicList(BaseModel):
    items: list[ClinicMembership]


def _memberships(call: ApiCall) -> list[ClinicMembership]:
    principal = call.principal
    rows = store.memberships_of(call.session, principal.staff_user_id)
    if principal.token_clinic_id is not None:  # a token sees only the clinic it was minted for
        rows = [m for m in rows if m.clinic_id == principal.token_clinic_id]
    return [
        ClinicMembership(
            clinic_id=m.clinic_id,
            slug=m.clinic_slug,
            name=m.clinic_name,
            timezone=m.timezone,
            role=m.role.value,
            provider_id=m.provider_id,
            permissions=sorted(p.value for p in effective_permissions(m.role, principal.token_scopes)),
        )
        for m in rows
    ]


@api("GET", "/me", summary="The signed-in staff user and their clinics", tag="identity", response=Me)
def get_me(call: ApiCall) -> Me:
    user = call.principal.user
    return Me(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        authenticated_by=call.principal.via,
        second_factor=user.has_totp,
        clinics=_memberships(call),
    )


@api("GET", "/clinics", summary="Clinics I belong to, with my role in each", tag="identity", response=ClinicList)
def list_my_clinics(call: ApiCall) -> ClinicList:
    return ClinicList(items=_memberships(call))
