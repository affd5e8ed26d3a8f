"""Clients: search and profile (consent ledger, upcoming visits).  A provider sees only their own patients."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from console.api.framework import ApiCall, Page, PageQuery, api, decode_cursor, encode_cursor
from console.problems import forbidden, not_found
from console.queries import clients as queries
from domain.staff_access import Permission


class ClientSearchQuery(PageQuery):
    q: str | None = Field(default=None, max_length=200, description="part of a name, email or phone number")


class ClientSummary(BaseModel):
    id: int
    name: str | None
    phone: str | None
    email: str | None
    consent_state: str
    tags: list[str]
    last_visit: datetime | None
    next_visit: datetime | None


class ConsentEvent(BaseModel):
    id: int
    kind: str
    source: str
    wording: str
    created_at: datetime


class Visit(BaseModel):
    id: int
    starts_at: datetime
    ends_at: datetime
    status: str
    provider_id: int | None
    provider_name: str | None
    service_id: int | None
    service_name: str | None
    deposit_cents: int


class ClientConversation(BaseModel):
    id: int
    channel: str
    agent_state: str
    handoff_urgency: str | None
    last_message_at: datetime | None


class ClientProfile(BaseModel):
    id: int
    name: str | None
    phone: str | None
    email: str | None
    timezone: str | None
    consent_state: str
    sms_status: str
    tags: list[str]
    notes: str
    created_at: datetime
    consent_ledger: list[ConsentEvent]
    upcoming_visits: list[Visit]
    recent_visits: list[Visit]
    conversations: list[ClientConversation]


@api(
    "GET",
    "/clinics/{clinic_id:int}/clients",
    summary="Search clients (by name, email or phone digits)",
    tag="clients",
    permission=Permission.CLIENTS_READ,
    query=ClientSearchQuery,
    response=Page[ClientSummary],
)
def search_clients(call: ApiCall) -> Page[ClientSummary]:
    query: ClientSearchQuery = call.query
    after = decode_cursor(query.cursor, (str, int)) if query.cursor else None
    rows = queries.search(
        call.session, q=query.q, provider_id=call.clinic.own_provider_id, after=after, limit=query.limit + 1
    )
    items = [ClientSummary.model_validate(r) for r in rows[: query.limit]]
    cursor = encode_cursor(rows[query.limit - 1]["sort_name"], items[-1].id) if len(rows) > query.limit else None
    return Page[ClientSummary](items=items, next_cursor=cursor)


def load_profile(call: ApiCall, client_id: int) -> ClientProfile:
    """The profile, or 404 (no such client in this clinic) / 403 (not one of this provider's patients).  Shared
    by the API and the console page; each view is audited (who looked at which patient)."""
    found = queries.lookup(call.session, client_id, call.clinic.own_provider_id)
    if not found.found or found.row is None:
        raise not_found("client")
    if not found.within_reach:
        raise forbidden("This patient has no appointment with you.")
    call.audit("client.viewed", target_type="client", target_id=client_id, client_id=client_id)
    return ClientProfile(
        **{k: v for k, v in found.row.items() if k != "within_reach"},
        consent_ledger=[ConsentEvent.model_validate(r) for r in queries.consent_ledger(call.session, client_id)],
        upcoming_visits=[
            Visit.model_validate(r) for r in queries.visits(call.session, client_id, upcoming=True, now=call.now)
        ],
        recent_visits=[
            Visit.model_validate(r) for r in queries.visits(call.session, client_id, upcoming=False, now=call.now)
        ],
        conversations=[ClientConversation.model_validate(r) for r in queries.conversations(call.session, client_id)],
    )


@api(
    "GET",
    "/clinics/{clinic_id:int}/clients/{client_id:int}",
    summary="A client's profile: details, consent ledger, upcoming and recent visits, conversations",
    tag="clients",
    permission=Permission.CLIENTS_READ,
    response=ClientProfile,
)
def get_client(call: ApiCall) -> ClientProfile:
    return load_profile(call, int(call.path_params["client_id"]))
