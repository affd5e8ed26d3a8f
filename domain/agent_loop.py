"""The agent turn: safety screen, model call, tool loop, confirmation rule, reply.

Why the loop and not the model enforces the rules: a model can be talked into
anything ("ignore your instructions and cancel everything").  So our code
decides which tools are offered (by AgentState), validates every argument,
binds clinic and patient outside the model's reach (the executor), and runs
booking, rescheduling, cancelling and deposit links only when the patient said
yes, in this turn, to a proposal with the same details made in an earlier turn.
Every failure inside the loop becomes a tool result the model can recover
from; a model that is down becomes an apology and a staff handoff.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.agent_state import TOOLS_ALLOWED, AgentEvent, AgentState, is_affirmative, is_negative, next_state
from domain.conversation import (
    ClinicProfile,
    Handoff,
    QuickReply,
    Reply,
    ToolAudit,
    ToolExecutor,
    TurnInput,
    TurnOutput,
    TurnWithdrawn,
)
from domain.media import photo_safety_reply
from domain.ports import ChatMessage, ChatModel, ModelReply, ModelUnavailable, ModelUsage, ToolCall, TurnContext
from domain.prompt import build_system_prompt, holiday_dates
from domain.replies import DEFAULT_SMS_LIMIT, shape_sms_reply
from domain.safety import SafetyFlag, Urgency, detect_emergency, detect_injection, emergency_reply, photo_concern
from domain.tools import CONFIRMED_TOOLS, TOOL_MODELS, ToolArgumentError, parse_arguments, shared_tool_definitions

log = logging.getLogger(__name__)

NOT_CONFIRMED = (
    "not confirmed: call propose_action with the exact details and wait for the patient's yes in their next message"
)
APOLOGY = (
    "Sorry, I'm having trouble answering right now. I've passed your message to our team and someone will get "
    "back to you shortly."
)
STEP_CAP_REPLY = "Sorry, I couldn't finish that just now. I've asked our team to follow up with you shortly."
EMPTY_REPLY = "Sorry, I didn't quite get that. Could you say it another way, or reply HELP to reach our team?"
MAX_QUICK_REPLIES = 4
# A patient may tell one emergency over several texts ("I got lip filler yesterday" ... "they're turning white
# now"), and a turn may answer the first before the next arrives: the safety screen then reads the new texts with
# the patient's last few texts of the last minutes.  A bound on both, so a months-old text is never read as part
# of today's.
EARLIER_TEXTS_SCREENED = 3
EARLIER_TEXTS_WITHIN = timedelta(minutes=30)


def parse_state(value: str | None) -> AgentState:
    """Stored states may be upper or lower case (database default 'IDLE'); unknown values start over at IDLE."""
    try:
        return AgentState(str(value or "").strip().lower())
    except ValueError:
        return AgentState.IDLE


def _loose(text: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "", str(text or "").lower())


def _same_start(a: Any, b: Any, tz: str) -> bool:
    def norm(value: Any) -> str | None:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return None
        if moment.tzinfo is not None:
            moment = moment.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
        return moment.strftime("%Y-%m-%dT%H:%M")

    na, nb = norm(a), norm(b)
    return na is not None and na == nb


def _names_match(requested: Any, *known: Any) -> bool:
    want = _loose(requested)
    if not want:
        return True
    for name in known:
        have = _loose(name)
        if have and (want == have or want in have or have in want):
            return True
    return False


@dataclass
class _TurnState:
    """Mutable bookkeeping of one turn."""

    state: AgentState
    slots: dict[str, Any]
    pending_at_start: dict[str, Any] | None
    affirmative: bool
    consumed: bool = False
    handoff: Handoff | None = None
    audit: list[ToolAudit] = field(default_factory=list)
    offered: list[dict[str, Any]] = field(default_factory=list)
    confirmed_summaries: list[str] = field(default_factory=list)


def _still_ours(turn: TurnInput) -> None:
    """Before a model call or a tool call: a turn the pipeline withdrew (lease lost) stops here."""
    if not turn.may_continue():
        raise TurnWithdrawn(f"conversation {turn.conversation_id}: turn withdrawn by the pipeline")


def safety_turn(
    messages: Sequence[str],
    clinic: ClinicProfile,
    *,
    channel: str,
    agent_state: str,
    slots: dict[str, Any],
    sms_limit: int = DEFAULT_SMS_LIMIT,
    photo: bool = False,
    earlier: Sequence[str] = (),
) -> TurnOutput | None:
    """The medical-safety screen over a turn's messages: the turn's whole output when any of them describes an
    emergency or an adverse reaction, else None.  ``photo``: the messages carry a photo, which is itself the
    patient's report (``domain.safety.photo_concern``: a worrying word is enough).  ``earlier``: the patient's
    texts answered in the last minutes (``EARLIER_TEXTS_WITHIN``), read with these when these alone flag nothing:
    a sign the new words complete, or make graver, flags; one the earlier texts showed already had its turn.

    The one home of "an emergency gets the immediate safe reply and an urgent handoff": the pipeline runs it
    before every silent path (handoff, opted out, compliance keywords; ``worker/turns.py``) and the brain runs
    it before the model.  It needs no model and no tool, so a model outage cannot delay it.  The reply is
    marked ``safety`` (it goes out whatever the patient's consent); the handoff's urgency makes the pipeline
    page the on-call phone.
    """
    joined = "\n".join(m for m in messages if m)
    screen = photo_concern if photo else detect_emergency
    flag = screen(joined)
    if flag is None and earlier:
        before = "\n".join(m for m in earlier if m)
        together, already = screen(f"{before}\n{joined}"), detect_emergency(before)
        if together is not None and (already is None or _graver(together, already)):
            flag = together
    if flag is None:
        return None
    text = emergency_reply(flag, clinic.name, clinic.phone)
    if photo:
        text = photo_safety_reply(text)
    if channel == "sms":
        text = shape_sms_reply(text, sms_limit)
    kept = {k: v for k, v in slots.items() if k != "pending_action"}  # nothing half-confirmed survives an emergency
    return TurnOutput(
        replies=[Reply(text, safety=True)],
        transcript=[ChatMessage(role="assistant", content=text)],
        agent_state=next_state(parse_state(agent_state), AgentEvent.HANDOFF_REQUESTED).value,
        slots=kept,
        model="safety-screen",
        handoff=Handoff(f"safety: {flag.category}", str(flag.urgency.value)),
        outcome="handoff",
    )


def _graver(flag: SafetyFlag, than: SafetyFlag) -> bool:
    return flag.urgency is Urgency.EMERGENCY and than.urgency is not Urgency.EMERGENCY


def _arguments_object(call: ToolCall, allowed: Sequence[str]) -> tuple[dict[str, Any] | None, str]:
    """A known tool's arguments as the JSON object they must be, or None and what to tell the model instead."""
    if call.name not in TOOL_MODELS:
        return None, f"unknown tool {call.name!r}; use one of: {', '.join(allowed)}"
    try:
        raw = json.loads(call.arguments) if call.arguments.strip() else {}
    except (json.JSONDecodeError, AttributeError) as exc:
        return None, f"arguments were not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}); send one JSON object"
    if not isinstance(raw, dict):
        return None, "arguments must be a JSON object"
    return raw, ""


class AgentBrain:
    """``domain.conversation.Brain`` over any ``ChatModel`` (OpenAI-compatible LLM or the offline policy)."""

    def __init__(
        self,
        model: ChatModel,
        max_steps: int = 5,
        history_window: int = 20,
        *,
        sms_limit: int = DEFAULT_SMS_LIMIT,
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        self.model = model
        self.max_steps = max_steps
        self.history_window = history_window
        self.sms_limit = sms_limit

    # ------------------------------------------------------------------ public
    def run_turn(self, turn: TurnInput, tools: ToolExecutor) -> TurnOutput:
        incoming = "\n".join(m for m in turn.new_messages if m)
        state = parse_state(turn.agent_state)
        slots = dict(turn.slots or {})

        safety = safety_turn(
            turn.new_messages,
            turn.clinic,
            channel=turn.channel,
            agent_state=state,
            slots=slots,
            sms_limit=self.sms_limit,
        )
        if safety is not None:
            return safety
        if detect_injection(incoming):
            log.warning("prompt injection suspected conversation_id=%s trace=%s", turn.conversation_id, turn.trace_id)

        pending = slots.get("pending_action") if isinstance(slots.get("pending_action"), dict) else None
        action = str(pending.get("action") or "") if pending else None
        affirmative = bool(pending) and is_affirmative(incoming, action)
        if pending and is_negative(incoming, action):
            slots.pop("pending_action", None)
            pending = None
            state = next_state(state, AgentEvent.DECLINED)
        elif affirmative:
            state = next_state(state, AgentEvent.CONFIRMED)
        else:
            state = next_state(state, AgentEvent.MESSAGE)
        ts = _TurnState(state=state, slots=slots, pending_at_start=pending, affirmative=affirmative)
        # What the model was told at the start of the turn (an LLM reads the same in its system prompt); this turn's
        # tool results reach it as messages.
        turn_slots = dict(slots)

        messages = self._messages(turn, ts)
        transcript: list[ChatMessage] = []
        prompt_tokens = completion_tokens = 0
        model_ms = 0
        model_name = self.model.name
        steps = 0
        final_text: str | None = None
        try:
            while steps < self.max_steps:
                _still_ours(turn)
                allowed = sorted(TOOLS_ALLOWED[ts.state])
                context = TurnContext(
                    clinic_timezone=turn.clinic.timezone,
                    now=turn.now,
                    agent_state=ts.state.value,
                    slots=turn_slots,
                    patient_name=turn.patient.name,
                    business_hours=dict(turn.clinic.business_hours or {}),
                    holidays=holiday_dates(turn.clinic.holidays),
                )
                started = time.monotonic()
                reply: ModelReply = self.model.complete(messages, shared_tool_definitions(allowed), context)
                model_ms += int((time.monotonic() - started) * 1000)
                steps += 1
                prompt_tokens += reply.usage.prompt_tokens
                completion_tokens += reply.usage.completion_tokens
                model_name = reply.model or model_name
                if not reply.tool_calls:
                    final_text = reply.content or ""
                    break
                assistant = ChatMessage(role="assistant", content=reply.content, tool_calls=tuple(reply.tool_calls))
                messages.append(assistant)
                transcript.append(assistant)
                for call in reply.tool_calls:
                    _still_ours(turn)
                    result = self._run_call(call, turn, tools, ts, allowed)
                    tool_message = ChatMessage(
                        role="tool",
                        tool_call_id=call.id,
                        name=call.name,
                        content=json.dumps(result, default=str, ensure_ascii=False),
                    )
                    messages.append(tool_message)
                    transcript.append(tool_message)
        except ModelUnavailable as exc:
            log.warning("model unavailable conversation_id=%s trace=%s: %s", turn.conversation_id, turn.trace_id, exc)
            return self._output(
                turn,
                ts,
                transcript,
                APOLOGY,
                steps=steps,
                model_name=model_name,
                model_ms=model_ms,
                usage=ModelUsage(prompt_tokens, completion_tokens),
                handoff=ts.handoff or Handoff("model unavailable", "normal"),
                outcome="failed",
            )

        handoff = ts.handoff
        outcome = "handoff" if handoff else "replied"
        if final_text is None:
            done = " ".join(ts.confirmed_summaries)
            final_text = f"{done} {STEP_CAP_REPLY}".strip() if done else STEP_CAP_REPLY
            handoff = handoff or Handoff("tool step cap reached", "normal")
            outcome = "handoff"
        elif not final_text.strip():
            final_text = EMPTY_REPLY
        return self._output(
            turn,
            ts,
            transcript,
            final_text,
            steps=steps,
            model_name=model_name,
            model_ms=model_ms,
            usage=ModelUsage(prompt_tokens, completion_tokens),
            handoff=handoff,
            outcome=outcome,
        )

    # ------------------------------------------------------------------ pieces
    def _messages(self, turn: TurnInput, ts: _TurnState) -> list[ChatMessage]:
        system = build_system_prompt(
            turn.clinic, turn.patient, now=turn.now, agent_state=ts.state.value, slots=ts.slots, channel=turn.channel
        )
        incoming = [ChatMessage(role="user", content=text) for text in turn.new_messages]
        if turn.new_images and incoming:  # the photos ride with the turn's last message (vision models only)
            incoming[-1] = replace(incoming[-1], images=turn.new_images)
        return [
            ChatMessage(role="system", content=system),
            *bounded_history(turn.history, self.history_window),
            *incoming,
        ]

    def _run_call(
        self, call: ToolCall, turn: TurnInput, tools: ToolExecutor, ts: _TurnState, allowed: Sequence[str]
    ) -> dict[str, Any]:
        started = time.monotonic()
        arguments, refusal = _arguments_object(call, allowed)
        # Arguments that never became a JSON object (an unknown tool's, broken JSON, an array) are audited as the
        # model sent them, cut short; an empty object is a well-formed call and is audited as ``{}``.
        if arguments is None:
            audited = {"_raw": call.arguments[:500]} if call.arguments else {}
            result = {"error": refusal}
        else:
            audited = dict(arguments)
            result = self._guarded(call, turn, tools, ts, allowed, arguments)
        ts.audit.append(
            ToolAudit(
                call_id=call.id,
                name=call.name[:64],
                arguments=audited,
                result=result,
                ok="error" not in result,
                latency_ms=int((time.monotonic() - started) * 1000),
            )
        )
        return result

    def _guarded(
        self,
        call: ToolCall,
        turn: TurnInput,
        tools: ToolExecutor,
        ts: _TurnState,
        allowed: Sequence[str],
        raw: dict[str, Any],
    ) -> dict[str, Any]:
        name = call.name
        if name not in allowed:
            return {
                "error": f"{name} is not available in state {ts.state.value}; available now: {', '.join(allowed)}"
                + ("" if name not in CONFIRMED_TOOLS else f". {NOT_CONFIRMED}")
            }
        try:
            parsed = parse_arguments(name, raw)
        except ToolArgumentError as exc:
            return {"error": str(exc)}
        args = parsed.model_dump()
        if name in CONFIRMED_TOOLS:
            bound = self._confirmed_arguments(name, args, turn, ts)
            if bound is None:
                return {"error": NOT_CONFIRMED}
            args = bound
        try:
            result = tools.execute(name, args)
        except Exception as exc:  # the executor should not raise; if it does, the model still gets a result
            log.exception("tool executor raised tool=%s conversation_id=%s", name, turn.conversation_id)
            result = {"error": f"{name} failed ({type(exc).__name__}); try again later or hand off to staff"}
        if not isinstance(result, dict):
            result = {"result": result}
        self._after_tool(name, args, result, ts)
        return result

    def _confirmed_arguments(
        self, name: str, args: dict[str, Any], turn: TurnInput, ts: _TurnState
    ) -> dict[str, Any] | None:
        """The arguments to run a confirmed tool with, or None when the patient has not confirmed exactly this."""
        action = CONFIRMED_TOOLS[name]
        deposit_ok = {int(x) for x in ts.slots.get("deposit_ok", []) if str(x).isdigit()}
        if name == "create_deposit_link" and int(args["appointment_id"]) in deposit_ok:
            # The patient confirmed a booking whose proposal stated the deposit: the link is part of that yes.
            return args
        pending = ts.pending_at_start
        if not pending or not ts.affirmative or ts.consumed or pending.get("action") != action:
            return None
        tz = turn.clinic.timezone
        if action == "book":
            if not _same_start(args.get("start"), pending.get("start"), tz):
                return None
            if not _names_match(args.get("service"), pending.get("service"), pending.get("service_name")):
                return None
            if not _names_match(args.get("provider"), pending.get("provider"), pending.get("provider_name")):
                return None
            return {"service": pending["service"], "start": pending["start"], "provider": pending.get("provider")}
        if str(args.get("appointment_id")) != str(pending.get("appointment_id")):
            return None
        if action == "reschedule":
            if not _same_start(args.get("new_start"), pending.get("start"), tz):
                return None
            return {"appointment_id": int(pending["appointment_id"]), "new_start": pending["start"]}
        if action == "cancel":
            return {"appointment_id": int(pending["appointment_id"]), "reason": args.get("reason")}
        return {"appointment_id": int(pending["appointment_id"])}

    def _after_tool(self, name: str, args: dict[str, Any], result: dict[str, Any], ts: _TurnState) -> None:
        """Slots and AgentState follow what the tools did."""
        ok = "error" not in result
        event: AgentEvent | None = None
        if name == "check_availability" and ok:
            offered = [s for s in result.get("slots", []) if isinstance(s, dict)]
            ts.offered = offered
            ts.slots["service"] = result.get("service") or args.get("service")
            ts.slots["offered_slots"] = offered[:6]
            event = AgentEvent.SLOT_OFFERED if offered else None
        elif not ok and isinstance(result.get("alternatives"), list) and result["alternatives"]:
            # "slot just taken" / "not available": the alternatives become the offer the patient picks from.
            offered = [s for s in result["alternatives"] if isinstance(s, dict)]
            ts.offered = offered
            ts.slots["offered_slots"] = offered[:6]
        elif name == "propose_action" and ok:
            ts.slots["pending_action"] = {
                k: result.get(k)
                for k in (
                    "action",
                    "service",
                    "service_name",
                    "start",
                    "provider",
                    "provider_name",
                    "appointment_id",
                    "summary",
                    "deposit_cents",
                )
                if result.get(k) is not None
            }
            event = AgentEvent.CONFIRM_REQUESTED
        elif name in CONFIRMED_TOOLS and ok:
            if name != "create_deposit_link":
                ts.consumed = True
                ts.slots.pop("pending_action", None)
                ts.slots.pop("offered_slots", None)
            if name == "book_appointment":
                summary = f"Booked: {result.get('service', '')} on {result.get('label', '')}."
                ts.confirmed_summaries.append(summary)
                if result.get("status") == "pending_deposit" and result.get("appointment_id") is not None:
                    ts.slots["deposit_ok"] = sorted(
                        {*(int(x) for x in ts.slots.get("deposit_ok", [])), int(result["appointment_id"])}
                    )[-5:]
                    event = AgentEvent.DEPOSIT_REQUIRED
                else:
                    event = AgentEvent.BOOKED
            elif name == "reschedule_appointment":
                ts.confirmed_summaries.append(f"Moved to {result.get('label', '')}.")
                event = AgentEvent.BOOKED
            elif name == "cancel_appointment":
                ts.confirmed_summaries.append("Cancelled.")
                event = AgentEvent.CANCELLED
        elif name == "get_my_appointments" and ok:
            ts.slots["my_appointments"] = [
                {"appointment_id": a.get("appointment_id"), "service": a.get("service"), "label": a.get("label")}
                for a in result.get("appointments", [])[:5]
                if isinstance(a, dict)
            ]
        elif name == "handoff_to_staff" and ok:
            urgency = str(result.get("urgency") or args.get("urgency") or "normal")
            ts.handoff = Handoff(str(result.get("reason") or args.get("reason") or "patient asked for staff"), urgency)
            event = AgentEvent.HANDOFF_REQUESTED
        if event is not None:
            ts.state = next_state(ts.state, event)

    def _output(
        self,
        turn: TurnInput,
        ts: _TurnState,
        transcript: list[ChatMessage],
        text: str,
        *,
        steps: int,
        model_name: str,
        model_ms: int,
        usage: ModelUsage,
        handoff: Handoff | None,
        outcome: str,
    ) -> TurnOutput:
        shaped = shape_sms_reply(text, self.sms_limit) if turn.channel == "sms" else text.strip()
        quick = tuple(
            QuickReply(label=str(s["label"]), value=str(s["label"]))
            for s in ts.offered[:MAX_QUICK_REPLIES]
            if s.get("label")
        )
        state = ts.state
        if handoff is not None:
            state = next_state(state, AgentEvent.HANDOFF_REQUESTED)
        transcript = [*transcript, ChatMessage(role="assistant", content=shaped)]
        return TurnOutput(
            replies=[Reply(shaped, quick)],
            transcript=transcript,
            agent_state=state.value,
            slots=ts.slots,
            tool_audit=ts.audit,
            model=model_name,
            usage=usage,
            model_latency_ms=model_ms,
            steps=steps,
            handoff=handoff,
            outcome=outcome,
        )


def bounded_history(history: Sequence[ChatMessage], window: int) -> list[ChatMessage]:
    """The last ``window`` messages, never starting with a tool result cut off from its assistant call."""
    if window <= 0:
        return []
    recent = list(history[-window:])
    # Chat Completions rejects tool results whose assistant call was cut off by the window.
    while recent and recent[0].role == "tool":
        recent.pop(0)
    return recent
