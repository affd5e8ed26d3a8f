"""The drills that slow a provider down instead of breaking something: a Twilio brown-out during a campaign,
and a model slower than the conversation lease.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from scripts.drills.environment import DrillEnvironment, DrillResult, Scale
from scripts.drills.measure import _LOAD_RUNS, Load

if TYPE_CHECKING:
    from tests.support.stack import ProcessStack


SLOW_SMS_CALL_S = 2.0  # a Twilio brown-out: every API call takes this long
CAMPAIGN_PER_CONVERSATION = 5  # campaign recipients per patient conversation of the scale


class _SlowSmsProvider:
    """Twilio slows to 2 s per call and a campaign starts sending into the brown-out.  Before claims were
    re-verified before each provider call, a chunk of 50 claimed rows (100 s of calls) outlived the sweeper's
    deadline: the rest of the chunk was marked ``unknown``, other workers reconciled (Twilio had nothing yet) and
    sent, and the first worker sent them again."""

    def __init__(self) -> None:
        self.campaign_id: int | None = None
        self.phones: list[str] = []

    def __call__(self, procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
        from tests.support.infra import wait_for

        twilio = procs.stack.twilio
        twilio.latency_s = SLOW_SMS_CALL_S
        started = time.monotonic()
        self.campaign_id, self.phones = _start_campaign(procs, scale.conversations * CAMPAIGN_PER_CONVERSATION)
        wait_for(lambda: self._claimed(procs), 60, interval=0.1, what="the campaign's first claimed rows")
        # The brown-out lasts until the sweeper has surely seen the first claimed chunk past its deadline (it
        # sweeps every SWEEP_EVERY_S) and other workers have had time to pick swept rows up.
        settings = procs.stack.settings
        slow_for = settings.outbox_sweep_after_s + settings.sweep_every_s + 3 * SLOW_SMS_CALL_S
        time.sleep(slow_for)  # the brown-out's duration (what is being drilled), not synchronisation
        twilio.latency_s = 0.0
        result.notes.append(
            f"Twilio took {SLOW_SMS_CALL_S:.0f}s per call for {time.monotonic() - started:.0f}s; a campaign of "
            f"{len(self.phones)} recipients started into it"
        )
        return time.monotonic()

    def _claimed(self, procs: ProcessStack) -> bool:
        from sqlalchemy import text

        with procs.stack.database.tenant_scope(1) as session:
            return bool(
                session.execute(
                    text("SELECT EXISTS (SELECT 1 FROM outbox WHERE campaign_id = :id AND status <> 'queued')"),
                    {"id": self.campaign_id},
                ).scalar_one()
            )

    def settled(self, procs: ProcessStack) -> bool:
        from worker.campaigns.lifecycle import campaign_status

        return self.campaign_id is None or campaign_status(procs.stack.database, 1, self.campaign_id) == "completed"

    def measure(self, procs: ProcessStack, result: DrillResult) -> None:
        texts = Counter(m.to for m in list(procs.stack.twilio.messages) if m.to in set(self.phones))
        twice = sum(n - 1 for n in texts.values() if n > 1)
        never = sum(1 for phone in self.phones if texts[phone] == 0)
        result.messages_in += len(self.phones)
        result.replies_sent += sum(texts.values())
        result.duplicates += twice
        result.lost += never
        result.notes.append(f"campaign: {len(self.phones)} recipients, {never} never texted, {twice} texted twice")
        result.passed = result.passed and twice == 0 and never == 0


def _noon_zone() -> str:
    """A time zone where it is about 13:00 now: campaign recipients inside 08:00-21:00, whatever the hour."""
    offset = 13 - datetime.now(UTC).hour
    offset = offset + 24 if offset < -12 else offset - 24 if offset > 14 else offset
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3


def _start_campaign(procs: ProcessStack, recipients: int) -> tuple[int, list[str]]:
    """Campaign recipients (clients with a marketing grant, at local midday), the campaign sent now, its runner
    enqueued."""
    from sqlalchemy import text

    from domain.audience import SegmentFilter
    from medspa.broker import BULK_QUEUE, LowLatencyRedisBroker, message_for
    from worker.campaigns.lifecycle import create_campaign, schedule_campaign

    run = next(_LOAD_RUNS)
    tag = f"drill-{uuid.uuid4().hex[:8]}"
    phones = [f"+1628{run:03d}{i:04d}" for i in range(recipients)]
    now = datetime.now(UTC)
    with procs.stack.database.tenant_scope(1) as session:
        session.execute(
            text(
                """INSERT INTO clients (clinic_id, phone_e164, name, consent_state, marketing_consent, timezone, tags)
                   SELECT 1, phone, 'Drill Recipient', 'opted_in', 'granted', :tz, ARRAY[CAST(:tag AS text)]
                   FROM unnest(CAST(:phones AS text[])) AS phone"""
            ),
            {"phones": phones, "tz": _noon_zone(), "tag": tag},
        )
        campaign_id = create_campaign(
            session,
            1,
            name="Drill: slow SMS provider",
            template="Hi {first_name}, spring offers at {clinic_name} this week.",
            segment=SegmentFilter.from_dict({"tags": [tag]}),
            created_by="drills",
        )
        schedule_campaign(session, 1, campaign_id, now, now)
    broker = LowLatencyRedisBroker(url=procs.stack.settings.redis_url)  # not the global broker: just enqueue
    try:
        broker.enqueue(message_for("run_campaign_slice", BULK_QUEUE, 1, campaign_id))
    finally:
        broker.close()
    return campaign_id, phones


SLOW_MODEL_EVERY = 8  # every 8th conversation's model is slower than the lease
SLOW_MODEL_CALLS_PER_LEASE = 2  # per model call, this many of the drill's leases (Scale.slow_model_lease_s)


class _SlowModelBeyondLease:
    """Every 8th patient's model takes twice the conversation lease per call (a turn makes two calls: 4 leases
    long; the lease is the scale's short ``slow_model_lease_s``).  Without a heartbeat the lease expired mid-turn
    and the patient's next text — or the sweeper — handed the conversation to another worker, which ran a second
    turn in parallel.  Counted in the fake model: a model call that starts while another call of the same
    conversation is in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self.calls = 0
        self.parallel = 0
        self.load: Load | None = None  # set by run_drill

    def think_s(self, conversation: str | None, default_s: float, scale: Scale) -> float:
        if conversation is not None and int(conversation[1:]) % SLOW_MODEL_EVERY == 0:
            return SLOW_MODEL_CALLS_PER_LEASE * scale.slow_model_lease_s
        return default_s

    @contextlib.contextmanager
    def call(self, conversation: str | None) -> Iterator[None]:
        with self._lock:
            self.calls += 1
            if conversation is not None:
                self.parallel += self._in_flight[conversation] > 0
                self._in_flight[conversation] += 1
        try:
            yield
        finally:
            if conversation is not None:
                with self._lock:
                    self._in_flight[conversation] -= 1

    def __call__(self, procs: ProcessStack, env: DrillEnvironment, scale: Scale, result: DrillResult) -> float:
        if self.load is not None:
            self.load.join()  # the slow model runs from the start; the fault "clears" when the patients stop
        result.notes.append(
            f"model took {SLOW_MODEL_CALLS_PER_LEASE * scale.slow_model_lease_s}s per call for every "
            f"{SLOW_MODEL_EVERY}th conversation (lease {scale.slow_model_lease_s}s)"
        )
        return time.monotonic()

    def settled(self, procs: ProcessStack) -> bool:
        return True

    def measure(self, procs: ProcessStack, result: DrillResult) -> None:
        result.parallel_turns = self.parallel
        result.notes.append(f"{self.calls} model calls, {self.parallel} started while a call of the same ran")
        result.passed = result.passed and self.parallel == 0


def _conversation_of(body: dict[str, Any]) -> str | None:
    """The drill conversation a model request belongs to (``c7`` from its patients' ``[c7-m2]`` markers)."""
    from tests.support.stack import _MARKER

    for message in body.get("messages", []):
        if message.get("role") == "user":
            found = _MARKER.search(str(message.get("content") or ""))
            if found:
                return found.group(1).split("-")[0]
    return None
