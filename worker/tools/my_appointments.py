"""The patient's own appointments: ``get_my_appointments`` and the deposit link (``create_deposit_link``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from db.engine import commit_pipeline
from domain.appointments import PENDING_DEPOSIT, money, patient_may_change
from domain.ports import DepositRequest
from domain.prompt import local_label
from domain.tools import CreateDepositLink, ToolArgs
from domain.visits import VisitPolicy
from worker.appointments.store import UPCOMING_OF_CONVERSATION, upcoming_views
from worker.tools.context import ToolContext, ToolError

OPEN_LINK = text(
    """SELECT url, expires_at FROM payments
       WHERE appointment_id = :id AND status = 'pending' AND expires_at > :now ORDER BY id DESC LIMIT 1"""
)
INSERT_PAYMENT = text(
    """INSERT INTO payments (clinic_id, appointment_id, client_id, provider, checkout_session_id,
           amount_cents, currency, status, url, expires_at)
       VALUES (:c, :a, :client, :prov, :sid, :amt, :cur, 'pending', :url, :exp)
       ON CONFLICT (checkout_session_id) DO NOTHING"""
)


def get_my_appointments(ctx: ToolContext, args: ToolArgs) -> dict[str, Any]:
    # The turn read the patient's upcoming appointments with its snapshot (the prompt shows them); that list
    # stands until a tool that may change it runs (``ToolContext.known_upcoming``).  The ones shown here are
    # those the patient can still move or cancel (the domain's rule, the one the cancel and move tools apply).
    upcoming = ctx.known_upcoming
    if upcoming is None:
        with ctx.database.tenant_connection(ctx.clinic_id) as conn:
            cursor = conn.execute(UPCOMING_OF_CONVERSATION, {"id": ctx.conversation_id, "now": ctx.now})
            commit_pipeline(conn)  # the rows come back with the commit: one round trip
            upcoming = upcoming_views(cursor.fetchall())
        ctx.known_upcoming = upcoming
    clinic = ctx.clinic
    return {
        "appointments": [
            {
                "appointment_id": a.id,
                "service": a.service_name,
                "provider": a.provider_name,
                "start": ctx.iso_local(a.starts_at),
                "label": local_label(a.starts_at, clinic.timezone),
                "status": a.status,
                "deposit_due": money(a.deposit_cents) if a.status == PENDING_DEPOSIT and a.deposit_cents else None,
            }
            for a in upcoming
            if patient_may_change(a.status, a.starts_at, ctx.now)
        ]
    }


def create_deposit_link(ctx: ToolContext, args: CreateDepositLink) -> dict[str, Any]:
    clinic = ctx.clinic
    with ctx.scope() as session:
        appt = ctx.own_appointment(session, args.appointment_id)
        if appt.status != PENDING_DEPOSIT or not appt.deposit_cents:
            raise ToolError("that appointment does not need a deposit")
        existing = session.execute(OPEN_LINK, {"id": appt.id, "now": ctx.now}).one_or_none()
    if existing is not None:
        return {"ok": True, "url": existing.url, "amount": money(appt.deposit_cents), "reused": True}
    expires = appt.hold_expires_at or ctx.now + timedelta(minutes=ctx.hold_minutes)
    base = ctx.public_base_url.rstrip("/")
    link = ctx.payments.create_deposit_checkout(
        DepositRequest(
            clinic_id=ctx.clinic_id,
            appointment_id=appt.id,
            amount_cents=int(appt.deposit_cents),
            currency=clinic.currency,
            description=f"Deposit: {appt.what} at {clinic.name}",
            expires_at=expires,
            idempotency_key=f"deposit:{appt.id}",
            success_url=f"{base}/deposit/done?appointment={appt.id}",
            cancel_url=f"{base}/deposit/cancelled?appointment={appt.id}",
            metadata={"conversation_id": str(ctx.conversation_id)},
            save_card_terms=VisitPolicy.from_policies(clinic.policies).card_terms(clinic.name),
        )
    )
    provider = "local" if link.session_id.startswith("cs_local_") else "stripe"
    with ctx.scope() as session:
        session.execute(
            INSERT_PAYMENT,
            {
                "c": ctx.clinic_id,
                "a": appt.id,
                "client": ctx.client_id,
                "prov": provider,
                "sid": link.session_id,
                "amt": int(appt.deposit_cents),
                "cur": clinic.currency,
                "url": link.url,
                "exp": link.expires_at,
            },
        )
    return {
        "ok": True,
        "url": link.url,
        "amount": money(int(appt.deposit_cents)),
        "pay_by": local_label(expires, clinic.timezone),
    }
