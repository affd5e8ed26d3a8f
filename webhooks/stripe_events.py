"""Stripe webhook: verify ``Stripe-Signature`` on the raw body (300 s tolerance,
fail closed), validate (storable, id within its column), record the event in the
inbox keyed by its event id, enqueue (best effort; the sweeper backs it up).
Nothing before the insert touches Redis."""

from __future__ import annotations

import json
import logging

import stripe
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from medspa.broker import INBOUND_QUEUE, message_for
from medspa.logs import new_trace_id, trace_id_var
from webhooks.http import error, read_limited_body
from webhooks.inbox import EventRejected
from webhooks.state import AppState
from webhooks.validation import UNSTORABLE_MESSAGE, storable

log = logging.getLogger(__name__)

HANDLED_TYPES = frozenset(
    {"checkout.session.completed", "checkout.session.expired", "charge.refunded", "payment_intent.succeeded"}
)


async def stripe_webhook(request: Request) -> Response:
    state: AppState = request.app.state.medspa
    trace_id = new_trace_id()
    trace_id_var.set(trace_id)
    body = await read_limited_body(request, state.max_body_bytes)
    if isinstance(body, Response):
        return body
    signature = request.headers.get("stripe-signature")
    if not signature:
        return error(403, "missing Stripe-Signature")
    try:
        stripe.WebhookSignature.verify_header(body.decode("utf-8"), signature, state.stripe_webhook_secret, 300)
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        log.warning("stripe signature rejected")
        return error(403, "invalid Stripe-Signature")
    try:
        event = json.loads(body)
        event_id, event_type = event["id"], event["type"]
        obj = event["data"]["object"]
    except (ValueError, KeyError, TypeError):
        return error(400, "malformed Stripe event")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 255 or not isinstance(obj, dict):
        return error(400, "malformed Stripe event")
    if not storable(event):
        return error(400, f"the event {UNSTORABLE_MESSAGE}")
    if event_type not in HANDLED_TYPES:
        return JSONResponse({"received": True, "handled": False})
    metadata = obj.get("metadata") or {}
    try:
        clinic_id = int(metadata["clinic_id"])
    except (KeyError, ValueError, TypeError):
        log.warning("stripe event without clinic metadata", extra={"event_type": event_type})
        return JSONResponse({"received": True, "handled": False})
    payload = {"type": event_type, "object": obj, "created": event.get("created")}
    try:
        inbox_id = await state.inbox.record(clinic_id, "stripe", event_id, "stripe", payload, trace_id)
    except EventRejected:
        return error(400, "this event cannot be stored")
    if inbox_id is not None:
        state.enqueuer.submit(message_for("handle_payment_event", INBOUND_QUEUE, clinic_id, inbox_id))
    return JSONResponse({"received": True})
