"""Local test-mode checkout page (development only) for ``LocalTestPayments``.

Why: without Stripe keys the agent still hands out deposit links
(``{PUBLIC_BASE_URL}/dev/pay/{session_id}``).  This page stands in for Stripe
Checkout: its Pay button records a ``checkout.session.completed``-shaped event
in the inbox (source 'stripe', provider event id ``local:{session_id}``) and
enqueues ``handle_payment_event`` — exactly what the Stripe webhook does — so a
test-mode payment confirms the booking through the same worker code path.

Guards: served only outside production (``dev_mode``), only for local
sessions (ids ``cs_local_…``; a real Stripe session can never be "paid" here),
only while the payment is pending and unexpired.  Paying twice records one
event (the inbox is keyed by the session id).  The page shows no patient data.
"""

from __future__ import annotations

import hashlib
import html
import logging
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from db.directory import CLINIC_IDS_SQL, SET_CLINIC_SQL
from domain import deposits
from medspa.broker import INBOUND_QUEUE, message_for
from medspa.logs import new_trace_id, trace_id_var
from webhooks.state import AppState
from webhooks.validation import storable

log = logging.getLogger(__name__)

LOCAL_PREFIX = "cs_local_"

_FIND = """
SELECT p.clinic_id, p.appointment_id, p.amount_cents, p.currency, p.status, p.expires_at,
       coalesce(s.name, 'appointment') AS service_name, c.name AS clinic_name
FROM payments p JOIN appointments a ON a.id = p.appointment_id
JOIN clinics c ON c.id = p.clinic_id
LEFT JOIN services s ON s.id = a.service_id
WHERE p.checkout_session_id = %s
"""


async def _find_session(state: AppState, session_id: str) -> dict[str, Any] | None:
    """The payment behind a local session.  Payments are tenant rows (RLS) and the URL names no clinic,
    so look in each clinic in turn — a development convenience over a handful of clinics."""
    async with state.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(CLINIC_IDS_SQL)
        clinic_ids = [int(r[0]) for r in await cur.fetchall()]
        for clinic_id in clinic_ids:
            await conn.execute(SET_CLINIC_SQL, (str(clinic_id),))
            cur = await conn.execute(_FIND, (session_id,))
            row = await cur.fetchone()
            if row is not None:
                names = [d.name for d in cur.description or ()]
                return dict(zip(names, row, strict=True))
    return None


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}}
.box{{border:1px solid #ddd;border-radius:8px;padding:1.5rem}}.note{{color:#777;font-size:.85rem}}
button{{font-size:1rem;padding:.6rem 1.4rem;border:0;border-radius:6px;background:#635bff;color:#fff;cursor:pointer}}
</style></head><body><div class="box">{body}</div>
<p class="note">Local test mode: no card is charged. Configure STRIPE_API_KEY for real payments.</p>
</body></html>""",
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _money(cents: int, currency: str) -> str:
    amount = f"{cents // 100}" if cents % 100 == 0 else f"{cents / 100:.2f}"
    return f"${amount}" if currency.lower() == "usd" else f"{amount} {currency.upper()}"


async def _checked(request: Request) -> tuple[AppState, str, dict[str, Any]] | Response:
    state: AppState = request.app.state.medspa
    session_id = str(request.path_params.get("session_id", ""))
    if (
        not state.dev_mode
        or not session_id.startswith(LOCAL_PREFIX)
        or len(session_id) > 100
        or not storable(session_id)
    ):
        return _page("Not found", "<h1>Not found</h1>", 404)
    found = await _find_session(state, session_id)
    if found is None:
        return _page("Not found", "<h1>Unknown payment link</h1>", 404)
    return state, session_id, found


def _summary(found: dict[str, Any]) -> str:
    return (
        f"<p>{html.escape(found['clinic_name'])}</p><h1>Deposit {_money(int(found['amount_cents']), found['currency'])}"
        f"</h1><p>{html.escape(found['service_name'])} (appointment #{int(found['appointment_id'])})</p>"
    )


def _closed(found: dict[str, Any]) -> Response | None:
    if found["status"] in deposits.RECEIVED_STATUSES:  # money arrived (a failed refund or review: still paid)
        return _page("Paid", _summary(found) + "<p><strong>This deposit is paid.</strong></p>")
    if found["status"] != deposits.PENDING or found["expires_at"] <= datetime.now(UTC):
        return _page("Expired", _summary(found) + "<p>This payment link has expired.</p>", 410)
    return None


async def pay_page(request: Request) -> Response:
    """GET /dev/pay/{session_id}: the stand-in checkout page."""
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    _, session_id, found = checked
    closed = _closed(found)
    if closed is not None:
        return closed
    action = html.escape(request.url.path)
    return _page(
        "Pay deposit",
        _summary(found) + f'<form method="post" action="{action}"><button type="submit">Pay</button></form>',
    )


async def pay_submit(request: Request) -> Response:
    """POST /dev/pay/{session_id}: record a local 'checkout.session.completed' and enqueue it."""
    trace_id = new_trace_id()
    trace_id_var.set(trace_id)
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    state, session_id, found = checked
    closed = _closed(found)
    if closed is not None:
        return closed
    clinic_id = int(found["clinic_id"])
    payment_intent = "pi_local_" + hashlib.sha256(session_id.encode()).hexdigest()[:24]
    payload = {
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "object": {
            "id": session_id,
            "object": "checkout.session",
            "status": "complete",
            "payment_status": "paid",
            "payment_intent": payment_intent,
            "amount_total": int(found["amount_cents"]),
            "currency": found["currency"],
            "client_reference_id": str(found["appointment_id"]),
            "metadata": {"clinic_id": str(clinic_id), "appointment_id": str(found["appointment_id"])},
        },
    }
    inbox_id = await state.inbox.record(clinic_id, "stripe", f"local:{session_id}", "stripe", payload, trace_id)
    if inbox_id is not None:
        state.enqueuer.submit(message_for("handle_payment_event", INBOUND_QUEUE, clinic_id, inbox_id))
    log.info("local test payment recorded", extra={"clinic_id": clinic_id, "new": inbox_id is not None})
    return _page(
        "Paid",
        _summary(found) + "<p><strong>Payment received.</strong> You'll get a confirmation message shortly.</p>",
    )


def routes() -> list[Route]:
    """The dev payment routes (the app adds them outside production only)."""
    return [
        Route("/dev/pay/{session_id}", pay_page, methods=["GET"]),
        Route("/dev/pay/{session_id}", pay_submit, methods=["POST"]),
    ]
