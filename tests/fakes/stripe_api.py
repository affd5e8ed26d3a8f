"""Local stand-in for Stripe's Checkout Sessions, Refunds and PaymentIntents endpoints, plus webhook signing.

Checks what the ``stripe`` SDK sends — bearer key, form-encoded nested
parameters (``line_items[0][price_data][unit_amount]``), Idempotency-Key —
and honours idempotency the way Stripe does: the same key with the same
parameters replays the first response; with different parameters it is a 400
``idempotency_error``; while a request with the key is still being processed,
another one with it is a 409 ``idempotency_error`` (``pause_next_create``
keeps one in flight).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from typing import Any

from tests.fakes.http import FakeHttpServer, RecordedRequest, Reply, require


def parse_stripe_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Decode Stripe's bracket notation into nested dicts/lists (``a[0][b]=1`` → ``{"a": [{"b": "1"}]}``)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt_is_index = not last and parts[i + 1].isdigit()
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append(None)
                if last:
                    node[index] = value
                else:
                    if node[index] is None:
                        node[index] = [] if nxt_is_index else {}
                    node = node[index]
            else:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, [] if nxt_is_index else {})
    return root


def stripe_signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header: v1 = HMAC-SHA256(secret, f"{t}.{payload}"), as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def checkout_event(
    event_type: str,
    session: dict[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
) -> bytes:
    """The body Stripe posts for ``checkout.session.completed`` / ``checkout.session.expired``."""
    assert event_type.startswith("checkout.session."), event_type
    data = dict(session)
    if event_type == "checkout.session.completed":
        data.update(status="complete", payment_status="paid")
        data.setdefault("payment_intent", "pi_" + secrets.token_hex(12))
    elif event_type == "checkout.session.expired":
        data.update(status="expired", payment_status="unpaid")
    event = {
        "id": event_id or "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2024-06-20",
        "created": created or int(time.time()),
        "data": {"object": data},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(event, separators=(",", ":")).encode()


def payment_intent_event(intent: dict[str, Any], *, event_type: str = "payment_intent.succeeded") -> bytes:
    """The body Stripe posts for ``payment_intent.succeeded`` (it names the payment method the card was saved as)."""
    event = {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": dict(intent)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(event, separators=(",", ":")).encode()


def signed_checkout_event(
    event_type: str, session: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[bytes, str]:
    """(body, Stripe-Signature header) ready to POST to the webhook."""
    body = checkout_event(event_type, session)
    return body, stripe_signature_header(body, secret, timestamp)


def _error(status: int, type_: str, message: str, code: str | None = None) -> Reply:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code:
        error["code"] = code
    return Reply(status, {"error": error}, headers={"Request-Id": "req_" + secrets.token_hex(7)})


_ROUTES = {("POST", "/v1/checkout/sessions"), ("POST", "/v1/refunds"), ("POST", "/v1/payment_intents")}


class FakeStripeApi(FakeHttpServer):
    """POST /v1/checkout/sessions, /v1/refunds and /v1/payment_intents (off-session charges on a saved card)."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.sessions: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}  # from completed checkouts and off-session charges
        self.charges: dict[str, dict[str, Any]] = {}  # off-session charges that went through, by PaymentIntent id
        self.saved_cards: dict[str, str] = {}  # payment method id -> customer id: cards saved for off-session use
        self._lose_replies = 0
        self._idempotent: dict[str, tuple[str, bytes, Reply]] = {}
        self._store_lock = threading.Lock()
        self._in_flight: set[str] = set()  # idempotency keys of requests being processed
        self._pause: threading.Event | None = None
        self.paused = threading.Event()  # set when the request ``pause_next_create`` holds has arrived

    # ------------------------------------------------------------ scripted failures
    def rate_limit_next(self, count: int = 1) -> None:
        self.script(_error(429, "invalid_request_error", "Too many requests", "rate_limit"), times=count)

    def server_error_next(self, count: int = 1, status: int = 500) -> None:
        self.script(_error(status, "api_error", "Something went wrong on Stripe's end."), times=count)

    def card_declined_next(self) -> None:
        self.script(_error(402, "card_error", "Your card was declined.", "card_declined"))

    def lose_next_reply(self, count: int = 1) -> None:
        """Process the next request for real (a charge is made, its idempotency key remembered) but answer 500, as
        when Stripe's answer never reaches the client: only a retry with the same key learns what happened."""
        with self._store_lock:
            self._lose_replies += count

    def authentication_required_next(self) -> None:
        """The bank wants the cardholder present: 402 with the PaymentIntent left in requires_action."""
        intent = {"id": "pi_" + secrets.token_hex(12), "object": "payment_intent", "status": "requires_action"}
        error = {
            "type": "card_error",
            "code": "authentication_required",
            "message": "This payment requires authentication.",
            "payment_intent": intent,
        }
        self.script(Reply(402, {"error": error}, headers={"Request-Id": "req_" + secrets.token_hex(7)}))

    def delay_next(self, seconds: float) -> None:
        """Hold the next response back; the client is expected to time out first."""
        self.script(Reply(500, {"error": {"type": "api_error", "message": "late"}}, delay_s=seconds))

    def pause_next_create(self) -> threading.Event:
        """Keep the next create request in flight (its key marked as being processed, nothing created yet) until
        the returned event is set: a second request with the same key meanwhile gets Stripe's 409.  ``paused`` is
        set once that request has arrived."""
        release = threading.Event()
        with self._store_lock:
            self._pause = release
            self.paused.clear()
        return release

    # ------------------------------------------------------------ behaviour
    def violation_reply(self, message: str) -> Reply:
        return _error(400, "invalid_request_error", f"fake: {message}", "parameter_invalid")

    def handle(self, request: RecordedRequest) -> Reply:
        if request.header("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided")
        require(request.header("Stripe-Version"), "Stripe-Version header missing")
        route = (request.method, request.path)
        if route not in _ROUTES:
            return _error(404, "invalid_request_error", f"Unrecognized request URL ({request.method}: {request.path})")
        require(
            (request.header("Content-Type") or "").startswith("application/x-www-form-urlencoded"),
            "Stripe v1 requests are form-encoded",
        )
        key = request.header("Idempotency-Key")
        require(key, "Idempotency-Key header missing (every create must be idempotent)")
        assert key is not None
        with self._store_lock:
            if key in self._in_flight:
                return _error(
                    409,
                    "idempotency_error",
                    "There is currently another in-progress request using this Idempotent Key (that probably means "
                    "you submitted twice, and the other request is still going through).",
                )
            pause, self._pause = self._pause, None
            if pause is not None:
                self._in_flight.add(key)
                self.paused.set()
        if pause is not None:
            try:
                require(pause.wait(timeout=10), "a paused request was never released")
                return self._create(key, request)
            finally:
                with self._store_lock:
                    self._in_flight.discard(key)
        return self._create(key, request)

    def _create(self, key: str, request: RecordedRequest) -> Reply:
        with self._store_lock:
            previous = self._idempotent.get(key)
            if previous is not None:
                path, body, reply = previous
                if path != request.path or body != request.body:
                    return _error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                    )
                return Reply(reply.status, reply.body, {**reply.headers, "Idempotent-Replayed": "true"})
            params = parse_stripe_form(request.form_pairs())
            if request.path == "/v1/checkout/sessions":
                reply = self._create_session(params)
            elif request.path == "/v1/payment_intents":
                reply = self._create_payment_intent(params)
            else:
                reply = self._create_refund(params)
            if reply.status < 500:
                self._idempotent[key] = (request.path, request.body, reply)
            if self._lose_replies and request.path != "/v1/checkout/sessions":
                self._lose_replies -= 1
                return _error(500, "api_error", "An error occurred with our connection to Stripe.")
            return reply

    def _create_session(self, p: dict[str, Any]) -> Reply:
        require(p.get("mode") == "payment", "mode must be payment")
        items: Any = p.get("line_items")
        require(isinstance(items, list) and len(items) == 1, "exactly one line item")
        item = items[0]
        require(item.get("quantity") == "1", "quantity must be 1")
        price = item.get("price_data") or {}
        require(re.fullmatch(r"[a-z]{3}", price.get("currency", "")), "price_data[currency] must be lower-case ISO")
        require(price.get("unit_amount", "").isdigit() and int(price["unit_amount"]) > 0, "unit_amount > 0")
        require((price.get("product_data") or {}).get("name"), "product_data[name] required")
        for url in ("success_url", "cancel_url"):
            require(str(p.get(url, "")).startswith(("http://", "https://")), f"{url} must be a URL")
        now = int(time.time())
        expires_at = int(p.get("expires_at", "0"))
        if not now + 30 * 60 <= expires_at <= now + 24 * 3600:
            return _error(
                400,
                "invalid_request_error",
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
                "parameter_invalid_integer",
            )
        metadata = p.get("metadata") or {}
        require("appointment_id" in metadata and "clinic_id" in metadata, "metadata needs appointment_id, clinic_id")
        pi_metadata = (p.get("payment_intent_data") or {}).get("metadata") or {}
        require(pi_metadata == metadata, "payment_intent_data[metadata] should carry the same metadata")
        pi_data = p.get("payment_intent_data") or {}
        saves_card = "setup_future_usage" in pi_data
        if saves_card:
            require(pi_data["setup_future_usage"] == "off_session", "setup_future_usage must be off_session")
            require(p.get("customer_creation") == "always", "a saved card needs a Customer: customer_creation=always")
            message = ((p.get("custom_text") or {}).get("submit") or {}).get("message", "")
            require(0 < len(message) <= 1200, "custom_text[submit][message]: the wording the patient agrees to")
        session_id = "cs_test_" + secrets.token_hex(24)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": int(price["unit_amount"]),
            "amount_total": int(price["unit_amount"]),
            "cancel_url": p["cancel_url"],
            "client_reference_id": p.get("client_reference_id"),
            "created": now,
            "currency": price["currency"],
            "expires_at": expires_at,
            "livemode": False,
            "metadata": metadata,
            "mode": "payment",
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": p["success_url"],
            "url": f"https://checkout.stripe.com/c/pay/{session_id}#fid" + secrets.token_hex(8),
            "customer": None,
            "customer_creation": p.get("customer_creation"),
            "custom_text": p.get("custom_text") or {},
            "setup_future_usage": pi_data.get("setup_future_usage"),  # (the fake's note: it is the PI's in Stripe)
        }
        self.sessions[session_id] = session
        return Reply(200, session, headers={"Request-Id": "req_" + secrets.token_hex(7)})

    def complete_session(self, session_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The patient paid: (the completed session, its PaymentIntent) as Stripe's two webhook events carry them —
        a card saved for off-session use is attached to a Customer Checkout created."""
        session = dict(self.sessions[session_id])
        saves = session.get("setup_future_usage") == "off_session"
        customer = "cus_" + secrets.token_hex(7) if saves else None
        intent = {
            "id": "pi_" + secrets.token_hex(12),
            "object": "payment_intent",
            "amount": session["amount_total"],
            "currency": session["currency"],
            "customer": customer,
            "payment_method": "pm_" + secrets.token_hex(12),
            "setup_future_usage": "off_session" if saves else None,
            "status": "succeeded",
            "metadata": session["metadata"],
        }
        session.update(status="complete", payment_status="paid", payment_intent=intent["id"], customer=customer)
        self.sessions[session_id] = session
        self.payment_intents[intent["id"]] = intent
        if saves:
            self.saved_cards[intent["payment_method"]] = str(customer)
        return session, intent

    def _create_payment_intent(self, p: dict[str, Any]) -> Reply:
        require(p.get("confirm") == "true", "an off-session charge is confirmed at once: confirm=true")
        require(p.get("off_session") == "true", "the patient is not present: off_session=true")
        require(str(p.get("amount", "")).isdigit() and int(p["amount"]) > 0, "amount must be a positive integer")
        require(re.fullmatch(r"[a-z]{3}", p.get("currency", "")), "currency must be lower-case ISO")
        customer, method = str(p.get("customer", "")), str(p.get("payment_method", ""))
        require(customer.startswith("cus_"), "customer must be a cus_ id")
        require(method.startswith("pm_"), "payment_method must be a pm_ id")
        metadata = p.get("metadata") or {}
        require("appointment_id" in metadata and "clinic_id" in metadata, "metadata needs appointment_id, clinic_id")
        if self.saved_cards.get(method) != customer:
            return _error(
                400,
                "invalid_request_error",
                "The provided PaymentMethod was not attached to this Customer for future use.",
                "payment_method_not_attached",
            )
        intent = {
            "id": "pi_" + secrets.token_hex(12),
            "object": "payment_intent",
            "amount": int(p["amount"]),
            "currency": p["currency"],
            "customer": customer,
            "payment_method": method,
            "description": p.get("description"),
            "metadata": metadata,
            "status": "succeeded",
            "livemode": False,
        }
        self.payment_intents[intent["id"]] = intent
        self.charges[intent["id"]] = intent
        return Reply(200, intent, headers={"Request-Id": "req_" + secrets.token_hex(7)})

    def _create_refund(self, p: dict[str, Any]) -> Reply:
        require(str(p.get("payment_intent", "")).startswith("pi_"), "payment_intent must be a pi_ id")
        require(p.get("amount", "").isdigit(), "amount must be an integer")
        refund = {
            "id": "re_" + secrets.token_hex(12),
            "object": "refund",
            "amount": int(p["amount"]),
            "currency": "usd",
            "created": int(time.time()),
            "payment_intent": p["payment_intent"],
            "status": "succeeded",
            "metadata": p.get("metadata") or {},
        }
        self.refunds[refund["id"]] = refund
        return Reply(200, refund)
