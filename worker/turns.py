"""Running turns for a conversation while holding its lease.

Per turn: one transaction to attach (+ take the lease + load the snapshot),
the brain (model + tools, no transaction held open), one fenced transaction to
commit everything (messages, state, audit, outbox) and release or keep the
lease; replies are sent from the outbox after the commit — the first one
claimed by the commit itself, so sending it costs no extra transaction.

Every function takes the ``TurnPorts`` (``worker/turn_ports.py``), never the whole container: ``think`` (what a
turn does: the safety screen, the silent cases, the reminder-reply shortcut, the brain) and ``outbox_rows`` (what
it queues, decided as the sender will) run on fakes in ``tests/unit/test_turn_rules.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from prometheus_client import Counter

from domain.agent_loop import EARLIER_TEXTS_SCREENED, safety_turn
from domain.agent_state import AgentState
from domain.audience import RecipientFacts, decide
from domain.conversation import ClinicProfile, Handoff, Reply, TurnOutput, TurnWithdrawn
from domain.media import photo_ack, vision_enabled
from domain.replies import shape_sms_reply
from domain.templates import reminder_reply_intent
from medspa import metrics
from medspa.logs import trace_id_var
from worker.conversations import (
    Lease,
    Snapshot,
    StaleTurn,
    TurnRecord,
    attach_and_lease,
    commit_turn,
    lease_and_load,
    load_snapshot,
    quarantine,
    record_failed_delivery,
    turn_input,
    write_safety_now,
)
from worker.leases import HeldLease
from worker.outbox.decisions import send_policy
from worker.outbox.rows import ClaimedSend, OutboxRow
from worker.turn_ports import TurnPorts

log = logging.getLogger(__name__)


class SendOutbox(Protocol):
    """Sends committed outbox rows: ``claimed`` first (already ``sending``, in order), then ``outbox_ids``.
    ``more_follow``: another turn of the conversation runs right after (its reply is claimed only when these are
    marked sent, so their marks are written at once)."""

    def __call__(
        self, clinic_id: int, outbox_ids: list[int], claimed: Sequence[ClaimedSend] = ..., more_follow: bool = ..., /
    ) -> None: ...


@dataclass
class InboundResult:
    conversation_id: int | None
    turns: int = 0


def handle_inbound(
    ports: TurnPorts,
    clinic_id: int,
    inbox_id: int,
    send: SendOutbox,
    on_media: Callable[[int, list[int]], None] | None = None,
) -> InboundResult:
    """Attach the inbound event, then run the conversation's turns if no other worker is.  ``on_media``: called
    with the photos the attach recorded (to fetch and store them, ``worker/media.py``) before any turn runs."""
    clinic, _ = ports.clinics(clinic_id)
    try:
        with ports.database.tenant_connection(clinic_id) as conn:
            attached = attach_and_lease(
                conn,
                clinic_id,
                inbox_id,
                clinic_name=clinic.name,
                clinic_phone=clinic.phone,
                owner=ports.worker_name,
                lease_seconds=ports.settings.lease_seconds,
                history_window=ports.settings.history_window,
                quarantine_after=ports.settings.quarantine_after,
                now=ports.clock.now(),
            )
        if attached is None:
            log.warning("inbox event not found", extra={"clinic_id": clinic_id, "inbox_id": inbox_id})
            return InboundResult(None)
        snapshot = _leased(ports, clinic_id, attached.conversation_id, attached.snapshot, attached.failing)
    except Exception as exc:
        # Count the failed delivery in its own transaction; a poison event is quarantined instead of looping.
        with ports.database.tenant_connection(clinic_id) as conn:
            outcome = record_failed_delivery(conn, inbox_id, type(exc).__name__, ports.settings.quarantine_after)
        if outcome == "quarantined":
            metrics.quarantined.labels("inbound_event").inc()
            log.error(
                "inbound event quarantined after repeated failures; staff must look at it",
                extra={"clinic_id": clinic_id, "inbox_id": inbox_id, "error": type(exc).__name__},
            )
            return InboundResult(None)
        raise
    if attached.outbox_ids:
        send(clinic_id, attached.outbox_ids)
    if attached.media_ids and on_media is not None:
        on_media(clinic_id, attached.media_ids)
    if snapshot is None:
        if attached.newly_attached:
            _safety_while_another_turn_runs(ports, clinic_id, attached.conversation_id, attached.newly_attached, send)
        return InboundResult(attached.conversation_id)
    return InboundResult(attached.conversation_id, run_turns(ports, snapshot, send))


def _safety_while_another_turn_runs(
    ports: TurnPorts, clinic_id: int, conversation_id: int, newly_attached: int, send: SendOutbox
) -> None:
    """Screen texts that arrived while another worker holds the conversation's lease, and answer an emergency now.

    Their turn comes only after the running one commits — a model call or several, up to its deadlines — and a
    patient who just wrote "I can't breathe" cannot wait for a booking question to be answered first.  So the
    safety reply and the on-call page are written here at once, beside the running turn (the conversation's row
    is the lease holder's: its state moves to the handoff when the turn that reads these texts commits).  They
    carry the dedupe keys that turn gives them (``outbox_rows``: by the newest unanswered sequence), so when it
    screens the same texts its reply and page are these, not second ones; should more texts arrive first, a
    second safety reply is the price, never a missing one.  The screen reads only the texts just attached, with
    the older unanswered ones as their context (the running turn answers those)."""
    clinic, routing = ports.clinics(clinic_id)
    placeholder = Lease(conversation_id, owner="", version=-1, failed_turns=0)  # reading only: no lease is taken
    try:
        with ports.database.tenant_connection(clinic_id) as conn:
            snapshot = load_snapshot(conn, clinic_id, placeholder, ports.settings.history_window)
    except StaleTurn:
        return  # the conversation is gone
    arrived = snapshot.pending[-newly_attached:]
    if not arrived:
        return  # already answered by the running turn
    older = [m.body for m in snapshot.pending[: len(snapshot.pending) - len(arrived)]]
    output = safety_turn(
        [m.body for m in arrived],
        clinic,
        channel=snapshot.channel,
        agent_state=snapshot.agent_state,
        slots=snapshot.slots,
        photo=any(m.meta.get("media") for m in arrived),
        earlier=[*snapshot.recent_inbound, *older][-EARLIER_TEXTS_SCREENED:],
    )
    if output is None:
        return
    log.warning(
        "emergency while another turn runs: answered and paged at once",
        extra={"clinic_id": clinic_id, "conversation_id": conversation_id},
    )
    rows = outbox_rows(snapshot, output, clinic, routing, ports.clock.now())
    with ports.database.tenant_connection(clinic_id) as conn:
        outbox_ids = write_safety_now(conn, clinic_id, conversation_id, snapshot.last_seq, rows, output.handoff)
    if outbox_ids:
        send(clinic_id, outbox_ids)


def run_conversation(ports: TurnPorts, clinic_id: int, conversation_id: int, send: SendOutbox) -> int:
    """Take the lease (if free or expired) and run turns until nothing is pending.  Returns turns run."""
    with ports.database.tenant_connection(clinic_id) as conn:
        snapshot, failing = lease_and_load(
            conn,
            clinic_id,
            conversation_id,
            ports.worker_name,
            ports.settings.lease_seconds,
            ports.settings.history_window,
            ports.settings.quarantine_after,
            now=ports.clock.now(),
        )
    snapshot = _leased(ports, clinic_id, conversation_id, snapshot, failing)
    if snapshot is None:
        return 0
    return run_turns(ports, snapshot, send)


def _leased(
    ports: TurnPorts, clinic_id: int, conversation_id: int, snapshot: Snapshot | None, failing: Lease | None
) -> Snapshot | None:
    """After taking a lease: count a takeover; quarantine a conversation whose turns keep failing — unless its
    unanswered messages describe an emergency: the safety turn needs neither the model nor a tool, so it runs
    (and its commit resets the failure count) instead of the messages being quarantined unanswered."""
    lease = snapshot.lease if snapshot is not None else failing
    if lease is not None and lease.took_over:
        metrics.lease_takeovers.inc()
        log.warning(
            "took over a conversation whose lease expired",
            extra={"clinic_id": clinic_id, "conversation_id": conversation_id},
        )
    if (
        failing is not None
        and snapshot is not None
        and safety_screen(ports.clinics(clinic_id)[0], snapshot) is not None
    ):
        log.warning(
            "failing conversation has an emergency: answering it before any quarantine",
            extra={"clinic_id": clinic_id, "conversation_id": conversation_id},
        )
        return snapshot
    if failing is not None:
        with ports.database.tenant_connection(clinic_id) as conn:
            count = quarantine(conn, failing)
        ports.announce(clinic_id, conversation_id, Handoff("quarantined", "normal"))
        metrics.quarantined.labels("conversation").inc()
        log.error(
            "conversation quarantined after repeated turn failures; handed to staff",
            extra={"clinic_id": clinic_id, "conversation_id": conversation_id, "messages": count},
        )
        return None
    return snapshot


def run_turns(ports: TurnPorts, snapshot: Snapshot | None, send: SendOutbox) -> int:
    """Run turns while this worker holds the conversation's lease.  The lease is renewed while they run (a
    heartbeat, ``worker/leases.py``); a turn whose lease is lost stops early: no commit, no sends."""
    if snapshot is None:
        return 0
    with ports.leases().holding(snapshot.clinic_id, snapshot.lease) as held:
        return _run_turns(ports, snapshot, send, held)


def _run_turns(ports: TurnPorts, snapshot: Snapshot | None, send: SendOutbox, held: HeldLease) -> int:
    turns = 0
    while snapshot is not None:
        trace_id_var.set(_trace_of(snapshot))
        started_wall = ports.clock.now()
        started = time.perf_counter()
        _observe_inbox_lag(snapshot)
        snapshot.may_continue = held.live  # asked by the brain before every model and tool call
        try:
            output = think(ports, snapshot)
            if not held.live():
                raise TurnWithdrawn("lease lost before the commit")
        except TurnWithdrawn:
            _discarded(
                metrics.turns_withdrawn,
                "turn withdrawn: its lease was lost while it ran (nothing committed, nothing sent)",
                snapshot,
            )
            return turns
        clinic, routing = ports.clinics(snapshot.clinic_id)
        rows = outbox_rows(snapshot, output, clinic, routing, ports.clock.now())
        record = TurnRecord(
            output=output,
            started_at=started_wall,
            latency_ms=int((time.perf_counter() - started) * 1000),
            worker=ports.worker_name,
            trace_id=trace_id_var.get(),
        )
        try:
            with ports.database.tenant_connection(snapshot.clinic_id) as conn:
                committed = commit_turn(conn, snapshot, record, rows, ports.settings.lease_seconds)
            if not committed.more_pending:
                held.release()  # the commit let the lease go
            next_snapshot = None
            if committed.more_pending:  # newer messages arrived during the turn: the lease was kept for them
                with ports.database.tenant_connection(snapshot.clinic_id) as conn:
                    next_snapshot = load_snapshot(
                        conn, snapshot.clinic_id, snapshot.lease, ports.settings.history_window, now=ports.clock.now()
                    )
        except StaleTurn:
            _discarded(metrics.stale_turns, "stale turn discarded: another worker took the conversation over", snapshot)
            return turns
        turns += 1
        _observe_turn(output, time.perf_counter() - started)
        log.info(
            "turn committed",
            extra={
                "clinic_id": snapshot.clinic_id,
                "conversation_id": snapshot.lease.conversation_id,
                "messages": len(snapshot.pending),
                "outcome": output.outcome,
                "steps": output.steps,
                "model": output.model,
                "model_ms": output.model_latency_ms,
                "turn_ms": record.latency_ms,
            },
        )
        if committed.claimed or committed.outbox_ids:
            send(snapshot.clinic_id, committed.outbox_ids, committed.claimed, committed.more_pending)
        ports.announce(snapshot.clinic_id, snapshot.lease.conversation_id, output.handoff)
        snapshot = next_snapshot
    return turns


def _discarded(counter: Counter, message: str, snapshot: Snapshot) -> None:
    """A turn that commits nothing (its lease is gone): counted and logged, with ids only."""
    counter.inc()
    log.warning(message, extra={"clinic_id": snapshot.clinic_id, "conversation_id": snapshot.lease.conversation_id})


def _observe_inbox_lag(snapshot: Snapshot) -> None:
    now = time.time()
    for message in snapshot.pending:
        received = message.meta.get("received_at")
        if received:
            metrics.inbox_lag.observe(max(0.0, now - float(received)))


def _observe_turn(output: TurnOutput, seconds: float) -> None:
    metrics.turns.labels(output.outcome).inc()
    metrics.turn_latency.observe(seconds)
    if output.model:
        metrics.model_latency.labels(output.model).observe(output.model_latency_ms / 1000)
        metrics.model_tokens.labels(output.model, "prompt").inc(output.usage.prompt_tokens)
        metrics.model_tokens.labels(output.model, "completion").inc(output.usage.completion_tokens)
    for call in output.tool_audit:
        metrics.tool_calls.labels(call.name).inc()
        if not call.ok:
            metrics.tool_errors.labels(call.name).inc()


def _trace_of(snapshot: Snapshot) -> str:
    for message in reversed(snapshot.pending):
        trace = message.meta.get("trace_id")
        if trace:
            return str(trace)
    return trace_id_var.get()


def safety_screen(clinic: ClinicProfile, snapshot: Snapshot) -> TurnOutput | None:
    """The safety turn for this snapshot's messages (``domain.agent_loop.safety_turn``), or None."""
    return safety_turn(
        [m.body for m in snapshot.pending],
        clinic,
        channel=snapshot.channel,
        agent_state=snapshot.agent_state,
        slots=snapshot.slots,
        photo=any(m.meta.get("media") for m in snapshot.pending),
        earlier=snapshot.recent_inbound,
    )


def think(ports: TurnPorts, snapshot: Snapshot) -> TurnOutput:
    """Decide what this turn does.  Silent cases never reach the model; nothing is silent about an emergency."""
    # The safety screen comes before every silent path and reads every message of the turn, carrier keywords
    # included ("STOP texting me, I can't breathe"): a patient in handoff, opted out, texting at night or
    # while the model is down still gets the safety reply and the on-call page (no model needed).
    clinic, _ = ports.clinics(snapshot.clinic_id)
    safety = safety_screen(clinic, snapshot)
    if safety is not None:
        return safety
    fresh = [m for m in snapshot.pending if "compliance" not in m.meta]
    silent_reason = None
    if not fresh:
        silent_reason = "compliance keywords only"
    elif snapshot.consent_state == "opted_out":
        silent_reason = "patient opted out"
    elif snapshot.agent_state == AgentState.HANDOFF:
        silent_reason = "staff handling the conversation"
    if silent_reason:
        return TurnOutput(
            replies=[], transcript=[], agent_state=snapshot.agent_state, slots=snapshot.slots, outcome="silent"
        )
    photos = sum(int(m.meta.get("media") or 0) for m in fresh)
    if photos and not vision_enabled(clinic.policies):
        # The model reads words only (the clinic has no vision model): the photo is acknowledged in words, kept
        # for staff (worker/media.py), and a photo that says nothing needs no model at all.  (With a vision model
        # the photo goes to the model with the words, and the model answers both: _brain_turn.)
        ack = Reply(photo_ack(clinic.name, photos))
        if not any(m.body.strip() for m in fresh):
            return TurnOutput(
                replies=[ack], transcript=[], agent_state=snapshot.agent_state, slots=snapshot.slots, outcome="replied"
            )
        answered = _brain_turn(ports, snapshot, clinic)
        return replace(answered, replies=[ack, *answered.replies])
    return _brain_turn(ports, snapshot, clinic)


def _brain_turn(ports: TurnPorts, snapshot: Snapshot, clinic: ClinicProfile) -> TurnOutput:
    fresh = [m for m in snapshot.pending if "compliance" not in m.meta]
    now = ports.clock.now()
    if snapshot.channel == "sms" and len(fresh) == 1:
        # A YES to a waitlist offer texted since the patient last wrote books it (or hears it was taken); a NO
        # passes it on.  Anything else, or no such offer: None, and the message goes on as before.
        offer_turn = ports.waitlist_answer(snapshot, fresh[0], now)
        if offer_turn is not None:
            return offer_turn
    if snapshot.channel == "sms" and len(fresh) == 1 and reminder_reply_intent(fresh[0].body) == "confirm":
        # "C" / "YES" to a reminder confirms that appointment without a model call; "R" goes to the agent.
        confirmation = ports.reminder_reply(snapshot.clinic_id, snapshot.client_id, fresh[0].body, now)
        if confirmation is not None:
            return TurnOutput(
                replies=[Reply(confirmation)],
                transcript=[],
                agent_state=snapshot.agent_state,
                slots=snapshot.slots,
                outcome="replied",
            )
    tools = ports.tools(
        clinic_id=snapshot.clinic_id,
        client_id=snapshot.client_id,
        conversation_id=snapshot.lease.conversation_id,
        fence_version=snapshot.lease.version,
        upcoming=snapshot.upcoming,  # read with the snapshot: get_my_appointments answers from it
    )
    turn = turn_input(snapshot, clinic, now, trace_id_var.get())
    if vision_enabled(clinic.policies) and any(m.meta.get("media") for m in fresh):
        # The one case a photo goes to the model: the clinic turned a vision model on (policies.vision_model).
        inbox_ids = [int(m.meta["inbox_id"]) for m in fresh if m.meta.get("media") and m.meta.get("inbox_id")]
        images = ports.images(snapshot.clinic_id, inbox_ids)
        turn = replace(turn, new_images=images)
    try:
        return ports.brain.run_turn(turn, tools)
    except TurnWithdrawn:
        raise  # the lease is gone: no apology, no handoff — another worker has these messages
    except Exception:
        # The brain returns errors as results; anything escaping is a bug. Apologise and hand off, once.
        log.exception(
            "turn crashed; apologising and handing off",
            extra={"clinic_id": snapshot.clinic_id, "conversation_id": snapshot.lease.conversation_id},
        )
        return TurnOutput(
            replies=[
                Reply(
                    f"Sorry, something went wrong on our side. A member of the {clinic.name} team will "
                    "follow up with you shortly."
                )
            ],
            transcript=[],
            agent_state=AgentState.HANDOFF,
            slots=snapshot.slots,
            handoff=Handoff("turn crashed", "normal"),
            outcome="failed",
        )


def outbox_rows(
    snapshot: Snapshot, output: TurnOutput, clinic: ClinicProfile, routing: Mapping[str, object], now: datetime
) -> list[OutboxRow]:
    conversation_id = snapshot.lease.conversation_id
    trace = trace_id_var.get()
    clinic_name = clinic.name
    patient = RecipientFacts(
        client_id=snapshot.client_id,
        phone=snapshot.client_phone,
        consent_state=snapshot.consent_state,
        sms_status=snapshot.sms_status,
    )
    rows: list[OutboxRow] = []
    for index, reply in enumerate(output.replies):
        body = shape_sms_reply(reply.text) if snapshot.channel == "sms" else reply.text
        meta = {"quick_replies": [{"label": q.label, "value": q.value} for q in reply.quick_replies]}
        kind = "safety" if reply.safety else "reply"
        # The same decision the send actor makes (chat goes to the open widget: nothing to decide).
        send_now = snapshot.channel != "sms" or decide(patient, send_policy(kind, clinic), now).send_now
        rows.append(
            OutboxRow(
                channel=snapshot.channel,
                kind=kind,
                to_address=(snapshot.client_phone or "") if snapshot.channel == "sms" else f"chat:{conversation_id}",
                from_address=str(routing.get("sms_number") or ""),
                body=body,
                client_id=snapshot.client_id,
                conversation_id=conversation_id,
                priority=0,
                meta=meta,
                dedupe_key=f"reply:{conversation_id}:{snapshot.last_seq}:{index}",
                trace_id=trace,
                send_now=send_now,
            )
        )
    if output.handoff and output.handoff.urgency in ("urgent", "emergency") and routing.get("oncall_phone"):
        rows.append(
            OutboxRow(
                channel="sms",
                kind="notification",
                to_address=str(routing["oncall_phone"]),
                from_address=str(routing.get("sms_number") or ""),
                body=(
                    f"{clinic_name}: {output.handoff.urgency.upper()} handoff on conversation {conversation_id} "
                    f"({output.handoff.reason[:80]}). Run: medspa staff show {conversation_id}"
                ),
                client_id=None,
                conversation_id=conversation_id,
                priority=0,
                dedupe_key=f"handoff:{conversation_id}:{snapshot.last_seq}",
                trace_id=trace,
            )
        )
    return rows
