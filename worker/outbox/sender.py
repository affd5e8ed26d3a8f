"""Sending outbox rows: each row is sent at most once — one state machine for a single row, a row the turn's
commit claimed, and a campaign's rows in chunks.

A row moves ``queued → sending → sent`` (then delivered/failed by status callbacks; ``domain.outbox``).  The
claim (``sending``) commits before the provider call, so a retried or redelivered actor never sends a claimed row
again.  At claim time every row is decided again (``domain.outbox.claim_verdict`` with the send decision,
``worker.outbox.decisions``).  A send whose outcome was never recorded (worker killed mid-call, timeout) becomes
``unknown`` and is reconciled with the provider (``SmsSender.find_sent``) before anything is re-sent.

Claims are fenced (``Claim``): every claim writes a fresh ``claim_token``, and a sender re-verifies its claim
immediately before each provider call — unless the claim is so young that nobody else can hold the row yet.  A
sender that stalled past the sweeper's deadline (a slow provider, a long campaign chunk) finds its row swept to
``unknown`` or re-claimed by another worker, and does not send it.  Every outcome other than "sent" is recorded
only under the sender's own token.

The single-row path and the campaign path share every step (``send_rows``); a campaign claims and records a
chunk of rows per transaction instead of two transactions per message, re-checks the recipient's window right
before each call (a chunk may take a while) and paces itself by its own cap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from domain.outbox import BULK_KINDS, ClaimAction, Verdict
from domain.ports import OutboundSms, SmsSendError
from medspa import metrics
from worker.outbox.decisions import claim_judge, send_decision
from worker.outbox.ports import SendPorts
from worker.outbox.rows import Claim, ClaimedSend, Failure, SendRow, SentMark

log = logging.getLogger(__name__)

RECONCILE_LOOKBACK = timedelta(minutes=5)  # provider clock skew: reconciliation looks back this much further
Pace = Callable[[], int]  # before each provider call: 0 to go on, else milliseconds to wait (a campaign's cap)


class RetryLater(Exception):
    """Raised so Dramatiq retries the actor with backoff (the row is back to ``unknown``/``queued``)."""


@dataclass
class SendOutcome:
    status: str  # sent | failed | suppressed | deferred | skipped
    delay_ms: int | None = None  # for "deferred": try again after this long


@dataclass
class SendReport:
    """What sending a list of claimed rows did."""

    sent: int = 0
    failed: int = 0
    unknown: list[int] = field(default_factory=list)  # outcome unknown: back to 'unknown', reconciled later
    deferred: int = 0  # the recipient's window closed right before the call: queued again with not_before
    lost: int = 0  # the claim lapsed (swept) before their call: another worker has them
    waiting: list[int] = field(default_factory=list)  # released unsent: out of rate (pacing, the shared limiter)
    wait_ms: int = 0


def sms_message_for(ports: SendPorts, clinic_id: int, row: SendRow) -> OutboundSms:
    _, routing = ports.clinics(clinic_id)
    base = ports.settings.public_base_url
    return OutboundSms(
        outbox_id=row.id,
        clinic_id=clinic_id,
        to=row.to_address,
        from_=row.from_address or str(routing.get("sms_number") or ""),
        body=row.body,
        status_callback_url=f"{base}/webhooks/twilio/status?outbox_id={row.id}&clinic_id={clinic_id}",
        messaging_service_sid=routing.get("messaging_service_sid"),
    )


# ------------------------------------------------------------------ one row
def send_one(ports: SendPorts, clinic_id: int, outbox_id: int, *, record_later: bool = False) -> SendOutcome:
    """Claim one row (deciding it again) and send it.  Raises ``RetryLater`` when the outcome is unknown.
    ``record_later``: see ``send_rows``."""
    now = ports.clock.now()
    clinic, _ = ports.clinics(clinic_id)
    claim = Claim.start()
    row, verdict = ports.store.claim_one(clinic_id, outbox_id, claim, claim_judge(clinic, now))
    if row is None or verdict.action is not ClaimAction.CLAIM:
        return _unclaimed(clinic_id, outbox_id, row, verdict)
    report = send_rows(ports, clinic_id, [row], claim, bulk=row.kind in BULK_KINDS, record_later=record_later)
    outcome = _one(report, row)
    metrics.sends.labels(row.channel, row.kind, outcome.status).inc()
    if outcome.status == "sent" and row.created_at is not None:
        lag = (ports.clock.now() - row.created_at).total_seconds()
        metrics.outbox_lag.labels(row.channel).observe(max(0.0, lag))
    return outcome


def send_claimed(ports: SendPorts, clinic_id: int, claimed: ClaimedSend, *, record_later: bool = False) -> SendOutcome:
    """Send a row the turn's own commit claimed (``sending``, consent and order checked in that transaction): the
    same path as ``send_one`` after its claim step.  ``record_later``: see ``send_rows``."""
    row = SendRow.from_claimed(claimed)
    claim = Claim(claimed.claim_token, claimed.claim_started)
    report = send_rows(ports, clinic_id, [row], claim, bulk=row.kind in BULK_KINDS, record_later=record_later)
    outcome = _one(report, row)
    metrics.sends.labels(claimed.channel, claimed.kind, outcome.status).inc()
    if outcome.status == "sent":
        metrics.outbox_lag.labels(claimed.channel).observe(max(0.0, time.monotonic() - claimed.committed_at))
    return outcome


@dataclass
class InlineSends:
    """What sending a commit's rows inline left for the send actor."""

    retry: list[int] = field(default_factory=list)  # outcome unknown, or the inline path broke: the actor's now
    deferred: list[tuple[int, int]] = field(default_factory=list)  # (outbox id, ms): the actor's after that delay


def send_in_order(
    ports: SendPorts,
    clinic_id: int,
    claimed: Sequence[ClaimedSend],
    outbox_ids: Sequence[int],
    *,
    more_follow: bool = False,
) -> InlineSends:
    """Send a commit's rows in order: ``claimed`` (claimed by the commit itself) first, then ``outbox_ids`` through
    the claim step.  Each earlier row is marked sent before the next is claimed (a conversation's rows go out in
    order); the last row's mark may wait for the process's batched recorder (``worker.outbox.sent_marks``) unless
    ``more_follow`` — the conversation's next turn runs right after, and its reply is claimed only when nothing
    earlier is unsent."""
    result = InlineSends()
    work: list[ClaimedSend | int] = [*claimed, *outbox_ids]
    for index, item in enumerate(work):
        outbox_id = item if isinstance(item, int) else item.id
        last = index == len(work) - 1 and not more_follow
        try:
            if isinstance(item, int):
                outcome = send_one(ports, clinic_id, item, record_later=last)
            else:
                outcome = send_claimed(ports, clinic_id, item, record_later=last)
        except RetryLater:
            result.retry.append(outbox_id)
            continue
        except Exception:
            # A claimed row left in 'sending' is reconciled by the sweeper (never blindly re-sent).
            log.exception(
                "inline send failed; handing the rest to the send actor",
                extra={"clinic_id": clinic_id, "outbox_id": outbox_id},
            )
            result.retry += [w if isinstance(w, int) else w.id for w in work[index:]]
            break
        if outcome.status == "deferred":
            result.deferred.append((outbox_id, max(50, outcome.delay_ms or 100)))
    return result


def _unclaimed(clinic_id: int, outbox_id: int, row: SendRow | None, verdict: Verdict) -> SendOutcome:
    ids = {"clinic_id": clinic_id, "outbox_id": outbox_id}
    if verdict.action is ClaimAction.SUPPRESS:
        metrics.sends.labels("?", "?", "suppressed").inc()
        log.info("send suppressed", extra={**ids, "reason": verdict.reason})
        if row is not None and row.kind == "notification" and row.client_id is None:
            log.error(
                "staff notification suppressed: the on-call number opted out of this clinic's texts; "
                "configure another on-call phone",
                extra=ids,
            )
        return SendOutcome("suppressed")
    if verdict.action is ClaimAction.GIVE_UP:
        metrics.sends.labels("?", "?", "failed").inc()
        log.error("send failed permanently after retries", extra=ids)
        return SendOutcome("failed")
    if verdict.action is ClaimAction.DEFER:
        log.info("send deferred to the recipient's window", extra=ids)
        return SendOutcome("deferred", verdict.wait_ms)
    if verdict.action is ClaimAction.WAIT:
        return SendOutcome("deferred", verdict.wait_ms)
    return SendOutcome("skipped")


def _one(report: SendReport, row: SendRow) -> SendOutcome:
    if report.unknown:
        raise RetryLater(f"send outcome of outbox {row.id} unknown")
    if report.sent:
        return SendOutcome("sent")
    if report.failed:
        return SendOutcome("failed")
    if report.waiting:
        return SendOutcome("deferred", report.wait_ms)
    return SendOutcome("skipped")  # the claim lapsed before the call


# ------------------------------------------------------------------ campaign rows, in chunks
SEND_CHUNK = 50  # rows claimed (and recorded) per transaction


@dataclass
class BatchSend:
    sent: int = 0
    suppressed: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0  # the recipient's window closed before the send: back to the queue with not_before
    lost: int = 0  # claimed rows not sent: the claim lapsed (swept) before their turn came; another worker has them
    retry_later: list[tuple[int, int]] = field(default_factory=list)  # (outbox id, delay ms) for the single path
    stopped: str | None = None  # 'paused' / 'cancelled' when the campaign stopped mid-batch


def send_campaign_rows(
    ports: SendPorts,
    clinic_id: int,
    campaign_id: int,
    outbox_ids: Sequence[int],
    *,
    chunk: int = SEND_CHUNK,
    pace: Pace | None = None,
) -> BatchSend:
    """Send committed campaign rows with ``send_one``'s guarantees, ``chunk`` rows per claim.  The campaign's status
    is checked with every claim: a pause stops sending within a batch, and rows claimed but not yet sent go back
    to the pause's withdrawn set.  Out of rate (``pace``, the shared limiter): the rest goes to the single-row
    path, delayed (``retry_later``)."""
    result = BatchSend()
    ids = sorted(set(outbox_ids))
    for start in range(0, len(ids), chunk):
        claim = Claim.start()
        now = ports.clock.now()
        judge = claim_judge(ports.clinics(clinic_id)[0], now)
        claimed = ports.store.claim_campaign_chunk(
            clinic_id, campaign_id, ids[start : start + chunk], claim, judge, now
        )
        if claimed.stopped:
            result.stopped = claimed.stopped
            return result
        result.suppressed += claimed.suppressed
        result.deferred += claimed.deferred
        report = send_rows(
            ports, clinic_id, claimed.rows, claim, bulk=True, pace=pace, recheck_window=True, stamp_each=True
        )
        result.sent += report.sent
        result.failed += report.failed
        result.unknown += len(report.unknown)
        result.deferred += report.deferred
        result.lost += report.lost
        if report.waiting:
            result.retry_later += [(i, report.wait_ms) for i in [*report.waiting, *ids[start + chunk :]]]
            return result
    return result


# ------------------------------------------------------------------ the shared steps
def send_rows(
    ports: SendPorts,
    clinic_id: int,
    rows: Sequence[SendRow],
    claim: Claim,
    *,
    bulk: bool,
    pace: Pace | None = None,
    recheck_window: bool = False,
    stamp_each: bool = False,
    record_later: bool = False,
) -> SendReport:
    """Send rows this sender claimed under ``claim``, in order; record what was sent and what failed in one round
    trip at the end (or when the claim needs renewing).  ``record_later``: nothing of this caller's follows these
    rows, so when all of them went out their marks may be written with other sends' a few milliseconds later
    (``worker.outbox.sent_marks``).  ``recheck_window``: decide the recipient's window again
    right before each call; ``stamp_each``: record each row's own sent time (else the recording transaction's)."""
    report = SendReport()
    marks: list[SentMark] = []
    failures: list[Failure] = []
    lost: set[int] = set()

    def flush(renew: Sequence[int] = (), *, later: bool = False) -> set[int]:
        started = time.monotonic()
        held = ports.store.record(clinic_id, claim, sent=marks, failed=failures, renew=renew, later=later)
        report.sent += len(marks)
        report.failed += len(failures)
        marks.clear()
        failures.clear()
        if renew:
            claim.renewed_at = started
        return held

    for index, row in enumerate(rows):
        if row.id in lost:
            continue
        if row.channel == "chat":
            _publish_chat(ports, row)
            marks.append(SentMark(row.id, None, 1))
            continue
        message = sms_message_for(ports, clinic_id, row)
        if row.was_unknown:
            try:
                found = _reconcile(ports, row, message)
            except SmsSendError:
                ports.store.mark_unknown(clinic_id, claim, row.id)
                report.unknown.append(row.id)
                continue
            if found:
                marks.append(SentMark(row.id, found, None))
                log.info("reconciled: provider already had the message", extra={"outbox_id": row.id})
                continue
        wait_ms = (pace() if pace is not None else 0) or ports.limiter.acquire(message.from_, bulk=bulk)
        if wait_ms:  # out of rate: this row and the rest go back to the queue (attempt undone)
            report.waiting = [r.id for r in rows[index:] if r.id not in lost]
            report.wait_ms = wait_ms
            ports.store.release(clinic_id, claim, report.waiting)
            break
        if recheck_window:
            now = ports.clock.now()
            decision = send_decision(row, ports.clinics(clinic_id)[0], now)
            if decision is not None and not decision.send_now:
                # The window closed while the chunk was sending (pacing, a slow provider): its next allowed instant.
                ports.store.release(clinic_id, claim, [row.id], not_before=decision.send_at or now)
                report.deferred += 1
                continue
        if not claim.is_fresh(ports.settings.claim_fresh_s):
            # Immediately before this call: record what was sent so far and renew the claim on the rest.
            rest = [r.id for r in rows[index:] if r.id not in lost]
            gone = set(rest) - flush(renew=rest)
            if gone:
                lost |= gone
                report.lost += len(gone)
                _count_lost(clinic_id, len(gone))
            if row.id in lost:
                continue
        try:
            result = ports.sms.send(message)
        except SmsSendError as exc:
            metrics.send_failures.labels(exc.code or ("retryable" if exc.retryable else "unknown")).inc()
            if exc.retryable:
                # The provider may or may not have accepted it (timeouts): reconcile before any re-send.
                ports.store.mark_unknown(clinic_id, claim, row.id)
                report.unknown.append(row.id)
            else:
                failures.append(Failure(row.id, row.client_id, row.to_address, exc.code, str(exc)[:500]))
                log.warning("send failed", extra={"clinic_id": clinic_id, "outbox_id": row.id, "error_code": exc.code})
            continue
        at = datetime.now(tz=UTC) if stamp_each else None
        marks.append(SentMark(row.id, result.provider_message_id, result.segments, at))
    flush(later=record_later)
    return report


def _reconcile(ports: SendPorts, row: SendRow, message: OutboundSms) -> str | None:
    """Any earlier attempt of this row happened after the row was created (minus clock skew between us and the
    provider): look back from there."""
    since = (row.created_at or row.claimed_at or ports.clock.now()) - RECONCILE_LOOKBACK
    return ports.sms.find_sent(message, since)


def _publish_chat(ports: SendPorts, row: SendRow) -> None:
    message_id = row.meta.get("message_id")
    payload: dict[str, object] = {
        "id": f"m{message_id}" if message_id else f"o{row.id}",
        "role": "staff" if row.kind == "staff" else "assistant",
        "text": row.body,
    }
    if row.meta.get("quick_replies"):
        payload["quick_replies"] = row.meta["quick_replies"]
    ports.chat.publish(int(row.conversation_id or 0), payload)


def _count_lost(clinic_id: int, lost: int) -> None:
    metrics.lost_claims.inc(lost)
    log.warning(
        "claim lapsed before the provider call; not sending (another worker has the rows)",
        extra={"clinic_id": clinic_id, "rows": lost},
    )
