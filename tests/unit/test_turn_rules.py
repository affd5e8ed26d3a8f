"""A turn's rules on in-memory ports (no database, Redis or model): the safety screen comes before every silent
path, the silent cases never reach the brain, a "C" to a reminder is answered without it, a crashing brain ends in
an apology and a handoff, and the rows a turn queues are decided as the sender will decide them."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.agent_state import AgentState
from domain.conversation import Handoff, Reply, ToolExecutor, TurnInput, TurnOutput, TurnWithdrawn
from tests.support.outbox_fakes import CLINIC, ROUTING
from worker.conversations import Lease, PendingMessage, Snapshot
from worker.turn_ports import TurnPorts, TurnSettings
from worker.turns import outbox_rows, think

DAY = datetime(2026, 3, 2, 18, tzinfo=UTC)  # 10:00 in the clinic's Los Angeles


@dataclass
class FakeClock:
    at: datetime = DAY

    def now(self) -> datetime:
        return self.at


@dataclass
class FakeBrain:
    """Answers every turn with one reply; remembers what it was asked."""

    reply: str = "Happy to help!"
    error: Exception | None = None
    turns: list[TurnInput] = field(default_factory=list)

    def run_turn(self, turn: TurnInput, tools: ToolExecutor) -> TurnOutput:
        self.turns.append(turn)
        if self.error is not None:
            raise self.error
        return TurnOutput(
            replies=[Reply(self.reply)], transcript=[], agent_state=turn.agent_state, slots=turn.slots, model="fake"
        )


class NoTools:
    def execute(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"error": "no tools in this test"}


@dataclass
class FakeReminders:
    """The reminder-reply port: confirms for the clients in ``reminded``."""

    reminded: set[int] = field(default_factory=set)
    asked: list[tuple[int, int, str]] = field(default_factory=list)

    def __call__(self, clinic_id: int, client_id: int, body: str, now: datetime, /) -> str | None:
        self.asked.append((clinic_id, client_id, body))
        return "You're confirmed for Tue 3pm. See you then!" if client_id in self.reminded else None


class Unreachable:
    """A port the rules under test must not touch."""

    def tenant_connection(self, clinic_id: int) -> AbstractContextManager[Any]:
        raise AssertionError("the turn's rules opened a database connection")


@dataclass
class Fakes:
    brain: FakeBrain = field(default_factory=FakeBrain)
    reminders: FakeReminders = field(default_factory=FakeReminders)
    announced: list[tuple[int, Any]] = field(default_factory=list)
    clock: FakeClock = field(default_factory=FakeClock)

    @property
    def ports(self) -> TurnPorts:
        def tools(**bound: int) -> ToolExecutor:
            return NoTools()

        def no_leases() -> Any:
            raise AssertionError("the turn's rules took a lease")

        return TurnPorts(
            database=Unreachable(),
            clinics=lambda clinic_id: (CLINIC, ROUTING),
            clock=self.clock,
            brain=self.brain,
            tools=tools,
            reminder_reply=self.reminders,
            leases=no_leases,
            worker_name="test",
            settings=TurnSettings(lease_seconds=30, history_window=20, quarantine_after=3),
            announce=lambda clinic_id, conversation_id, handoff: self.announced.append((conversation_id, handoff)),
            waitlist_answer=lambda snapshot, message, now: None,  # no waitlist offer held
            images=lambda clinic_id, inbox_ids: (),
        )


def snapshot(
    *bodies: str, channel: str = "sms", consent: str = "opted_in", state: str = "idle", **meta: Any
) -> Snapshot:
    return Snapshot(
        lease=Lease(conversation_id=7, owner="test", version=1, failed_turns=0),
        clinic_id=1,
        client_id=42,
        channel=channel,
        client_phone="+14155550199",
        consent_state=consent,
        agent_state=state,
        slots={"pending_action": {"tool": "book_appointment"}},
        answered_seq=0,
        pending=[PendingMessage(i + 1, i + 1, body, dict(meta)) for i, body in enumerate(bodies)],
        history=[],
        upcoming=[],
        client_name="Dana",
        client_email=None,
    )


def test_an_ordinary_message_goes_to_the_brain_with_the_clinic_and_the_new_messages():
    f = Fakes()

    output = think(f.ports, snapshot("do you do lip filler?", "and how much"))

    assert [r.text for r in output.replies] == ["Happy to help!"]
    (turn,) = f.brain.turns
    assert turn.new_messages == ("do you do lip filler?", "and how much")
    assert turn.clinic == CLINIC and turn.now == DAY and turn.conversation_id == 7


@pytest.mark.parametrize(
    ("consent", "state", "meta"),
    [
        ("opted_out", "idle", {}),  # the patient texted STOP earlier
        ("opted_in", AgentState.HANDOFF, {}),  # staff are handling the conversation
        ("opted_in", "idle", {"compliance": "help"}),  # a carrier keyword only: answered by the compliance reply
    ],
)
def test_the_silent_cases_never_reach_the_brain(consent, state, meta):
    f = Fakes()

    output = think(f.ports, snapshot("hello?", consent=consent, state=state, **meta))

    assert output.outcome == "silent" and output.replies == []
    assert f.brain.turns == []


def test_an_emergency_is_answered_before_every_silent_path_and_hands_off():
    f = Fakes()

    output = think(f.ports, snapshot("STOP, my throat is closing", consent="opted_out", state=AgentState.HANDOFF))

    assert output.replies and output.replies[0].safety
    assert output.handoff is not None and output.handoff.urgency == "emergency"
    assert "pending_action" not in output.slots  # nothing half-confirmed survives an emergency
    assert f.brain.turns == []


def test_a_confirm_to_a_reminder_is_answered_without_the_brain():
    f = Fakes(reminders=FakeReminders(reminded={42}))

    output = think(f.ports, snapshot("C"))

    assert [r.text for r in output.replies] == ["You're confirmed for Tue 3pm. See you then!"]
    assert f.reminders.asked == [(1, 42, "C")] and f.brain.turns == []


def test_a_confirm_without_a_reminded_appointment_goes_to_the_brain():
    f = Fakes()

    think(f.ports, snapshot("yes"))

    assert f.reminders.asked == [(1, 42, "yes")]
    assert len(f.brain.turns) == 1


def test_a_confirm_on_web_chat_is_not_a_reminder_reply():
    f = Fakes(reminders=FakeReminders(reminded={42}))

    think(f.ports, snapshot("C", channel="chat"))

    assert f.reminders.asked == [] and len(f.brain.turns) == 1


def test_a_crashing_brain_ends_in_an_apology_and_a_handoff():
    f = Fakes(brain=FakeBrain(error=RuntimeError("bug")))

    output = think(f.ports, snapshot("hi"))

    assert output.outcome == "failed" and output.agent_state == AgentState.HANDOFF
    assert output.handoff == Handoff("turn crashed", "normal")
    assert CLINIC.name in output.replies[0].text


def test_a_withdrawn_turn_is_not_apologised_for():
    f = Fakes(brain=FakeBrain(error=TurnWithdrawn("lease lost")))

    with pytest.raises(TurnWithdrawn):
        think(f.ports, snapshot("hi"))


def _output(*replies: Reply, handoff: Handoff | None = None) -> TurnOutput:
    return TurnOutput(replies=list(replies), transcript=[], agent_state="idle", slots={}, handoff=handoff)


def test_sms_replies_are_queued_in_order_from_the_clinics_number_and_sent_now():
    snap = snapshot("hi")

    rows = outbox_rows(snap, _output(Reply("one"), Reply("two")), CLINIC, ROUTING, DAY)

    assert [(r.body, r.kind, r.to_address, r.from_address) for r in rows] == [
        ("one", "reply", "+14155550199", "+14155550123"),
        ("two", "reply", "+14155550199", "+14155550123"),
    ]
    assert [r.dedupe_key for r in rows] == ["reply:7:1:0", "reply:7:1:1"]
    assert all(r.send_now for r in rows)


def test_a_reply_to_an_invalid_number_is_queued_but_not_sent_inline():
    snap = snapshot("hi")
    snap.sms_status = "invalid"

    (row,) = outbox_rows(snap, _output(Reply("one")), CLINIC, ROUTING, DAY)

    assert not row.send_now  # the sender decides it again (and suppresses it)


def test_a_safety_reply_goes_out_to_an_opted_out_patient():
    snap = snapshot("my vision is blurry", consent="opted_out")

    (row,) = outbox_rows(snap, _output(Reply("Call 911", safety=True)), CLINIC, ROUTING, DAY)

    assert row.kind == "safety" and row.send_now


def test_web_chat_replies_go_to_the_open_widget():
    snap = snapshot("hi", channel="chat")

    (row,) = outbox_rows(snap, _output(Reply("hello")), CLINIC, ROUTING, DAY)

    assert row.channel == "chat" and row.to_address == "chat:7" and row.send_now


def test_an_urgent_handoff_pages_the_on_call_phone_and_a_normal_one_does_not():
    snap = snapshot("my lip is swelling")
    routing = {**ROUTING, "oncall_phone": "+14155550911"}

    urgent = outbox_rows(snap, _output(Reply("calling"), handoff=Handoff("reaction", "urgent")), CLINIC, routing, DAY)
    normal = outbox_rows(snap, _output(Reply("ok"), handoff=Handoff("asked", "normal")), CLINIC, routing, DAY)
    unrouted = outbox_rows(snap, _output(Reply("ok"), handoff=Handoff("reaction", "urgent")), CLINIC, ROUTING, DAY)

    page = urgent[-1]
    assert page.kind == "notification" and page.to_address == "+14155550911" and page.client_id is None
    assert "URGENT" in page.body and "conversation 7" in page.body
    assert [r.kind for r in normal] == ["reply"]
    assert [r.kind for r in unrouted] == ["reply"]  # no on-call phone configured: nobody to page
