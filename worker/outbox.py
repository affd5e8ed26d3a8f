"""Sending outbox rows: each row is sent at most once.

A row moves ``queued → sending → sent`` (then delivered/failed by status
callbacks).  The claim (``sending``) commits before the provider call, so a
retried or redelivered actor never sends a claimed row again.  A send whose
outcome was never recorded (worker killed mid-call, timeout) becomes
``unknown`` and is reconciled with the provider (``SmsSender.find_sent``)
before anything is re-sent.  Consent is checked here, at send time, for every
kind except the STOP/HELP confirmations themselves.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from domain.ports import OutboundSms, SmsSendError
from medspa import metrics
from worker.automations import appointment_still_live
from worker.container import Container
from worker.conversations import ORDERED_KINDS, ClaimedSend
from worker.sms_rate import SmsRateLimiter

log = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 8


class RetryLater(Exception):
    """Raised so Dramatiq retries the actor with backoff (the row is back to ``unknown``/``queued``)."""


@dataclass
class SendOutcome:
    status: str
    delay_ms: int | None = None  # for "deferred": try again after this long


def chat_stream_key(conversation_id: int) -> str:
    return f"chat:stream:{conversation_id}"


def send_outbox_message(container: Container, limiter: SmsRateLimiter, clinic_id: int, outbox_id: int) -> SendOutcome:
    row = _claim(container, clinic_id, outbox_id)
    if isinstance(row, SendOutcome):
        if row.status in ("suppressed", "failed"):
            metrics.sends.labels("?", "?", row.status).inc()
        return row
    if row["channel"] == "chat":
        outcome = _publish_chat(container, clinic_id, row)
    else:
        outcome = _send_sms(container, limiter, clinic_id, row)
    metrics.sends.labels(row["channel"], row["kind"], outcome.status).inc()
    if outcome.status == "sent" and row.get("created_at") is not None:
        lag = (container.clock.now() - row["created_at"]).total_seconds()
        metrics.outbox_lag.labels(row["channel"]).observe(max(0.0, lag))
    return outcome


def send_claimed(container: Container, limiter: SmsRateLimiter, clinic_id: int, claimed: ClaimedSend) -> SendOutcome:
    """Send a row the turn's own commit claimed (``sending``, consent and order checked in that transaction):
    the same path as ``send_outbox_message`` after its claim step."""
    row = claimed.as_row()
    outcome = (
        _publish_chat(container, clinic_id, row)
        if claimed.channel == "chat"
        else _send_sms(container, limiter, clinic_id, row)
    )
    metrics.sends.labels(claimed.channel, claimed.kind, outcome.status).inc()
    if outcome.status == "sent":
        metrics.outbox_lag.labels(claimed.channel).observe(max(0.0, time.monotonic() - claimed.committed_at))
    return outcome


def _claim(container: Container, clinic_id: int, outbox_id: int) -> dict[str, Any] | SendOutcome:
    now = container.clock.now()
    with container.database.tenant_scope(clinic_id) as session:
        row = (
            session.execute(
                text(
                    """SELECT o.id, o.channel, o.kind, o.status, o.to_address, o.from_address, o.body, o.meta,
                          o.conversation_id, o.client_id, o.not_before, o.attempts, o.claimed_at, o.trace_id,
                          o.created_at, o.campaign_id,
                          c.consent_state, c.sms_status
                   FROM outbox o LEFT JOIN clients c ON c.id = o.client_id
                   WHERE o.id = :id FOR UPDATE OF o"""
                ),
                {"id": outbox_id},
            )
            .mappings()
            .one_or_none()
        )
        if row is None or row["status"] not in ("queued", "unknown"):
            return SendOutcome("skipped")
        if row["not_before"] is not None and row["not_before"] > now:
            return SendOutcome("deferred", int((row["not_before"] - now).total_seconds() * 1000))
        if row["conversation_id"] is not None and row["kind"] in ORDERED_KINDS and _earlier_unsent(session, row):
            # A patient reads replies in order: an earlier reply of this conversation goes first.
            return SendOutcome("deferred", 100)
        suppressed = _suppression_reason(session, clinic_id, dict(row))
        if suppressed:
            session.execute(
                text("UPDATE outbox SET status = 'suppressed', error_message = :why WHERE id = :id"),
                {"id": outbox_id, "why": suppressed},
            )
            log.info("send suppressed", extra={"clinic_id": clinic_id, "outbox_id": outbox_id, "reason": suppressed})
            return SendOutcome("suppressed")
        if row["attempts"] >= MAX_SEND_ATTEMPTS:
            session.execute(
                text("UPDATE outbox SET status = 'failed', error_message = 'gave up after retries' WHERE id = :id"),
                {"id": outbox_id},
            )
            log.error("send failed permanently after retries", extra={"clinic_id": clinic_id, "outbox_id": outbox_id})
            return SendOutcome("failed")
        claimed = dict(row)
        claimed["was_unknown"] = row["status"] == "unknown"
        session.execute(
            text(
                """UPDATE outbox SET status = 'sending', attempts = attempts + 1,
                          claimed_at = COALESCE(CASE WHEN status = 'unknown' THEN claimed_at END, now())
                   WHERE id = :id"""
            ),
            {"id": outbox_id},
        )
        return claimed


def _earlier_unsent(session: Any, row: Any) -> bool:
    return session.execute(
        text(
            """SELECT EXISTS (SELECT 1 FROM outbox
                              WHERE conversation_id = :conversation AND id < :id AND channel = :channel
                                AND status IN ('queued', 'sending', 'unknown') AND kind = ANY(:kinds)
                                AND (not_before IS NULL OR not_before <= now()))"""
        ),
        {
            "conversation": row["conversation_id"],
            "id": row["id"],
            "channel": row["channel"],
            "kinds": list(ORDERED_KINDS),
        },
    ).scalar_one()


def _suppression_reason(session: Any, clinic_id: int, row: dict[str, Any]) -> str | None:
    if row["kind"] == "automation" and not appointment_still_live(session, row["meta"] or {}):
        return "appointment no longer live"
    if row["kind"] == "campaign" and row.get("campaign_id") is not None:
        status = session.execute(
            text("SELECT status FROM campaigns WHERE id = :id"), {"id": row["campaign_id"]}
        ).scalar_one_or_none()
        if status in ("paused", "cancelled"):
            return f"campaign {status}"
    if row["channel"] != "sms" or row["kind"] in ("compliance", "safety"):
        return None
    if row["consent_state"] == "opted_out":
        return "recipient opted out"
    if row["sms_status"] in ("invalid", "not_mobile"):
        return f"recipient number {row['sms_status']}"
    if row["client_id"] is None:
        # Staff notifications: honour an opt-out recorded against the number itself.
        opted_out = session.execute(
            text(
                """SELECT kind = 'opt_out' FROM consent_events WHERE phone_e164 = :phone
                   ORDER BY id DESC LIMIT 1"""
            ),
            {"phone": row["to_address"]},
        ).scalar_one_or_none()
        if opted_out:
            return "recipient opted out"
    return None


def _publish_chat(container: Container, clinic_id: int, row: dict[str, Any]) -> SendOutcome:
    meta = row["meta"] or {}
    role = "staff" if row["kind"] == "staff" else "assistant"
    message_id = meta.get("message_id")
    payload = {"id": f"m{message_id}" if message_id else f"o{row['id']}", "role": role, "text": row["body"]}
    if meta.get("quick_replies"):
        payload["quick_replies"] = meta["quick_replies"]
    key = chat_stream_key(int(row["conversation_id"]))
    pipe = container.redis.pipeline(transaction=False)
    pipe.xadd(key, {"event": "message", "data": json.dumps(payload)}, maxlen=500, approximate=True)
    pipe.xadd(key, {"event": "typing", "data": json.dumps({"on": False})}, maxlen=500, approximate=True)
    pipe.execute()
    _mark_sent(container, clinic_id, int(row["id"]), provider_id=None, segments=1)
    return SendOutcome("sent")


def sms_message_for(container: Container, clinic_id: int, row: dict[str, Any]) -> OutboundSms:
    _, routing = container.clinic(clinic_id)
    base = container.settings.public_base_url.rstrip("/")
    return OutboundSms(
        outbox_id=int(row["id"]),
        clinic_id=clinic_id,
        to=row["to_address"],
        from_=row["from_address"] or str(routing.get("sms_number") or ""),
        body=row["body"],
        status_callback_url=f"{base}/webhooks/twilio/status?outbox_id={row['id']}&clinic_id={clinic_id}",
        messaging_service_sid=routing.get("messaging_service_sid"),  # type: ignore[arg-type]
    )


def _send_sms(container: Container, limiter: SmsRateLimiter, clinic_id: int, row: dict[str, Any]) -> SendOutcome:
    message = sms_message_for(container, clinic_id, row)
    outbox_id = int(row["id"])
    if row.get("was_unknown"):
        since = (row["claimed_at"] or container.clock.now()) - timedelta(minutes=5)
        try:
            found = container.sms.find_sent(message, since)
        except SmsSendError:
            _set_status(container, clinic_id, outbox_id, "unknown")
            raise RetryLater(f"reconciliation of outbox {outbox_id} failed") from None
        if found:
            _mark_sent(container, clinic_id, outbox_id, provider_id=found, segments=None)
            log.info("reconciled: provider already had the message", extra={"outbox_id": outbox_id})
            return SendOutcome("sent")
    bulk = row["kind"] in ("campaign", "automation")
    wait_ms = limiter.acquire(message.from_, bulk=bulk)
    if wait_ms:
        _set_status(container, clinic_id, outbox_id, "queued", undo_attempt=True)
        return SendOutcome("deferred", wait_ms)
    try:
        result = container.sms.send(message)
    except SmsSendError as exc:
        metrics.send_failures.labels(exc.code or ("retryable" if exc.retryable else "unknown")).inc()
        if exc.retryable:
            # The provider may or may not have accepted it (timeouts): reconcile before any re-send.
            _set_status(container, clinic_id, outbox_id, "unknown")
            raise RetryLater(f"retryable send error for outbox {outbox_id}") from None
        _fail_permanently(container, clinic_id, row, exc)
        return SendOutcome("failed")
    _mark_sent(container, clinic_id, outbox_id, provider_id=result.provider_message_id, segments=result.segments)
    return SendOutcome("sent")


def _mark_sent(
    container: Container, clinic_id: int, outbox_id: int, *, provider_id: str | None, segments: int | None
) -> None:
    # One round trip: BEGIN, the clinic, the update and COMMIT travel together (pipeline mode).
    with container.database.tenant_connection(clinic_id) as conn:
        conn.execute(
            """UPDATE outbox SET status = 'sent', sent_at = now(),
                      provider_message_id = COALESCE(%s, provider_message_id), segments = COALESCE(%s, segments)
               WHERE id = %s AND status = 'sending'""",
            (provider_id, segments, outbox_id),
        )


def _set_status(
    container: Container, clinic_id: int, outbox_id: int, status: str, *, undo_attempt: bool = False
) -> None:
    with container.database.tenant_connection(clinic_id) as conn:
        conn.execute(
            f"""UPDATE outbox SET status = %s {", attempts = attempts - 1" if undo_attempt else ""}
                WHERE id = %s AND status = 'sending'""",
            (status, outbox_id),
        )


def _fail_permanently(container: Container, clinic_id: int, row: dict[str, Any], exc: SmsSendError) -> None:
    outbox_id = int(row["id"])
    with container.database.tenant_scope(clinic_id) as session:
        session.execute(
            text(
                """UPDATE outbox SET status = 'failed', error_code = :code, error_message = :msg
                   WHERE id = :id AND status = 'sending'"""
            ),
            {"id": outbox_id, "code": exc.code, "msg": str(exc)[:500]},
        )
        apply_delivery_error(session, clinic_id, row.get("client_id"), row["to_address"], exc.code)
    log.warning("send failed", extra={"clinic_id": clinic_id, "outbox_id": outbox_id, "error_code": exc.code})


def apply_delivery_error(session: Any, clinic_id: int, client_id: int | None, phone: str, code: str | None) -> None:
    """Carrier verdicts that change how we treat the number from now on."""
    if code == "21610":  # the recipient replied STOP at the carrier level: record it in our ledger too
        session.execute(
            text(
                """INSERT INTO consent_events (clinic_id, client_id, phone_e164, kind, source, wording)
                   VALUES (:clinic_id, :client_id, :phone, 'opt_out', 'carrier', 'Twilio error 21610: unsubscribed')"""
            ),
            {"clinic_id": clinic_id, "client_id": client_id, "phone": phone},
        )
        if client_id is not None:
            session.execute(text("UPDATE clients SET consent_state = 'opted_out' WHERE id = :id"), {"id": client_id})
    elif code in ("21211", "21614") and client_id is not None:
        status = "invalid" if code == "21211" else "not_mobile"
        session.execute(text("UPDATE clients SET sms_status = :s WHERE id = :id"), {"s": status, "id": client_id})
