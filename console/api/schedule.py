"""The calendar (a day's appointments per provider) and the catalogue (services, providers)."""

from __future__ import annotations

from datetime import date, datetime
from datetime import date as Date  # the query's field is called `date`
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from console.api.framework import ApiCall, Page, PageQuery, api, decode_cursor, encode_cursor
from console.problems import forbidden, not_found
from console.queries import schedule as queries
from domain.staff_access import Permission


class DayQuery(PageQuery):
    date: Date | None = Field(default=None, description="YYYY-MM-DD in the clinic's time zone (default: today)")
    provider_id: int | None = Field(default=None, ge=1, description="one provider's column")
    include_cancelled: bool = False
    limit: int = Field(default=200, ge=1, le=500)


class CalendarEntry(BaseModel):
    id: int
    kind: str  # appointment | block
    starts_at: datetime
    ends_at: datetime
    status: str
    provider_id: int
    provider_name: str
    client_id: int | None
    client_name: str | None
    service_id: int | None
    service_name: str | None
    deposit_cents: int
    conversation_id: int | None


class ServiceOut(BaseModel):
    id: int
    slug: str
    name: str
    category: str
    description: str
    duration_min: int
    buffer_min: int
    price_cents: int
    price_note: str
    deposit_cents: int
    active: bool


class ProviderOut(BaseModel):
    id: int
    slug: str
    name: str
    title: str
    active: bool
    working_hours: dict[str, Any]
    service_ids: list[int]


class ServiceList(BaseModel):
    items: list[ServiceOut]


class ProviderList(BaseModel):
    items: list[ProviderOut]


def load_day(call: ApiCall, query: DayQuery) -> tuple[date, int | None, Page[CalendarEntry]]:
    """The day's entries.  A provider sees only their own column: asking for another provider's is a 403."""
    access = call.clinic
    provider_id = query.provider_id
    if access.own_provider_id is not None:
        if provider_id not in (None, access.own_provider_id):
            raise forbidden("You can see only your own schedule.")
        provider_id = access.own_provider_id
    elif provider_id is not None and not queries.provider_exists(call.session, provider_id):
        raise not_found("provider")
    day = query.date or call.now.astimezone(ZoneInfo(access.membership.timezone)).date()
    after = decode_cursor(query.cursor, (datetime, int)) if query.cursor else None
    rows = queries.day(
        call.session,
        day=day,
        timezone=access.membership.timezone,
        provider_id=provider_id,
        include_cancelled=query.include_cancelled,
        after=after,
        limit=query.limit + 1,
    )
    page = rows[: query.limit]
    cursor = encode_cursor(page[-1]["starts_at"], page[-1]["id"]) if len(rows) > query.limit else None
    return (
        day,
        provider_id,
        Page[CalendarEntry](items=[CalendarEntry.model_validate(r) for r in page], next_cursor=cursor),
    )


@api(
    "GET",
    "/clinics/{clinic_id:int}/appointments",
    summary="A day's appointments and blocked time (clinic time zone), optionally for one provider",
    tag="calendar",
    permission=Permission.APPOINTMENTS_READ,
    query=DayQuery,
    response=Page[CalendarEntry],
)
def list_appointments(call: ApiCall) -> Page[CalendarEntry]:
    return load_day(call, call.query)[2]


@api(
    "GET",
    "/clinics/{clinic_id:int}/services",
    summary="The clinic's services",
    tag="catalogue",
    permission=Permission.CATALOG_READ,
    response=ServiceList,
)
def list_services(call: ApiCall) -> ServiceList:
    return ServiceList(items=[ServiceOut.model_validate(r) for r in queries.services(call.session)])


@api(
    "GET",
    "/clinics/{clinic_id:int}/providers",
    summary="The clinic's providers and the services each performs",
    tag="catalogue",
    permission=Permission.CATALOG_READ,
    response=ProviderList,
)
def list_providers(call: ApiCall) -> ProviderList:
    return ProviderList(items=[ProviderOut.model_validate(r) for r in queries.providers(call.session)])
