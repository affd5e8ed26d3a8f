"""A scripted OpenAI-compatible model for CI: the offline policy behind the Chat Completions wire format.

Why: the OpenAI path (``OpenAIChatModel`` → the official SDK → HTTP → a Chat Completions server) must be
exercised by the same conversation scenarios as the offline policy, without a real model.  The fake server
(``tests/fakes/openai_api.py``) checks every request's wire format; this responder then answers the way a
function-calling model would, by running the offline policy on what a real model would read — the request's
messages and tools, and the facts of the system prompt (today's date and time zone, the clinic's hours and
holidays, the patient's name, the conversation state and its known details as JSON).  Every tool call it
returns is checked against the JSON schema the request offered for that tool (strict schemas: a wrong or
missing key is a recorded violation).  Optional error injection answers every Nth request with a 429 or a 500
so the adapter's retries run inside the suite.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema

from domain.offline_policy import OfflinePolicy
from domain.ports import TurnContext
from tests.fakes.openai_api import FakeOpenAIApi, openai_error
from worker.integrations.openai_model import from_openai_message

_TODAY = re.compile(
    r"Today is \w+, (?P<month>\w+) (?P<day>\d+), (?P<year>\d{4}); local time (?P<hm>\d\d:\d\d) \((?P<tz>[^)]+)\)"
)
_HOURS = re.compile(r"^Business hours: (?P<hours>.*)\.$", re.MULTILINE)
_HOLIDAYS = re.compile(r"^Closed on \(holidays\): (?P<days>.*)\.$", re.MULTILINE)
_PATIENT = re.compile(r"^Patient: name (?P<name>.*?), email ", re.MULTILINE)
_STATE = re.compile(r"^Conversation state: (?P<state>\w+)\. Known details \(JSON\): (?P<slots>.*)\.$", re.MULTILINE)


def context_from_prompt(system: str) -> TurnContext:
    """The TurnContext a model can read from our system prompt (``domain/prompt.py``)."""
    today = _TODAY.search(system)
    if today is None:
        raise ValueError("system prompt without today's date")
    tz = today["tz"]
    now = datetime.strptime(f"{today['year']} {today['month']} {today['day']} {today['hm']}", "%Y %B %d %H:%M").replace(
        tzinfo=ZoneInfo(tz)
    )
    hours: dict[str, Any] = {}
    if (found := _HOURS.search(system)) is not None:
        for part in found["hours"].split("; "):
            day, _, value = part.partition(" ")
            hours[day.lower()] = [] if value == "closed" else [v.strip() for v in value.split(",")]
    holidays: tuple[str, ...] = ()
    if (found := _HOLIDAYS.search(system)) is not None and found["days"] != "none listed":
        holidays = tuple(d.strip() for d in found["days"].split(","))
    name = None
    if (found := _PATIENT.search(system)) is not None and found["name"] != "unknown":
        name = found["name"]
    state: str = "idle"
    slots: dict[str, Any] = {}
    if (found := _STATE.search(system)) is not None:
        state = found["state"]
        slots = {} if found["slots"] == "none" else json.loads(found["slots"])
    return TurnContext(
        clinic_timezone=tz,
        now=now,
        agent_state=state,
        slots=slots,
        patient_name=name,
        business_hours=hours,
        holidays=holidays,
    )


def policy_responder(policy: OfflinePolicy, violations: list[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A FakeOpenAIApi responder that answers with the offline policy (see module docstring)."""

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        wire = body["messages"]
        system = next((m.get("content") or "" for m in wire if m["role"] == "system"), "")
        messages = [from_openai_message(m) for m in wire]
        tools = body.get("tools") or []
        reply = policy.complete(messages, tools, context_from_prompt(system))
        schemas = {t["function"]["name"]: t["function"].get("parameters") or {} for t in tools}
        calls = []
        for call in reply.tool_calls:
            if call.name not in schemas:
                violations.append(f"model called {call.name!r}, which the request did not offer")
            else:
                try:
                    jsonschema.validate(json.loads(call.arguments), schemas[call.name])
                except (jsonschema.ValidationError, json.JSONDecodeError) as exc:
                    violations.append(f"{call.name} arguments do not fit the offered schema: {exc}"[:300])
            calls.append(
                {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            )
        if calls:
            return {"role": "assistant", "content": reply.content, "tool_calls": calls}
        return {"role": "assistant", "content": reply.content or ""}

    return respond


class ErrorInjection:
    """Every ``rate_limit_every``-th chat request gets a 429 (with retry-after-ms), every ``server_error_every``-th
    a 500: the adapter retries both, so outcomes must not change."""

    def __init__(self, rate_limit_every: int = 7, server_error_every: int = 11) -> None:
        self._count = itertools.count(1)
        self.rate_limit_every = rate_limit_every
        self.server_error_every = server_error_every
        self._current: str | None = None
        self.injected: list[str] = []

    def install(self, fake: FakeOpenAIApi) -> None:
        # The fake evaluates scripted replies in order, under its lock, once per request: the first predicate
        # decides for the request, the second one reads that decision.
        fake.script(
            openai_error(429, "Rate limit reached for requests", "requests", {"retry-after-ms": "5"}),
            times=None,
            when=lambda request: self._decide(request.path) == "429",
        )
        fake.script(
            openai_error(500, "The server had an error", "server_error"),
            times=None,
            when=lambda request: self._current == "500",
        )

    def _decide(self, path: str) -> str | None:
        self._current = None
        if path == "/v1/chat/completions":
            n = next(self._count)
            if n % self.rate_limit_every == 0:
                self._current = "429"
            elif n % self.server_error_every == 0:
                self._current = "500"
            if self._current:
                self.injected.append(self._current)
        return self._current


def install_policy_model(
    fake: FakeOpenAIApi, *, policy: OfflinePolicy | None = None, inject_errors: bool = False
) -> tuple[list[str], ErrorInjection | None]:
    """Make ``fake`` answer chat completions with the offline policy (with the local NLU when installed).
    Returns the list schema violations are recorded in, and the error injector (if any)."""
    if policy is None:
        from worker.integrations.embedders import LocalMiniLMEmbedder
        from worker.understanding import build_intent_classifier

        embedder = LocalMiniLMEmbedder() if LocalMiniLMEmbedder.available() else None
        policy = OfflinePolicy(nlu=build_intent_classifier(embedder, warm=True, announce=False))
    violations: list[str] = []
    fake.responder = policy_responder(policy, violations)
    injector = None
    if inject_errors:
        injector = ErrorInjection()
        injector.install(fake)
    return violations, injector
