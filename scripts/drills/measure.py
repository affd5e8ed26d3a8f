"""Load and measurement: the patients' load during a drill, and what they experienced (turns, replies,
duplicates, lost messages, recovery time).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from scripts.drills.environment import ACK_TARGET_S, FIRST_TRY_ACK, RECOVERY_TARGET_S, DrillResult, Scale

if TYPE_CHECKING:
    from tests.support.stack import ProcessStack


# ------------------------------------------------------------------ load
_LOAD_RUNS = itertools.count(uuid.uuid4().int % 400 + 100)


class Load:
    """Patients texting the clinic: ``conversations`` phones, each sending ``per_conversation`` marked messages
    spread over ``load_s``.  A webhook that does not answer 2xx is retried with the same MessageSid (the
    platform's dedupe makes that safe) until ``ack_deadline_s`` passes."""

    def __init__(self, procs: ProcessStack, scale: Scale, *, ack_deadline_s: float = 120.0) -> None:
        self.procs = procs
        self.scale = scale
        self.ack_deadline_s = ack_deadline_s
        run = next(_LOAD_RUNS)  # distinct numbers per load: drills share one database
        self.phones = {f"+1415{run:03d}{i:04d}": i for i in range(scale.conversations)}
        self.acknowledged: dict[str, list[str]] = {p: [] for p in self.phones}
        self.rejected = 0
        self.first_try_failures = 0  # webhook attempts that were not 2xx (or timed out) the first time
        self.slowest_ack_s = 0.0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(min(32, scale.conversations), thread_name_prefix="patient")
        self._futures: list[Any] = []

    def start(self) -> Load:
        self._futures = [self._pool.submit(self._patient, phone, index) for phone, index in self.phones.items()]
        return self

    def join(self) -> None:
        for future in self._futures:
            future.result()
        self._pool.shutdown()

    @property
    def done(self) -> bool:
        return all(f.done() for f in self._futures)

    def _patient(self, phone: str, index: int) -> None:
        import httpx

        from tests.fakes.twilio_api import twilio_signature
        from tests.support.stack import GLOW_NUMBER, TWILIO_TOKEN

        stack = self.procs.stack
        url = stack.base_url + "/webhooks/twilio/sms"
        gap = self.scale.load_s / self.scale.per_conversation
        # Stagger the conversations so messages arrive continuously, not in waves.
        time.sleep(gap * index / max(1, self.scale.conversations))
        with httpx.Client(timeout=10) as client:
            for m in range(1, self.scale.per_conversation + 1):
                marker = f"c{index}-m{m}"
                form = stack.sms_form(GLOW_NUMBER, phone, f"drill message [{marker}]")
                headers = {"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, form)}
                if self._deliver(client, url, form, headers):
                    with self._lock:
                        self.acknowledged[phone].append(marker)
                else:
                    with self._lock:
                        self.rejected += 1
                time.sleep(gap)

    def _deliver(self, client: Any, url: str, form: dict[str, str], headers: dict[str, str]) -> bool:
        import httpx

        deadline = time.monotonic() + self.ack_deadline_s
        first = True
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                if 200 <= client.post(url, data=form, headers=headers).status_code < 300:
                    with self._lock:
                        self.slowest_ack_s = max(self.slowest_ack_s, time.monotonic() - started)
                    return True
            except httpx.HTTPError:
                pass
            if first:
                with self._lock:
                    self.first_try_failures += 1
                first = False
            time.sleep(0.5)  # a provider's retry backoff: the webhook is down or refusing
        return False

    def replies(self) -> list[tuple[str, str]]:
        return [(m.to, m.body) for m in list(self.procs.stack.twilio.messages) if m.to in self.phones]

    def wait_under_way(self, fraction: float = 0.2, timeout: float = 60) -> None:
        """Until some turns have answered (the fault should land with turns in flight)."""
        from tests.support.infra import wait_for

        expected = self.scale.conversations * self.scale.per_conversation
        wait_for(
            lambda: len(self.replies()) >= max(2, int(expected * fraction)) or self.done,
            timeout,
            what="the load to get under way",
        )


# ------------------------------------------------------------------ measuring
def _wait_recovered(
    procs: ProcessStack, load: Load, timeout: float, settled: Callable[[ProcessStack], bool] | None = None
) -> float | None:
    """Wait for the load to finish and the pipeline to drain (and the drill's own work to settle, e.g. its
    campaign to complete); returns the monotonic time it did, or None."""
    from tests.support.infra import wait_for

    load.join()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if settled is not None:
                wait_for(lambda: settled(procs), max(1.0, deadline - time.monotonic()), what="the drill's work")
            procs.stack.wait_idle(timeout=max(1.0, deadline - time.monotonic()))
            return time.monotonic()
        except AssertionError:
            return None
        except Exception:  # noqa: BLE001 - the database may still be coming back: keep waiting
            time.sleep(0.5)
    return None


def _measure(procs: ProcessStack, load: Load, result: DrillResult) -> None:
    from sqlalchemy import text

    phones = list(load.phones)
    acknowledged = {(p, m) for p, markers in load.acknowledged.items() for m in markers}
    result.messages_in = len(acknowledged)
    with procs.stack.database.tenant_scope(1) as session:
        result.turns = int(
            session.execute(
                text(
                    """SELECT count(*) FROM turns t JOIN conversations c ON c.id = t.conversation_id
               JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = ANY(:phones)"""
                ),
                {"phones": phones},
            ).scalar_one()
        )
        # A message got a turn when some turn of its conversation covered its sequence number.
        handled = session.execute(
            text(
                """SELECT cl.phone_e164, substring(m.body from '\\[(c\\d+-m\\d+)\\]') FROM messages m
               JOIN conversations c ON c.id = m.conversation_id JOIN clients cl ON cl.id = c.client_id
               WHERE cl.phone_e164 = ANY(:phones) AND m.role = 'user'
                 AND EXISTS (SELECT 1 FROM turns t WHERE t.conversation_id = m.conversation_id
                             AND m.inbound_seq BETWEEN t.first_seq AND t.last_seq)"""
            ),
            {"phones": phones},
        ).all()
        outbox = session.execute(
            text(
                """SELECT o.status, count(*) FROM outbox o JOIN conversations c ON c.id = o.conversation_id
               JOIN clients cl ON cl.id = c.client_id
               WHERE cl.phone_e164 = ANY(:phones) AND o.to_address = cl.phone_e164 GROUP BY o.status"""
            ),
            {"phones": phones},
        ).all()
        outcomes = {
            str(o): int(n)
            for o, n in session.execute(
                text(
                    """SELECT t.outcome, count(*) FROM turns t JOIN conversations c ON c.id = t.conversation_id
               JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = ANY(:phones) GROUP BY t.outcome"""
                ),
                {"phones": phones},
            )
        }
        quarantined = int(
            session.execute(
                text(
                    "SELECT count(*) FROM inbox_events WHERE status = 'quarantined' AND payload->>'from' = ANY(:phones)"
                ),
                {"phones": phones},
            ).scalar_one()
        )
    result.lost = len(acknowledged - {(p, m) for p, m in handled})
    replies = load.replies()
    result.replies_sent = len(replies)
    from tests.support.stack import _MARKER

    markers = Counter((to, marker) for to, body in replies for marker in _MARKER.findall(body))
    marker_duplicates = sum(n - 1 for n in markers.values() if n > 1)
    if outcomes != {"replied": result.turns}:
        result.notes.append("turn outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    statuses = {str(s): int(n) for s, n in outbox}
    sent_rows = statuses.get("sent", 0) + statuses.get("delivered", 0)
    result.duplicates = max(marker_duplicates, len(replies) - sent_rows)
    unsent = sum(n for s, n in statuses.items() if s not in ("sent", "delivered"))
    if unsent:
        result.notes.append(f"outbox rows not sent: {statuses}")
    if quarantined:
        result.notes.append(f"{quarantined} inbound messages quarantined")
    if load.rejected:
        result.notes.append(f"{load.rejected} messages never acknowledged by the webhook")
    if load.first_try_failures:
        result.notes.append(f"{load.first_try_failures} webhook attempts not 2xx the first time")
    result.notes.append(f"slowest acknowledgement {load.slowest_ack_s * 1000:.0f} ms")
    result.notes.extend(result.violations)
    strict = result.drill in FIRST_TRY_ACK
    if strict and load.slowest_ack_s > ACK_TARGET_S:
        result.notes.append(f"an acknowledgement took longer than {ACK_TARGET_S:.0f}s")
    result.passed = (
        (not strict or (load.first_try_failures == 0 and load.slowest_ack_s <= ACK_TARGET_S))
        and not result.violations
        and result.lost == 0
        and result.duplicates == 0
        and not unsent
        and result.recovery_s is not None
        and result.recovery_s <= RECOVERY_TARGET_S
        and result.messages_in > 0
    )
