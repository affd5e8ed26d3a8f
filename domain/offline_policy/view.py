"""What the policy reads in one step: the patient's new text, earlier texts and this turn's tool results."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.catalog import ServiceRef
from domain.offline_policy.vocabulary import _norm
from domain.ports import ChatMessage, TurnContext


# --------------------------------------------------------------------------------------------- reading
@dataclass
class _Step:
    name: str
    arguments: dict[str, Any]
    result: dict[str, Any]

    @property
    def ok(self) -> bool:
        return "error" not in self.result


@dataclass
class _View:
    """What the policy knows in one step: the patient's new text, earlier texts, and this turn's tool results."""

    text: str  # the new messages, joined
    norm: str
    earlier_user: list[str]  # earlier patient texts, newest first, since the last completed action
    steps: list[_Step]
    tools: set[str]
    ctx: TurnContext
    all_user: list[str] = field(default_factory=list)  # every patient text in the window, oldest first
    last_assistant: str = ""  # the agent's previous reply (what the patient is answering)
    services: list[ServiceRef] = field(default_factory=list)

    def done(self, name: str) -> list[_Step]:
        return [s for s in self.steps if s.name == name]

    def last(self, name: str) -> _Step | None:
        found = self.done(name)
        return found[-1] if found else None


_COMPLETING = {"book_appointment", "cancel_appointment", "reschedule_appointment", "handoff_to_staff"}


def _read(messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]], ctx: TurnContext) -> _View:
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    first_user = last_user
    while first_user > 0 and messages[first_user - 1].role == "user":
        first_user -= 1
    new_texts = [m.content or "" for m in messages[first_user : last_user + 1]] if last_user >= 0 else []
    names: dict[str, tuple[str, dict[str, Any]]] = {}
    for message in messages:
        for call in message.tool_calls:
            try:
                args = json.loads(call.arguments or "{}")
            except json.JSONDecodeError:
                args = {}
            names[call.id] = (call.name, args if isinstance(args, dict) else {})
    steps: list[_Step] = []
    for message in messages[last_user + 1 :]:
        if message.role == "tool" and message.tool_call_id in names:
            name, args = names[message.tool_call_id]
            try:
                result = json.loads(message.content or "{}")
            except json.JSONDecodeError:
                result = {"error": "unreadable result"}
            steps.append(_Step(name, args, result if isinstance(result, dict) else {"result": result}))
    earlier: list[str] = []
    for message in reversed(messages[: max(first_user, 0)]):
        if message.role == "tool" and message.tool_call_id in names:
            name = names[message.tool_call_id][0]
            if name in _COMPLETING and '"error"' not in (message.content or ""):
                break
        if message.role == "user" and message.content:
            earlier.append(message.content)
        if len(earlier) >= 6:
            break
    last_assistant = next(
        (
            m.content or ""
            for m in reversed(messages[: max(first_user, 0)])
            if m.role == "assistant" and m.content and not m.tool_calls
        ),
        "",
    )
    all_user = [m.content or "" for m in messages if m.role == "user" and m.content]
    tool_names = {t.get("function", {}).get("name", "") for t in tools}
    text = "\n".join(new_texts)
    return _View(
        text=text,
        norm=_norm(text),
        earlier_user=earlier,
        steps=steps,
        tools=tool_names,
        ctx=ctx,
        all_user=all_user,
        last_assistant=last_assistant,
    )


Decision = str | list[tuple[str, dict[str, Any]]]


def _cannot(view: _View) -> str:
    return "Sorry, I can't do that from here right now. I've noted it; reply 'talk to a person' and our team will help."


# --------------------------------------------------------------------------------------------- helpers
_CONFIRMED_ACTIONS = {
    "book_appointment": "book",
    "cancel_appointment": "cancel",
    "reschedule_appointment": "reschedule",
    "create_deposit_link": "deposit",
}


def _pending_from_step(step: _Step) -> dict[str, Any]:
    args = step.arguments
    return {
        "action": _CONFIRMED_ACTIONS[step.name],
        "service": args.get("service"),
        "start": args.get("start") or args.get("new_start"),
        "provider": args.get("provider"),
        "appointment_id": args.get("appointment_id"),
    }


def _replace_text(view: _View, text: str) -> _View:
    return _View(
        text=text,
        norm=_norm(text),
        earlier_user=view.earlier_user,
        steps=view.steps,
        tools=view.tools,
        ctx=view.ctx,
        all_user=view.all_user,
        last_assistant=view.last_assistant,
        services=view.services,
    )


def _catalogue_from_steps(view: _View) -> list[ServiceRef]:
    step = view.last("list_services")
    if step is None or not step.ok:
        return []
    return [
        ServiceRef(i, s.get("name", ""), s.get("category", ""), ())
        for i, s in enumerate(step.result.get("services", []))
        if isinstance(s, dict)
    ]
