"""Twilio webhooks: inbound SMS and delivery status callbacks.

Inbound: size check → parse form → verify ``X-Twilio-Signature`` against the
public URL → validate fields (present, storable, within their columns' lengths)
→ route to the clinic by ``To`` → rate limit (fails open: Redis never stands
between a text and its inbox row; a danger sign passes it, ``passes_every_limit``) → durable inbox row keyed by ``MessageSid``
→ 200 with empty TwiML → enqueue (best effort; the sweeper backs it up).
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from twilio.request_validator import RequestValidator, compare

from domain.media import MAX_MEDIA_PER_MESSAGE
from domain.outbox import STATUS_RANK
from medspa.broker import INBOUND_QUEUE, message_for
from medspa.logs import new_trace_id, trace_id_var
from webhooks.http import error, public_url, read_limited_body
from webhooks.inbox import EventRejected
from webhooks.ratelimit import passes_every_limit
from webhooks.state import AppState
from webhooks.validation import UNSTORABLE_MESSAGE, too_long_field, unstorable_field

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
_REQUIRED_SMS_FIELDS = ("MessageSid", "From", "To", "Body")
# Fields that land in length-limited columns (provider_event_id, sender_key; the sender's number in
# ``clients.phone_e164``, 20 characters: an E.164 number is at most 16).  Refused here, a longer ``From`` (a
# ``whatsapp:`` sender) is a 400 the provider shows; accepted, it was a 200 for a text no worker could attach.
_SMS_FIELD_LIMITS = {"MessageSid": 64, "From": 20, "To": 64}
# A status callback's values that land in the outbox row's columns (``error_code``, ``provider_message_id``).
_STATUS_FIELD_LIMITS = {"ErrorCode": 32, "MessageSid": 100}


async def verified_form(request: Request, state: AppState) -> dict[str, str] | Response:
    """The request's form once its ``X-Twilio-Signature`` checked out (every Twilio route's first step: SMS,
    status callbacks, voice); a 413/400/403 response otherwise."""
    body = await read_limited_body(request, state.max_body_bytes)
    if isinstance(body, Response):
        return body
    try:
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        return error(400, "body is not valid UTF-8 form data")
    signature = request.headers.get("x-twilio-signature")
    url = public_url(state.public_base_url, request)
    if not signature or not _signature_valid(state.twilio_validator, url, params, signature):
        log.warning("twilio signature rejected", extra={"path": request.url.path})
        return error(403, "invalid or missing X-Twilio-Signature")
    bad = unstorable_field(params)
    if bad is not None:
        return error(400, f"{bad} {UNSTORABLE_MESSAGE}")
    return params


def _signature_valid(validator: RequestValidator, url: str, params: dict[str, str], signature: str) -> bool:
    """The SDK's check, cheapest first: ``validate`` always computes two HMACs (the URL with and without its
    port); the exact URL we were called at matches in the usual case, and only a mismatch pays for the full
    check.  Never accepts anything ``validate`` would reject: the exact URL is one of the two it tries."""
    if "bodySHA256" not in url and compare(validator.compute_signature(url, params), signature):
        return True
    return bool(validator.validate(url, params, signature))


async def inbound_sms(request: Request) -> Response:
    state: AppState = request.app.state.medspa
    trace_id = new_trace_id()
    trace_id_var.set(trace_id)
    form = await verified_form(request, state)
    if isinstance(form, Response):
        return form
    missing = [name for name in _REQUIRED_SMS_FIELDS if name not in form]
    if missing:
        return error(400, f"missing required field(s): {', '.join(missing)}")
    too_long = too_long_field(form, _SMS_FIELD_LIMITS)
    if too_long is not None:
        return error(400, f"{too_long} is longer than {_SMS_FIELD_LIMITS[too_long]} characters")
    route = await state.inbox.clinic_for_number(form["To"])
    if route is None:
        log.warning("inbound sms for a number no clinic owns")
        return error(404, "no clinic is configured for the To number")
    if not await state.rate_limiter.allow(
        f"sms:{route.clinic_id}:{form['From']}", state.sender_limit_per_min
    ) and not passes_every_limit(form["Body"]):
        return error(429, "too many messages from this sender; try again shortly", headers={"Retry-After": "60"})
    payload: dict[str, object] = {
        "from": form["From"],
        "to": form["To"],
        "body": form["Body"],
        "num_media": form.get("NumMedia", "0"),
    }
    media = _media(form)
    if media:  # photos: the provider's URLs only; a worker fetches them after the 2xx (worker/media.py)
        payload["media"] = media
    try:
        inbox_id = await state.inbox.record(
            route.clinic_id, "sms", form["MessageSid"], f"sms:{form['From']}", payload, trace_id
        )
    except EventRejected:
        return error(400, "this message cannot be stored")
    if inbox_id is not None:
        state.enqueuer.submit(message_for("handle_inbound_event", INBOUND_QUEUE, route.clinic_id, inbox_id))
        # DEBUG: a log line per request is a write syscall on the hottest path; the inbox row carries the trace id.
        log.debug("inbound sms recorded", extra={"clinic_id": route.clinic_id, "inbox_id": inbox_id})
    else:
        log.info("duplicate inbound sms ignored", extra={"clinic_id": route.clinic_id})
    return PlainTextResponse(EMPTY_TWIML, media_type="text/xml")


def _media(form: dict[str, str]) -> list[dict[str, str]]:
    """``MediaUrl{i}`` / ``MediaContentType{i}`` for i < NumMedia (at most Twilio's ten)."""
    try:
        count = min(max(int(form.get("NumMedia") or 0), 0), MAX_MEDIA_PER_MESSAGE)
    except ValueError:
        return []
    return [
        {"url": form[f"MediaUrl{i}"], "content_type": form.get(f"MediaContentType{i}", "")[:100]}
        for i in range(count)
        if form.get(f"MediaUrl{i}")
    ]


async def status_callback(request: Request) -> Response:
    """Delivery status: moves an outbox row forward (never backward) and applies a carrier's verdict in its error
    code (an opt-out, an invalid number) in the same transaction; idempotent, applied inline."""
    state: AppState = request.app.state.medspa
    form = await verified_form(request, state)
    if isinstance(form, Response):
        return form
    try:
        outbox_id = int(request.query_params["outbox_id"])
        clinic_id = int(request.query_params["clinic_id"])
    except (KeyError, ValueError):
        return error(400, "status callback URL must carry outbox_id and clinic_id")
    status = form.get("MessageStatus") or form.get("SmsStatus")
    if status is None or status not in STATUS_RANK:  # the statuses a callback may carry, in their order (forward only)
        return error(400, "missing or unknown MessageStatus")
    too_long = too_long_field(form, _STATUS_FIELD_LIMITS)
    if too_long is not None:
        return error(400, f"{too_long} is longer than {_STATUS_FIELD_LIMITS[too_long]} characters")
    error_code = form.get("ErrorCode") or None
    await state.outbox_status.apply(clinic_id, outbox_id, status, error_code, form.get("MessageSid"))
    return Response(status_code=204)
