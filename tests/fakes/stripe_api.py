"""Local stand-in for Stripe's Checkout Sessions and Refunds endpoints, plus webhook signing.

Checks what the ``stripe`` SDK sends — bearer key, form-encoded nested
parameters (``line_items[0][price_data][unit_amount]``), Idempotency-Key —
and honours idempotency the way Stripe does: the same key with the same
parameters replays the first response; with different parameters it is a 400
``idempotency_error``.
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


class FakeStripeApi(FakeHttpServer):
    """POST /v1/checkout/sessions and /v1/refunds."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.sessions: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self._idempotent: dict[str, tuple[str, bytes, Reply]] = {}
        self._store_lock = threading.Lock()

    # ------------------------------------------------------------ scripted failures
    def rate_limit_next(self, count: int = 1) -> None:
        self.script(_error(429, "invalid_request_error", "Too many requests", "rate_limit"), times=count)

    def server_error_next(self, count: int = 1, status: int = 500) -> None:
        self.script(_error(status, "api_error", "Something went wrong on Stripe's end."), times=count)

    def card_declined_next(self) -> None:
        self.script(_error(402, "card_error", "Your card was declined.", "card_declined"))

    def delay_next(self, seconds: float) -> None:
        """Hold the next response back; the client is expected to time out first."""
        self.script(Reply(500, {"error": {"type": "api_error", "message": "late"}}, delay_s=seconds))

    # ------------------------------------------------------------ behaviour
    def violation_reply(self, message: str) -> Reply:
        return _error(400, "invalid_request_error", f"fake: {message}", "parameter_invalid")

    def handle(self, request: RecordedRequest) -> Reply:
        if request.header("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided")
        require(request.header("Stripe-Version"), "Stripe-Version header missing")
        route = (request.method, request.path)
        if route not in {("POST", "/v1/checkout/sessions"), ("POST", "/v1/refunds")}:
            return _error(404, "invalid_request_error", f"Unrecognized request URL ({request.method}: {request.path})")
        require(
            (request.header("Content-Type") or "").startswith("application/x-www-form-urlencoded"),
            "Stripe v1 requests are form-encoded",
        )
        key = request.header("Idempotency-Key")
        require(key, "Idempotency-Key header missing (every create must be idempotent)")
        assert key is not None
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
            else:
                reply = self._create_refund(params)
            if reply.status < 500:
                self._idempotent[key] = (request.path, request.body, reply)
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
        }
        self.sessions[session_id] = session
        return Reply(200, session, headers={"Request-Id": "req_" + secrets.token_hex(7)})

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
