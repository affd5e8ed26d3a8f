"""Sending outbox rows: each row is sent at most once.

A row moves ``queued → sending → sent`` (then delivered/failed by status
callbacks).  The claim (``sending``) commits before the provider call, so a
retried or redelivered actor never sends a claimed row again.  A send whose
outcome was never recorded (worker killed mid-call, timeout) becomes
``unknown`` and is reconciled with the provider (``SmsSender.find_sent``)
before anything is re-sent.

At the moment of sending, every SMS is decided again by the one rule
(``domain.audience.decide`` for the row's kind of text, ``send_decision``):
consent (an opt-out blocks everything but the keyword confirmations and the
safety reply; marketing needs its own grant), the number's status, and the
time window — a marketing or reminder text whose moment passed into quiet
hours while it waited (deferred, retried, reconciled) is deferred to the next
allowed instant (``not_before``), never dropped and never sent at night.

Claims are fenced (see ``Claim``): every claim writes a fresh ``claim_token``,
and a sender re-verifies its claim immediately before each provider call —
unless the claim is so young that nobody else can hold the row yet.  A sender
that stalled past the sweeper's deadline (a slow provider, a long campaign
chunk) finds its row swept to ``unknown`` or re-claimed by another worker, and
does not send it.  Every outcome other than "sent" is recorded only under the
sender's own token.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from db.consent import number_opted_out, record_consent
from db.engine import driver_connection
from domain.audience import Decision, RecipientFacts, SendPolicy, decide, text_kind
from domain.compliance import ConsentKind, ConsentRecord, ConsentScope, ConsentSource
from domain.ports import OutboundSms, SmsSendError
from medspa import metrics
from medspa.ids import fast_int63
from medspa.settings import Settings
from worker.automations import appointment_still_live
from worker.container import Container
from worker.conversations import ORDERED_KINDS, ClaimedSend
from worker.sms_rate import SmsRateLimiter

log = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 8
RECONCILE_LOOKBACK = timedelta(minutes=5)  # provider clock skew: reconciliation looks back this much further
CLAIM_MARGIN_S = 1.0  # slack for clock rates and the time between "fresh" and the request leaving the process


class RetryLater(Exception):
    """Raised so Dramatiq retries the actor with backoff (the row is back to ``unknown``/``queued``)."""


@dataclass
class SendOutcome:
    status: str
    delay_ms: int | None = None  # for "deferred": try again after this long


# ------------------------------------------------------------------ claims
@dataclass
class Claim:
    """This worker's claim on outbox rows: the token its claim wrote, and the monotonic time taken just before
    the claiming (or last renewing) transaction started — the row's ``claimed_at`` is no earlier than that."""

    token: int
    renewed_at: float

    @classmethod
    def start(cls) -> Claim:
        """Call right before the transaction that claims the rows (it writes ``claim_token = token``)."""
        return cls(fast_int63(), time.monotonic())


def claim_fresh_s(settings: Settings) -> float:
    """For how long after a claim (or renewal) a provider call may start without re-verifying the claim.

    The sweeper marks a claimed row ``unknown`` (so another worker may re-claim it) only when ``claimed_at`` is
    ``OUTBOX_SWEEP_AFTER_S`` old.  A call started within that deadline minus the provider call's timeout (and a
    margin) ends before that can happen, so nobody else can hold the row yet; later, the claim is re-verified.
    """
    return settings.outbox_sweep_after_s - settings.sms_send_timeout_s - CLAIM_MARGIN_S


def claim_is_fresh(claim: Claim, settings: Settings) -> bool:
    return time.monotonic() - claim.renewed_at < claim_fresh_s(settings)


_RENEW_CLAIMS = """
UPDATE outbox SET claimed_at = now()
WHERE id = ANY(%s) AND status = 'sending' AND claim_token = %s
RETURNING id
"""


def renew_claims(db: Session | psycopg.Connection[Any], claim: Claim, outbox_ids: list[int]) -> set[int]:
    """Re-verify this worker's claim on ``outbox_ids`` and extend it (``claimed_at`` is the sweeper's deadline),
    in the caller's transaction: returns the ids still held.  A row missing from the answer was swept to
    ``unknown`` (and maybe re-claimed, reconciled and sent by another worker): never call the provider for it.
    Once the transaction commits, the caller sets ``claim.renewed_at`` to a monotonic time taken before it began.
    """
    conn = db if isinstance(db, psycopg.Connection) else driver_connection(db)
    return {int(r[0]) for r in conn.execute(_RENEW_CLAIMS, (outbox_ids, claim.token)).fetchall()}


def claim_still_held(container: Container, clinic_id: int, claim: Claim, outbox_id: int) -> bool:
    """Immediately before a provider call: is the row still this worker's to send?"""
    if claim_is_fresh(claim, container.settings):
        return True
    started = time.monotonic()
    with container.database.tenant_connection(clinic_id) as conn:
        held = outbox_id in renew_claims(conn, claim, [outbox_id])
    claim.renewed_at = started
    if not held:
        metrics.lost_claims.inc()
        log.warning(
            "claim lost before the provider call; not sending", extra={"clinic_id": clinic_id, "outbox_id": outbox_id}
        )
    return held


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
    row["claim"] = Claim(claimed.claim_token, claimed.claim_started)
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
    claim = Claim.start()
    with container.database.tenant_scope(clinic_id) as session:
        row = (
            session.execute(
                text(
                    """SELECT o.id, o.channel, o.kind, o.status, o.to_address, o.from_address, o.body, o.meta,
                          o.conversation_id, o.client_id, o.not_before, o.attempts, o.claimed_at, o.trace_id,
                          o.created_at, o.campaign_id,
                          c.consent_state, c.marketing_consent, c.sms_status, c.timezone
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
        suppressed = _suppression_reason(session, dict(row))
        decision = None if suppressed else _decision_for(session, container, clinic_id, dict(row), now)
        if decision is not None and not decision.send:
            suppressed = suppression_text(decision, dict(row))
        if suppressed:
            session.execute(
                text("UPDATE outbox SET status = 'suppressed', error_message = :why WHERE id = :id"),
                {"id": outbox_id, "why": suppressed},
            )
            log.info("send suppressed", extra={"clinic_id": clinic_id, "outbox_id": outbox_id, "reason": suppressed})
            if row["kind"] == "notification" and row["client_id"] is None:
                log.error(
                    "staff notification suppressed: the on-call number opted out of this clinic's texts; "
                    "configure another on-call phone",
                    extra={"clinic_id": clinic_id, "outbox_id": outbox_id},
                )
            return SendOutcome("suppressed")
        if decision is not None and decision.deferred and decision.send_at is not None:
            # Its moment passed into quiet hours while it waited: the next allowed instant, keeping its status
            # (an 'unknown' row is still reconciled with the provider before any send).
            session.execute(
                text("UPDATE outbox SET not_before = :at WHERE id = :id"), {"id": outbox_id, "at": decision.send_at}
            )
            log.info("send deferred to the recipient's window", extra={"clinic_id": clinic_id, "outbox_id": outbox_id})
            return SendOutcome("deferred", _millis_until(decision.send_at, now))
        if row["attempts"] >= MAX_SEND_ATTEMPTS:
            session.execute(
                text("UPDATE outbox SET status = 'failed', error_message = 'gave up after retries' WHERE id = :id"),
                {"id": outbox_id},
            )
            log.error("send failed permanently after retries", extra={"clinic_id": clinic_id, "outbox_id": outbox_id})
            return SendOutcome("failed")
        claimed = dict(row)
        claimed["was_unknown"] = row["status"] == "unknown"
        claimed["claim"] = claim
        # A new claim, a new deadline (also when re-claiming an 'unknown' row: the sweeper must not take it back
        # while this worker reconciles it); reconciliation looks back from the row's creation, not from here.
        session.execute(
            text(
                """UPDATE outbox SET status = 'sending', attempts = attempts + 1, claimed_at = now(),
                          claim_token = :token
                   WHERE id = :id"""
            ),
            {"id": outbox_id, "token": claim.token},
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


def _suppression_reason(session: Any, row: dict[str, Any]) -> str | None:
    """What the message is about no longer holds (consent and timing are ``send_decision``'s)."""
    if row["kind"] == "automation" and not appointment_still_live(session, row["meta"] or {}):
        return "appointment no longer live"
    if row["kind"] == "campaign" and row.get("campaign_id") is not None:
        status = session.execute(
            text("SELECT status FROM campaigns WHERE id = :id"), {"id": row["campaign_id"]}
        ).scalar_one_or_none()
        if status in ("paused", "cancelled"):
            return f"campaign {status}"
    return None


def recipient_facts(row: Mapping[str, Any]) -> RecipientFacts:
    """The recipient's facts at send time, from an outbox row joined with its client.  The weekly marketing cap
    is not decided again here: it was decided when the row was created, and a queued row counts itself."""
    return RecipientFacts(
        client_id=int(row["client_id"] or 0),
        phone=row["to_address"],
        consent_state=row["consent_state"] or "unknown",
        sms_status=row["sms_status"] or "ok",
        marketing_consent=row["marketing_consent"] or "none",
        timezone=row["timezone"],
    )


def send_decision(
    container: Container, clinic_id: int, row: Mapping[str, Any], facts: RecipientFacts, now: datetime
) -> Decision:
    """``domain.audience.decide`` for an outbox row at the moment of sending: its kind of text, the clinic's
    policy, the recipient's facts as they are now."""
    clinic, _ = container.clinic(clinic_id)
    kind = text_kind(str(row["kind"]), marketing=bool((row.get("meta") or {}).get("marketing")))
    return decide(facts, SendPolicy.for_kind(kind, clinic.timezone, clinic.policies), now)


def _decision_for(
    session: Any, container: Container, clinic_id: int, row: dict[str, Any], now: datetime
) -> Decision | None:
    if row["channel"] != "sms":
        return None  # web chat: the patient's own open widget, nothing to consent to
    facts = recipient_facts(row)
    if row["client_id"] is None and number_opted_out(session, row["to_address"]):
        # Staff notifications: the number has no client record; honour an opt-out the number itself made.
        facts = RecipientFacts(0, row["to_address"], "opted_out")
    return send_decision(container, clinic_id, row, facts, now)


def suppression_text(decision: Decision, row: Mapping[str, Any]) -> str:
    """The suppression reason recorded on the row (``outbox.error_message``)."""
    return {
        "opted_out": "recipient opted out",
        "invalid_number": f"recipient number {row.get('sms_status') or 'invalid'}",
        "no_consent": "no marketing consent",
        "no_phone": "no phone number",
        "frequency_cap": "weekly marketing cap reached",
    }.get(decision.reason or "", decision.reason or "not allowed")


def _millis_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds() * 1000))


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
    claim: Claim = row["claim"]
    if row.get("was_unknown"):
        # Any earlier attempt of this row happened after the row was created (minus clock skew between us and the
        # provider): look back from there.
        since = (row.get("created_at") or row.get("claimed_at") or container.clock.now()) - RECONCILE_LOOKBACK
        try:
            found = container.sms.find_sent(message, since)
        except SmsSendError:
            _set_status(container, clinic_id, outbox_id, claim, "unknown")
            raise RetryLater(f"reconciliation of outbox {outbox_id} failed") from None
        if found:
            _mark_sent(container, clinic_id, outbox_id, provider_id=found, segments=None)
            log.info("reconciled: provider already had the message", extra={"outbox_id": outbox_id})
            return SendOutcome("sent")
    bulk = row["kind"] in ("campaign", "automation")
    wait_ms = limiter.acquire(message.from_, bulk=bulk)
    if wait_ms:
        _set_status(container, clinic_id, outbox_id, claim, "queued", undo_attempt=True)
        return SendOutcome("deferred", wait_ms)
    if not claim_still_held(container, clinic_id, claim, outbox_id):
        return SendOutcome("skipped")
    try:
        result = container.sms.send(message)
    except SmsSendError as exc:
        metrics.send_failures.labels(exc.code or ("retryable" if exc.retryable else "unknown")).inc()
        if exc.retryable:
            # The provider may or may not have accepted it (timeouts): reconcile before any re-send.
            _set_status(container, clinic_id, outbox_id, claim, "unknown")
            raise RetryLater(f"retryable send error for outbox {outbox_id}") from None
        _fail_permanently(container, clinic_id, row, exc)
        return SendOutcome("failed")
    _mark_sent(container, clinic_id, outbox_id, provider_id=result.provider_message_id, segments=result.segments)
    return SendOutcome("sent")


def _mark_sent(
    container: Container, clinic_id: int, outbox_id: int, *, provider_id: str | None, segments: int | None
) -> None:
    # One round trip: BEGIN, the clinic, the update and COMMIT travel together (pipeline mode).  Not fenced on
    # the claim: the provider has the message, whoever holds the row now (a row swept to 'unknown' meanwhile is
    # then never re-claimed, and a worker that re-claimed it finds it sent when it re-verifies its claim).
    with container.database.tenant_connection(clinic_id) as conn:
        conn.execute(
            """UPDATE outbox SET status = 'sent', sent_at = now(),
                      provider_message_id = COALESCE(%s, provider_message_id), segments = COALESCE(%s, segments)
               WHERE id = %s AND status IN ('sending', 'unknown')""",
            (provider_id, segments, outbox_id),
        )


def _set_status(
    container: Container, clinic_id: int, outbox_id: int, claim: Claim, status: str, *, undo_attempt: bool = False
) -> None:
    """Give the row up (``unknown`` to reconcile, ``queued`` to retry) — only while this worker still holds it."""
    with container.database.tenant_connection(clinic_id) as conn:
        conn.execute(
            f"""UPDATE outbox SET status = %s {", attempts = attempts - 1" if undo_attempt else ""}
                WHERE id = %s AND status = 'sending' AND claim_token = %s""",
            (status, outbox_id, claim.token),
        )


def _fail_permanently(container: Container, clinic_id: int, row: dict[str, Any], exc: SmsSendError) -> None:
    outbox_id = int(row["id"])
    with container.database.tenant_scope(clinic_id) as session:
        session.execute(
            text(
                """UPDATE outbox SET status = 'failed', error_code = :code, error_message = :msg
                   WHERE id = :id AND status = 'sending' AND claim_token = :token"""
            ),
            {"id": outbox_id, "code": exc.code, "msg": str(exc)[:500], "token": row["claim"].token},
        )
        apply_delivery_error(session, clinic_id, row.get("client_id"), row["to_address"], exc.code)
    log.warning("send failed", extra={"clinic_id": clinic_id, "outbox_id": outbox_id, "error_code": exc.code})


def apply_delivery_error(session: Any, clinic_id: int, client_id: int | None, phone: str, code: str | None) -> None:
    """Carrier verdicts that change how we treat the number from now on."""
    if code == "21610":  # the recipient replied STOP at the carrier level: record it in our ledger too
        record_consent(
            session,
            clinic_id,
            client_id,
            phone,
            ConsentRecord(
                ConsentKind.OPT_OUT, ConsentScope.ALL, ConsentSource.CARRIER, "Twilio error 21610: unsubscribed"
            ),
        )
    elif code in ("21211", "21614") and client_id is not None:
        status = "invalid" if code == "21211" else "not_mobile"
        session.execute(text("UPDATE clients SET sms_status = :s WHERE id = :id"), {"s": status, "id": client_id})
