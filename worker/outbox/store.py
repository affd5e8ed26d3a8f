"""The outbox rows as the senders move them, in their own short transactions (``OutboxStore`` on Postgres).

Raw psycopg in pipeline mode (``Database.tenant_connection``): independent statements travel together, so a
claim costs two round trips (the locked read, then the verdicts with the COMMIT) and recording a chunk's
outcomes one.  The rules these statements apply are ``domain.outbox``'s; the decisions are the sender's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from db.consent import number_opted_out
from db.engine import Database, psycopg_connection, sql_list
from db.outbox_status import delivery_error_statements
from domain.audience import RecipientFacts
from domain.outbox import (
    CLAIMABLE,
    FAILED,
    ORDERED_KINDS,
    QUEUED,
    SENDING,
    STOP_ONCE_BOOKED,
    STOPPED_CAMPAIGN_STATUSES,
    SUPPRESSED,
    UNKNOWN,
    UNSENT,
    ClaimAction,
    Verdict,
)
from worker.appointments.store import has_upcoming_visit
from worker.outbox.ports import ChunkClaim, Judge
from worker.outbox.rows import Claim, Failure, SendRow, SentMark
from worker.outbox.sent_marks import MARK_SENT, SentMarkRecorder, mark_sent_params

Conn = psycopg.Connection[Any]

# What a sender reads of a row: the row, and its recipient as they are now.
_SEND_COLUMNS = """
o.id, o.channel, o.kind, o.status, o.to_address, o.from_address, o.body, o.meta, o.conversation_id, o.client_id,
o.trace_id, o.not_before, o.attempts, o.created_at, o.claimed_at, o.campaign_id,
c.consent_state, c.marketing_consent, c.sms_status, c.timezone"""
# One row, with what the claim rule reads: the appointment an automation text is about, the campaign of a
# campaign text, whether an earlier reply of the conversation still waits to go out (a patient reads replies
# in order), and — for the automations a booking makes moot (``STOP_ONCE_BOOKED``), and only for them: this runs
# for every send — whether the client has an upcoming visit now (the one definition, ``has_upcoming_visit``, by the
# transaction's clock like the order check).  The appointment id is read out of ``meta`` in the CTE: under
# row-level security a join condition holding ``meta->>…`` is not leakproof, so the planner may not use it in an
# index scan of ``appointments`` and scans every appointment of the clinic instead
# (``tests/integration/test_hot_path_plans.py``); the upcoming visit is looked up by ``client_id``, a column.
_LOCK_ONE = f"""
WITH o AS MATERIALIZED (
    SELECT *, CASE WHEN kind = 'automation' THEN (meta->>'appointment_id')::bigint END AS appointment_id
    FROM outbox WHERE id = %s
    FOR UPDATE
)
SELECT {_SEND_COLUMNS},
       a.status, k.status,
       CASE WHEN o.conversation_id IS NOT NULL AND o.kind IN {sql_list(ORDERED_KINDS)} THEN EXISTS (
           SELECT 1 FROM outbox e
           WHERE e.conversation_id = o.conversation_id AND e.id < o.id AND e.channel = o.channel
             AND e.status IN {sql_list(UNSENT)} AND e.kind IN {sql_list(ORDERED_KINDS)}
             AND (e.not_before IS NULL OR e.not_before <= now()))
       ELSE false END,
       CASE WHEN o.kind = 'automation' AND o.meta->>'automation' IN {sql_list(sorted(STOP_ONCE_BOOKED))}
            THEN {has_upcoming_visit("o.client_id", "now()")}
       ELSE false END
FROM o
LEFT JOIN clients c ON c.id = o.client_id
LEFT JOIN appointments a ON a.id = o.appointment_id
LEFT JOIN campaigns k ON o.kind = 'campaign' AND k.id = o.campaign_id
"""
# FOR SHARE: a pause or cancel (FOR UPDATE on the campaign) waits for this claim, and the claim sees its verdict.
_CAMPAIGN_STATUS = "SELECT status FROM campaigns WHERE id = %s FOR SHARE"
# A chunk carries one campaign's rows (``worker.campaigns.runner``): no appointment, no reply order, no booking to
# read.  Only that campaign's rows are claimed — the status read beside it is that campaign's — so a row of
# another campaign (or an automation, which goes through ``_LOCK_ONE``) handed here by mistake is left alone
# (``claim_campaign_chunk`` drops it; in SQL, ``campaign_id = %s`` led the planner to the campaign's index, every
# row of the campaign read for each chunk of 50).
_LOCK_CAMPAIGN_CHUNK = f"""
SELECT {_SEND_COLUMNS}, NULL, NULL, false, false
FROM outbox o LEFT JOIN clients c ON c.id = o.client_id
WHERE o.id = ANY(%s) AND o.clinic_id = %s AND o.status = '{QUEUED}' AND (o.not_before IS NULL OR o.not_before <= %s)
ORDER BY o.id
FOR UPDATE OF o
"""
# Row by row by primary key, like ``MARK_SENT`` (``worker.outbox.sent_marks``): a window that closes during a
# campaign defers every row of a chunk, and the batch join would hash every row in flight to find them.
_SUPPRESS = f"UPDATE outbox SET status = '{SUPPRESSED}', error_message = %s::text WHERE id = %s"
_DEFER = "UPDATE outbox SET not_before = %s::timestamptz WHERE id = %s"
_GIVE_UP = f"UPDATE outbox SET status = '{FAILED}', error_message = %s WHERE id = ANY(%s)"
# A new claim, a new deadline (also when re-claiming an 'unknown' row: the sweeper must not take it back while
# this sender reconciles it); reconciliation looks back from the row's creation, not from here.
_CLAIM = f"""
UPDATE outbox SET status = '{SENDING}', attempts = attempts + 1, claimed_at = now(), claim_token = %s
WHERE id = ANY(%s) AND status IN {sql_list(CLAIMABLE)}
"""
# The mark's statement (and the recorder of deferred marks): ``worker.outbox.sent_marks``.
_FAIL = f"""
UPDATE outbox SET status = '{FAILED}', error_code = %s::text, error_message = %s::text
WHERE id = %s AND status = '{SENDING}' AND claim_token = %s
"""
_RENEW = f"""
UPDATE outbox SET claimed_at = now()
WHERE id = ANY(%s) AND status = '{SENDING}' AND claim_token = %s
RETURNING id
"""
_RELEASE = f"""
UPDATE outbox SET status = '{QUEUED}', attempts = attempts - 1, not_before = coalesce(%s, not_before)
WHERE id = ANY(%s) AND status = '{SENDING}' AND claim_token = %s
"""
_MARK_UNKNOWN = f"UPDATE outbox SET status = '{UNKNOWN}' WHERE id = %s AND status = '{SENDING}' AND claim_token = %s"


def _send_row(found: Sequence[Any]) -> SendRow:
    (
        id_,
        channel,
        kind,
        status,
        to_address,
        from_address,
        body,
        meta,
        conversation_id,
        client_id,
        trace_id,
        not_before,
        attempts,
        created_at,
        claimed_at,
        campaign_id,
        consent_state,
        marketing_consent,
        sms_status,
        timezone,
        appointment_status,
        campaign_status,
        earlier_unsent,
        client_has_upcoming_visit,
    ) = found
    return SendRow(
        id=int(id_),
        channel=channel,
        kind=kind,
        status=status,
        to_address=to_address,
        from_address=from_address or "",
        body=body,
        meta=dict(meta or {}),
        conversation_id=conversation_id,
        client_id=client_id,
        trace_id=trace_id or "",
        not_before=not_before,
        attempts=int(attempts),
        created_at=created_at,
        claimed_at=claimed_at,
        campaign_id=campaign_id,
        # The weekly marketing cap is not decided again at send time: it was decided when the row was created,
        # and a queued row counts itself.
        recipient=RecipientFacts(
            client_id=int(client_id or 0),
            phone=to_address,
            consent_state=consent_state or "unknown",
            sms_status=sms_status or "ok",
            marketing_consent=marketing_consent or "none",
            timezone=timezone,
        ),
        appointment_status=appointment_status,
        campaign_status=campaign_status,
        earlier_unsent=bool(earlier_unsent),
        client_has_upcoming_visit=bool(client_has_upcoming_visit),
    )


def _apply_verdicts(conn: Conn, claim: Claim, verdicts: Sequence[tuple[SendRow, Verdict]]) -> None:
    """Write what the claim rule decided, one statement per kind of verdict (nothing to write for skip / wait)."""
    by_action: dict[ClaimAction, list[tuple[SendRow, Verdict]]] = defaultdict(list)
    for row, verdict in verdicts:
        by_action[verdict.action].append((row, verdict))
    if suppressed := by_action[ClaimAction.SUPPRESS]:
        conn.cursor().executemany(_SUPPRESS, [(v.reason, r.id) for r, v in suppressed])
    if deferred := by_action[ClaimAction.DEFER]:
        conn.cursor().executemany(_DEFER, [(v.until, r.id) for r, v in deferred])
    if given_up := by_action[ClaimAction.GIVE_UP]:
        conn.execute(_GIVE_UP, (given_up[0][1].reason, [r.id for r, _ in given_up]))
    if claimed := by_action[ClaimAction.CLAIM]:
        conn.execute(_CLAIM, (claim.token, [r.id for r, _ in claimed]))


def apply_delivery_error(
    conn: Conn | Session | Connection, clinic_id: int, client_id: int | None, phone: str, code: str | None
) -> None:
    """Carrier verdicts that change how we treat the number from now on (in the caller's transaction): the
    statements the status callback runs too (``db.outbox_status.delivery_error_statements``)."""
    driver = psycopg_connection(conn)
    for sql, params in delivery_error_statements(clinic_id, client_id, phone, code):
        driver.execute(sql, params)


class PostgresOutbox:
    """``OutboxStore`` on the worker's database; ``marks``: the process's recorder of deferred "sent" marks (none:
    every mark is written at once)."""

    def __init__(self, database: Database, marks: SentMarkRecorder | None = None) -> None:
        self.database = database
        self.marks = marks

    def claim_one(self, clinic_id: int, outbox_id: int, claim: Claim, judge: Judge) -> tuple[SendRow | None, Verdict]:
        with self.database.tenant_connection(clinic_id) as conn:
            found = conn.execute(_LOCK_ONE, (outbox_id,)).fetchone()
            if found is None:
                return None, Verdict(ClaimAction.SKIP)
            row = _send_row(found)
            if row.client_id is None and row.channel == "sms" and row.status in CLAIMABLE:
                # Staff notifications: the number has no client record; an opt-out the number itself made counts.
                row = replace(row, number_opted_out=number_opted_out(conn, row.to_address))
            verdict = judge(row)
            _apply_verdicts(conn, claim, [(row, verdict)])
        return row, verdict

    def claim_campaign_chunk(
        self, clinic_id: int, campaign_id: int, outbox_ids: Sequence[int], claim: Claim, judge: Judge, now: datetime
    ) -> ChunkClaim:
        result = ChunkClaim()
        with self.database.tenant_connection(clinic_id) as conn:
            # Both in one round trip (the campaign's lock first, as a pause takes them); a stopped campaign's rows
            # are let go at once.
            status_cursor = conn.execute(_CAMPAIGN_STATUS, (campaign_id,))
            rows_cursor = conn.execute(_LOCK_CAMPAIGN_CHUNK, (list(outbox_ids), clinic_id, now))
            status = status_cursor.fetchone()
            if status is not None and status[0] in STOPPED_CAMPAIGN_STATUSES:
                result.stopped = str(status[0])
                return result
            found_rows = [_send_row(found) for found in rows_cursor.fetchall()]
            rows = [row for row in found_rows if row.kind == "campaign" and row.campaign_id == campaign_id]
            verdicts = [(row, judge(row)) for row in rows]
            _apply_verdicts(conn, claim, verdicts)
        for row, verdict in verdicts:
            if verdict.action is ClaimAction.CLAIM:
                result.rows.append(row)
            elif verdict.action is ClaimAction.SUPPRESS:
                result.suppressed += 1
            elif verdict.action is ClaimAction.DEFER:
                result.deferred += 1
        return result

    def record(
        self,
        clinic_id: int,
        claim: Claim,
        *,
        sent: Sequence[SentMark] = (),
        failed: Sequence[Failure] = (),
        renew: Sequence[int] = (),
        later: bool = False,
    ) -> set[int]:
        if not sent and not failed and not renew:
            return set()
        if later and not failed and not renew and self.marks is not None:
            self.marks.add(clinic_id, sent)  # written with others within a few ms (``worker.outbox.sent_marks``)
            return set()
        if not failed and not renew:  # the usual record: one statement, its own transaction
            with self.database.autocommit_connection() as conn:
                conn.execute(MARK_SENT, mark_sent_params(clinic_id, sent))
            return set()
        held: set[int] = set()
        with self.database.tenant_connection(clinic_id) as conn:
            if sent:
                conn.execute(MARK_SENT, mark_sent_params(clinic_id, sent))
            if failed:
                conn.cursor().executemany(_FAIL, [(f.code, f.message, f.outbox_id, claim.token) for f in failed])
                for failure in failed:
                    apply_delivery_error(conn, clinic_id, failure.client_id, failure.to_address, failure.code)
            if renew:
                held = {int(r[0]) for r in conn.execute(_RENEW, (list(renew), claim.token)).fetchall()}
        return held

    def release(
        self, clinic_id: int, claim: Claim, outbox_ids: Sequence[int], *, not_before: datetime | None = None
    ) -> None:
        with self.database.tenant_connection(clinic_id) as conn:
            conn.execute(_RELEASE, (not_before, list(outbox_ids), claim.token))

    def mark_unknown(self, clinic_id: int, claim: Claim, outbox_id: int) -> None:
        with self.database.tenant_connection(clinic_id) as conn:
            conn.execute(_MARK_UNKNOWN, (outbox_id, claim.token))
