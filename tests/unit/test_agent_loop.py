"""The agent loop with a scripted ChatModel double and a recording ToolExecutor double (unit level only)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.agent_loop import NOT_CONFIRMED, AgentBrain, bounded_history
from domain.conversation import AppointmentView, ClinicProfile, PatientProfile, TurnInput
from domain.ports import ChatMessage, ModelReply, ModelUnavailable, ModelUsage, ToolCall, TurnContext

NOW = datetime(2027, 3, 2, 18, 0, tzinfo=UTC)  # Tue Mar 2, 10:00 in Los Angeles
CLINIC = ClinicProfile(
    id=1,
    name="Glow MedSpa",
    timezone="America/Los_Angeles",
    phone="+14155550100",
    address="2150 Fillmore St",
    business_hours={"mon": [["09:00", "19:00"]], "sun": []},
    holidays=[],
    policies={"cancellation_window_hours": 24},
)
PATIENT = PatientProfile(
    client_id=7,
    name="Ana",
    email=None,
    consent_state="opted_in",
    upcoming=(
        AppointmentView(
            5,
            "Botox",
            "Dr. Chen",
            datetime(2027, 3, 4, 23, 0, tzinfo=UTC),
            datetime(2027, 3, 4, 23, 30, tzinfo=UTC),
            "booked",
        ),
    ),
)
PROPOSAL = {
    "action": "book",
    "service": "neurotoxin",
    "service_name": "Botox / Dysport",
    "start": "2027-03-03T15:00",
    "provider": "maya-chen",
    "provider_name": "Dr. Maya Chen",
    "summary": "Botox on Wed Mar 3, 3:00 PM.",
}


def call(name: str, args: dict[str, Any] | str, call_id: str | None = None) -> ToolCall:
    raw = args if isinstance(args, str) else json.dumps(args)
    return ToolCall(id=call_id or f"c_{name}_{len(raw)}", name=name, arguments=raw)


class ScriptedModel:
    """Returns the scripted replies in order and records what it was shown."""

    name = "scripted"

    def __init__(self, *replies: ModelReply | Exception | Callable[[Sequence[ChatMessage]], ModelReply]) -> None:
        self.replies = list(replies)
        self.seen: list[tuple[list[ChatMessage], list[str], TurnContext]] = []

    def complete(self, messages, tools, context) -> ModelReply:  # noqa: ANN001 - ChatModel protocol
        self.seen.append((list(messages), [t["function"]["name"] for t in tools], context))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(messages)
        return reply


class RecordingTools:
    def __init__(self, results: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.results = results or {}

    def execute(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, arguments))
        result = self.results.get(name, {"ok": True})
        if isinstance(result, Exception):
            raise result
        return result(arguments) if callable(result) else result


def text(content: str) -> ModelReply:
    return ModelReply(content=content, usage=ModelUsage(10, 5), model="scripted-1")


def tools_reply(*calls: ToolCall) -> ModelReply:
    return ModelReply(content=None, tool_calls=calls, usage=ModelUsage(20, 3), model="scripted-1")


def turn(
    *messages: str,
    state: str = "idle",
    slots: dict[str, Any] | None = None,
    history: tuple[ChatMessage, ...] = (),
    channel: str = "sms",
) -> TurnInput:
    return TurnInput(
        clinic=CLINIC,
        patient=PATIENT,
        conversation_id=3,
        channel=channel,
        agent_state=state,
        slots=dict(slots or {}),
        history=history,
        new_messages=messages,
        now=NOW,
        trace_id="t1",
    )


def tool_results(model: ScriptedModel, step: int) -> list[dict[str, Any]]:
    """The tool messages the model saw at ``step`` (0-based), parsed."""
    return [json.loads(m.content or "{}") for m in model.seen[step][0] if m.role == "tool"]


# ------------------------------------------------------------------ safety
def test_emergency_replies_and_hands_off_without_calling_the_model() -> None:
    model = ScriptedModel()
    tools = RecordingTools()
    out = AgentBrain(model).run_turn(turn("my lips are really swollen and I can't breathe"), tools)
    assert model.seen == [] and tools.calls == []
    assert "911" in out.replies[0].text
    assert out.handoff is not None and out.handoff.urgency == "emergency"
    assert out.agent_state == "handoff" and out.outcome == "handoff"


# ------------------------------------------------------------------ the loop
def test_multi_step_loop_feeds_results_back_and_records_everything() -> None:
    slots = [
        {"start": f"2027-03-03T1{i}:00", "label": f"Wed Mar 3, {i}:00 PM", "provider": "Dr. Maya Chen"}
        for i in range(5)
    ]
    model = ScriptedModel(
        tools_reply(call("check_availability", {"service": "botox", "date_from": "2027-03-03"})),
        text("I have Wed Mar 3 at 1:00, 2:00 or 3:00 PM. Which works?"),
    )
    tools = RecordingTools({"check_availability": {"service": "Botox", "slots": slots}})
    out = AgentBrain(model).run_turn(turn("botox tomorrow?"), tools)
    assert tools.calls == [
        (
            "check_availability",
            {
                "service": "botox",
                "date_from": "2027-03-03",
                "date_to": None,
                "time_of_day": None,
                "preferred_time": None,
                "provider": None,
            },
        )
    ]
    assert tool_results(model, 1) == [{"service": "Botox", "slots": slots}]
    assert out.steps == 2 and out.usage == ModelUsage(30, 8) and out.model == "scripted-1"
    assert [m.role for m in out.transcript] == ["assistant", "tool", "assistant"]
    assert [q.label for q in out.replies[0].quick_replies] == [s["label"] for s in slots[:4]]
    assert out.slots["offered_slots"][0]["start"] == "2027-03-03T10:00"
    assert out.agent_state == "collecting_booking"
    assert [a.name for a in out.tool_audit] == ["check_availability"] and out.tool_audit[0].ok


def test_system_prompt_and_context_describe_clinic_patient_and_today() -> None:
    model = ScriptedModel(text("hi"))
    history = (ChatMessage(role="tool", tool_call_id="x", content="{}"), ChatMessage(role="user", content="earlier"))
    AgentBrain(model).run_turn(turn("hello", history=history, slots={"service": "Botox"}), RecordingTools())
    messages, tool_names, context = model.seen[0]
    system = messages[0].content or ""
    assert "Glow MedSpa" in system and "Tuesday, March 2, 2027" in system and "America/Los_Angeles" in system
    assert "Ana" in system and "#5 Botox with Dr. Chen Thu Mar 4, 3:00 PM" in system
    assert "cancellation window hours: 24" in system
    assert [m.role for m in messages[1:]] == ["user", "user"]  # orphan tool result dropped from the window
    assert context.agent_state == "answering" and context.slots == {"service": "Botox"}
    assert "book_appointment" not in tool_names and "check_availability" in tool_names


def test_parallel_calls_run_in_order() -> None:
    model = ScriptedModel(
        tools_reply(
            call("get_service_details", {"service": "botox"}, "a"),
            call("get_service_details", {"service": "hydrafacial"}, "b"),
        ),
        text("Botox is $14/unit, HydraFacial $225."),
    )
    tools = RecordingTools({"get_service_details": lambda a: {"name": a["service"]}})
    out = AgentBrain(model).run_turn(turn("prices?"), tools)
    assert [c[1]["service"] for c in tools.calls] == ["botox", "hydrafacial"]
    assert [m.tool_call_id for m in model.seen[1][0] if m.role == "tool"] == ["a", "b"]
    assert [a.call_id for a in out.tool_audit] == ["a", "b"]


@pytest.mark.parametrize(
    ("bad_call", "fragment"),
    [
        (call("check_availability", '{"service": "botox"'), "not valid JSON"),
        (call("check_availability", "[1, 2]"), "JSON object"),
        (call("check_availability", {"service": "botox", "clinic_id": 2}), "clinic_id"),
        (call("send_bitcoin", {}), "unknown tool"),
        (call("book_appointment", {"service": "botox", "start": "2027-03-03T15:00"}), "not available in state"),
    ],
)
def test_bad_calls_become_recoverable_tool_errors(bad_call: ToolCall, fragment: str) -> None:
    model = ScriptedModel(tools_reply(bad_call), text("Sorry, let me try that again."))
    tools = RecordingTools()
    out = AgentBrain(model).run_turn(turn("botox please"), tools)
    assert tools.calls == []
    [result] = tool_results(model, 1)
    assert fragment in result["error"]
    assert out.outcome == "replied" and out.tool_audit[0].ok is False
    assert out.replies[0].text == "Sorry, let me try that again."


@pytest.mark.parametrize(
    ("sent", "audited"),
    [
        (call("list_services", {}), {}),
        (call("list_services", ""), {}),
        (call("get_service_details", {"service": "botox"}), {"service": "botox"}),
        (call("check_availability", '{"service": "botox"'), {"_raw": '{"service": "botox"'}),
        (call("check_availability", "[1, 2]"), {"_raw": "[1, 2]"}),
        (call("send_bitcoin", {"to": "x"}), {"_raw": '{"to": "x"}'}),
    ],
)
def test_the_audit_keeps_parsed_arguments_and_only_unparsed_ones_raw(sent: ToolCall, audited: dict[str, Any]) -> None:
    # An empty object is a well-formed call (list_services takes nothing), not arguments that failed to parse.
    model = ScriptedModel(tools_reply(sent), text("Here you go."))
    tools = RecordingTools({"list_services": {"services": []}, "get_service_details": {"name": "Botox"}})
    out = AgentBrain(model).run_turn(turn("menu"), tools)
    assert [a.arguments for a in out.tool_audit] == [audited]


def test_executor_exceptions_do_not_escape() -> None:
    model = ScriptedModel(tools_reply(call("list_services", {})), text("Sorry."))
    out = AgentBrain(model).run_turn(turn("menu"), RecordingTools({"list_services": RuntimeError("boom")}))
    assert "failed" in tool_results(model, 1)[0]["error"] and out.outcome == "replied"


# ------------------------------------------------------------------ confirmation rule
def _book(start: str = "2027-03-03T15:00", service: str = "Botox", provider: str | None = None) -> ToolCall:
    return call("book_appointment", {"service": service, "start": start, "provider": provider})


def test_confirmed_booking_runs_with_the_proposed_details() -> None:
    model = ScriptedModel(tools_reply(_book(service="botox / dysport")), text("Booked!"))
    tools = RecordingTools({"book_appointment": {"ok": True, "appointment_id": 9, "status": "booked", "label": "x"}})
    out = AgentBrain(model).run_turn(turn("yes please", state="confirming", slots={"pending_action": PROPOSAL}), tools)
    assert tools.calls == [
        ("book_appointment", {"service": "neurotoxin", "start": "2027-03-03T15:00", "provider": "maya-chen"})
    ]
    assert "pending_action" not in out.slots and out.agent_state == "booked"


@pytest.mark.parametrize(
    ("message", "slots", "booking"),
    [
        ("yes", {}, _book()),  # nothing was proposed
        ("hmm, maybe", {"pending_action": PROPOSAL}, _book()),  # no yes
        ("yes but can we do 4 instead?", {"pending_action": PROPOSAL}, _book()),  # not a plain yes
        ("yes", {"pending_action": PROPOSAL}, _book(start="2027-03-03T16:00")),  # different time
        ("yes", {"pending_action": PROPOSAL}, _book(service="lip filler")),  # different service
        ("yes", {"pending_action": PROPOSAL}, _book(provider="Jordan Lee")),  # different provider
        ("yes", {"pending_action": {**PROPOSAL, "action": "cancel", "appointment_id": 5}}, _book()),  # other action
    ],
)
def test_unconfirmed_side_effects_never_reach_the_executor(message: str, slots: dict, booking: ToolCall) -> None:
    model = ScriptedModel(tools_reply(booking), text("ok"))
    tools = RecordingTools()
    AgentBrain(model).run_turn(turn(message, state="confirming", slots=slots), tools)
    assert tools.calls == []
    assert tool_results(model, 1)[0]["error"] == NOT_CONFIRMED


def test_a_proposal_cannot_be_confirmed_in_the_same_turn() -> None:
    proposal_result = dict(PROPOSAL)
    model = ScriptedModel(
        tools_reply(call("propose_action", {"action": "book", "service": "botox", "start": "2027-03-03T15:00"})),
        tools_reply(_book()),
        text("Reply YES to book."),
    )
    tools = RecordingTools({"propose_action": proposal_result})
    out = AgentBrain(model).run_turn(turn("yes book botox tomorrow 3pm"), tools)
    assert [c[0] for c in tools.calls] == ["propose_action"]
    assert tool_results(model, 2)[-1]["error"] == NOT_CONFIRMED
    assert out.slots["pending_action"]["start"] == "2027-03-03T15:00" and out.agent_state == "confirming"


def test_deposit_link_is_covered_by_the_booking_confirmation() -> None:
    model = ScriptedModel(
        tools_reply(_book()),
        tools_reply(call("create_deposit_link", {"appointment_id": 9})),
        tools_reply(call("create_deposit_link", {"appointment_id": 10})),  # some other appointment: refused
        text("Booked; pay here."),
    )
    tools = RecordingTools(
        {
            "book_appointment": {"ok": True, "appointment_id": 9, "status": "pending_deposit", "label": "Wed"},
            "create_deposit_link": {"ok": True, "url": "https://pay"},
        }
    )
    out = AgentBrain(model).run_turn(turn("yes", state="confirming", slots={"pending_action": PROPOSAL}), tools)
    assert [c[0] for c in tools.calls] == ["book_appointment", "create_deposit_link"]
    assert tools.calls[1][1] == {"appointment_id": 9}
    assert tool_results(model, 3)[-1]["error"] == NOT_CONFIRMED
    assert out.agent_state == "awaiting_deposit" and out.slots["deposit_ok"] == [9]


def test_a_plain_no_drops_the_proposal() -> None:
    model = ScriptedModel(text("No problem."))
    out = AgentBrain(model).run_turn(
        turn("no thanks", state="confirming", slots={"pending_action": PROPOSAL}), RecordingTools()
    )
    assert "pending_action" not in out.slots and "pending_action" not in model.seen[0][2].slots
    assert out.agent_state == "answering"


# ------------------------------------------------------------------ failure paths
def test_model_unavailable_gives_apology_and_handoff() -> None:
    model = ScriptedModel(ModelUnavailable("down"))
    out = AgentBrain(model).run_turn(turn("hello"), RecordingTools())
    assert out.outcome == "failed" and out.handoff is not None and out.handoff.reason == "model unavailable"
    assert "Sorry" in out.replies[0].text and out.agent_state == "handoff"


def test_step_cap_ends_with_a_graceful_reply_and_handoff() -> None:
    model = ScriptedModel(*[tools_reply(call("list_services", {}, f"c{i}")) for i in range(3)])
    tools = RecordingTools()
    out = AgentBrain(model, max_steps=3).run_turn(turn("menu"), tools)
    assert len(model.seen) == 3 and len(tools.calls) == 3
    assert out.outcome == "handoff" and out.handoff is not None and "follow up" in out.replies[0].text


def test_handoff_tool_sets_the_turn_handoff() -> None:
    model = ScriptedModel(
        tools_reply(call("handoff_to_staff", {"reason": "wants a person", "urgency": "normal"})),
        text("Our team will reach out."),
    )
    out = AgentBrain(model).run_turn(turn("person please"), RecordingTools({"handoff_to_staff": {"ok": True}}))
    assert out.handoff is not None and out.handoff.reason == "wants a person" and out.agent_state == "handoff"


def test_sms_replies_are_shaped_and_chat_replies_are_not_cut() -> None:
    long = "Sure thing. " + "This sentence is quite long and keeps going for a while. " * 12
    sms = AgentBrain(ScriptedModel(text(long))).run_turn(turn("hi"), RecordingTools())
    chat = AgentBrain(ScriptedModel(text(long))).run_turn(turn("hi", channel="chat"), RecordingTools())
    assert len(sms.replies[0].text) <= 320 and sms.replies[0].text.endswith(".")
    assert chat.replies[0].text == long.strip()


def test_bounded_history_keeps_the_tail_without_orphan_tool_results() -> None:
    history = [ChatMessage(role="user", content=str(i)) for i in range(30)]
    assert [m.content for m in bounded_history(history, 5)] == ["25", "26", "27", "28", "29"]
    with_tool = [ChatMessage(role="tool", tool_call_id="x", content="{}"), ChatMessage(role="user", content="u")]
    assert [m.role for m in bounded_history(with_tool, 5)] == ["user"]
    assert bounded_history(history, 0) == []
