"""The tools the agent may call: argument models and their strict JSON schemas.

Why pydantic models: the same class validates what the model sent (extra keys
rejected, types checked) and produces the JSON schema the model is shown, so
the two can never drift apart.  Clinic, patient and conversation are *not*
arguments anywhere: the executor binds them from the conversation, so the
model cannot name another patient or another clinic.

The docstrings of the argument models are the tool descriptions the model
reads; field descriptions are the parameter hints.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TimeOfDay = Literal["morning", "afternoon", "evening", "any"]
Urgency = Literal["low", "normal", "urgent", "emergency"]
ProposedAction = Literal["book", "reschedule", "cancel", "deposit"]


def _check_local_datetime(value: str) -> str:
    text = value.strip()
    try:
        datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError("must be an ISO local date-time like 2026-12-04T15:00") from exc
    return text


def _check_date(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    try:
        date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError("must be an ISO date like 2026-12-04") from exc
    return text


def _check_hhmm(value: str | None) -> str | None:
    if value is None:
        return None
    parts = value.strip().split(":")
    if (
        len(parts) < 2
        or not all(p.isdigit() for p in parts[:2])
        or not (0 <= int(parts[0]) < 24 and 0 <= int(parts[1]) < 60)
    ):
        raise ValueError("must be HH:MM")
    return f"{int(parts[0]):02d}:{int(parts[1]):02d}"


class ToolArgs(BaseModel):
    """Base: unknown keys are an error the model sees (no silent ignoring)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ListServices(ToolArgs):
    """List the clinic's treatments with price, duration and deposit. Use when the patient asks what you offer."""


class GetServiceDetails(ToolArgs):
    """Price, duration, deposit and preparation instructions of one treatment."""

    service: str = Field(description="Treatment name as the patient said it, e.g. 'lip filler' or 'botox'.")


class SearchKnowledge(ToolArgs):
    """Search the clinic's own knowledge base (FAQs, aftercare, policies). Answer only from what it returns and cite the title."""

    query: str = Field(min_length=1, max_length=300, description="The patient's question in a few words.")


class CheckAvailability(ToolArgs):
    """Find a few concrete open appointment times for a treatment. Dates are in the clinic's local timezone."""

    service: str = Field(description="Treatment name, e.g. 'botox'.")
    date_from: str | None = Field(
        default=None, description="First day to search, YYYY-MM-DD (clinic local); null = today."
    )
    date_to: str | None = Field(
        default=None, description="Last day to search, YYYY-MM-DD (clinic local); null = a week from date_from."
    )
    time_of_day: TimeOfDay | None = Field(default=None, description="Preferred part of the day; null = any.")
    preferred_time: str | None = Field(
        default=None,
        description="Preferred local time HH:MM, e.g. '15:00'; slots nearest to it come first. Null = none.",
    )
    provider: str | None = Field(
        default=None, description="Provider name if the patient asked for someone; null = anyone qualified."
    )

    _dates = field_validator("date_from", "date_to")(_check_date)

    _time = field_validator("preferred_time")(_check_hhmm)


class ProposeAction(ToolArgs):
    """Put the exact details of a booking, reschedule, cancellation or deposit in front of the patient for a yes/no.
    Booking, rescheduling, cancelling and payment links only work after the patient replied yes to a proposal
    in an earlier message. Ask the patient to confirm in your reply."""

    action: ProposedAction = Field(description="What you are proposing.")
    service: str | None = Field(default=None, description="book: the treatment. Otherwise null.")
    start: str | None = Field(
        default=None, description="book: the slot start; reschedule: the new start. ISO local, e.g. 2026-12-04T15:00."
    )
    provider: str | None = Field(
        default=None, description="book: provider name from check_availability; null = first available."
    )
    appointment_id: int | None = Field(
        default=None, description="reschedule/cancel/deposit: the appointment id from get_my_appointments."
    )

    @field_validator("start")
    @classmethod
    def _start(cls, value: str | None) -> str | None:
        return None if value is None else _check_local_datetime(value)


class BookAppointment(ToolArgs):
    """Book the proposed slot. Only after the patient said yes to propose_action(action='book') with these details."""

    service: str = Field(description="Treatment name as proposed.")
    start: str = Field(description="Slot start, ISO local date-time as proposed, e.g. 2026-12-04T15:00.")
    provider: str | None = Field(default=None, description="Provider name as proposed; null = first available.")

    _start = field_validator("start")(_check_local_datetime)


class RescheduleAppointment(ToolArgs):
    """Move one of the patient's appointments. Only after the patient said yes to propose_action(action='reschedule')."""

    appointment_id: int = Field(description="Id from get_my_appointments.")
    new_start: str = Field(description="New start, ISO local date-time, e.g. 2026-12-04T15:00.")

    _start = field_validator("new_start")(_check_local_datetime)


class CancelAppointment(ToolArgs):
    """Cancel one of the patient's appointments; the result explains the cancellation policy that applied.
    Only after the patient said yes to propose_action(action='cancel')."""

    appointment_id: int = Field(description="Id from get_my_appointments.")
    reason: str | None = Field(default=None, description="Patient's reason if given; null otherwise.")


class GetMyAppointments(ToolArgs):
    """The patient's own upcoming appointments (ids, times, status)."""


class CreateDepositLink(ToolArgs):
    """Create (or fetch again) the secure deposit payment link for one of the patient's appointments."""

    appointment_id: int = Field(description="Id of the appointment awaiting a deposit.")


class UpdateProfile(ToolArgs):
    """Save the patient's name and/or email when they tell you."""

    name: str | None = Field(default=None, max_length=200, description="Patient's name; null = unchanged.")
    email: str | None = Field(default=None, max_length=320, description="Patient's email; null = unchanged.")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and ("@" not in value or " " in value or "." not in value.rsplit("@", 1)[-1]):
            raise ValueError("not an email address")
        return value


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class JoinWaitlist(ToolArgs):
    """Put the patient on the waitlist for a treatment when no offered time suits them (offer it first and add
    them when they agree). When a matching time opens they get a text and the first to reply YES books it."""

    service: str = Field(description="Treatment name, e.g. 'botox'.")
    provider: str | None = Field(
        default=None, description="Provider name if the patient wants only them; null = anyone."
    )
    days: list[Weekday] | None = Field(default=None, description="Days of the week that suit; null = any day.")
    time_of_day: TimeOfDay | None = Field(default=None, description="Part of the day that suits; null = any.")
    earliest: str | None = Field(default=None, description="Earliest local start HH:MM; null = none.")
    latest: str | None = Field(default=None, description="Latest local start HH:MM; null = none.")
    date_from: str | None = Field(default=None, description="First suitable day YYYY-MM-DD; null = from today.")
    date_to: str | None = Field(default=None, description="Last suitable day YYYY-MM-DD; null = no end.")

    _dates = field_validator("date_from", "date_to")(_check_date)
    _times = field_validator("earliest", "latest")(_check_hhmm)


class HandoffToStaff(ToolArgs):
    """Hand the conversation to clinic staff: medical questions beyond the knowledge base, complaints,
    requests for a person, or anything you cannot do."""

    reason: str = Field(max_length=300, description="Short reason for staff.")
    urgency: Urgency = Field(description="urgent/emergency for medical concerns, normal otherwise.")


TOOL_MODELS: dict[str, type[ToolArgs]] = {
    "list_services": ListServices,
    "get_service_details": GetServiceDetails,
    "search_knowledge": SearchKnowledge,
    "check_availability": CheckAvailability,
    "propose_action": ProposeAction,
    "book_appointment": BookAppointment,
    "reschedule_appointment": RescheduleAppointment,
    "cancel_appointment": CancelAppointment,
    "get_my_appointments": GetMyAppointments,
    "create_deposit_link": CreateDepositLink,
    "update_profile": UpdateProfile,
    "handoff_to_staff": HandoffToStaff,
    "join_waitlist": JoinWaitlist,
}

# Tools that change nothing stored: after them, what the turn read before the model's first call (the patient's
# upcoming appointments) is still what the database says.  Any other tool may have changed it (worker/tools).
READ_ONLY_TOOLS: frozenset[str] = frozenset(
    {
        "list_services",
        "get_service_details",
        "search_knowledge",
        "check_availability",
        "get_my_appointments",
        "propose_action",
        "handoff_to_staff",  # applied by the turn's commit, after every tool
    }
)

# Tools with side effects the patient must have confirmed first, and the proposal action each needs.
CONFIRMED_TOOLS: dict[str, str] = {
    "book_appointment": "book",
    "reschedule_appointment": "reschedule",
    "cancel_appointment": "cancel",
    "create_deposit_link": "deposit",
}


class ToolArgumentError(ValueError):
    """Arguments the model produced that do not fit the tool: the text goes back to the model."""


def parse_arguments(name: str, arguments: dict[str, Any]) -> ToolArgs:
    """Validate raw arguments for ``name``; raises ToolArgumentError with a model-readable message."""
    model = TOOL_MODELS.get(name)
    if model is None:
        raise ToolArgumentError(f"unknown tool {name!r}; available: {', '.join(sorted(TOOL_MODELS))}")
    if not isinstance(arguments, dict):
        raise ToolArgumentError("arguments must be a JSON object")
    # Strict schemas send every key (null for "not given"); omitted optional keys are accepted too.
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
        )
        raise ToolArgumentError(f"invalid arguments for {name}: {problems}") from None


# ---------------------------------------------------------------------------------------------- schemas
def _strict(schema: Any, defs: dict[str, Any]) -> Any:
    """Rewrite a pydantic JSON schema into OpenAI strict form: refs inlined, every property
    required, nullable as a type union, no defaults/titles, additionalProperties false."""
    if isinstance(schema, list):
        return [_strict(s, defs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target = defs[schema["$ref"].split("/")[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in schema.items() if k != "$ref"}}
        return _strict(merged, defs)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in {"title", "default", "$defs"}:
            continue
        out[key] = _strict(value, defs)
    any_of = out.get("anyOf")
    if isinstance(any_of, list) and len(any_of) == 2 and {"type": "null"} in any_of:
        other = next(s for s in any_of if s != {"type": "null"})
        del out["anyOf"]
        if "enum" in other:
            out.update(other)
            out["type"] = [other.get("type", "string"), "null"]
            out["enum"] = [*other["enum"], None]
        elif isinstance(other.get("type"), str):
            out.update(other)
            out["type"] = [other["type"], "null"]
        else:
            out["anyOf"] = any_of
    if out.get("type") == "object" or "properties" in out:
        props = out.get("properties", {})
        out["type"] = "object"
        out["properties"] = props
        out["required"] = list(props)
        out["additionalProperties"] = False
    return out


def tool_schema(name: str) -> dict[str, Any]:
    """The strict JSON schema for one tool's parameters (a fresh copy; generated once per process)."""
    return copy.deepcopy(_tool_schema(name))


@functools.cache
def _tool_schema(name: str) -> dict[str, Any]:
    # pydantic schema generation costs milliseconds; it ran twice per model call before this cache.
    model = TOOL_MODELS[name]
    raw = model.model_json_schema()
    schema: dict[str, Any] = _strict(raw, raw.get("$defs", {}))
    schema.pop("description", None)  # the docstring is already the tool's description
    return schema


def tool_definitions(allowed: Iterable[str]) -> list[dict[str, Any]]:
    """OpenAI Chat Completions ``tools`` entries for the allowed tool names (unknown names skipped), in catalogue order."""
    return copy.deepcopy(_tool_definitions(frozenset(allowed)))


def shared_tool_definitions(allowed: Iterable[str]) -> tuple[dict[str, Any], ...]:
    """The cached definitions themselves, not a copy: for callers that only read them — the agent loop hands
    them to ``ChatModel.complete``, whose contract is to read its arguments.  (A deep copy per model call was
    ~6% of a zero-latency turn's CPU.)"""
    return _shared_tool_definitions(frozenset(allowed))


@functools.lru_cache(maxsize=64)
def _shared_tool_definitions(wanted: frozenset[str]) -> tuple[dict[str, Any], ...]:
    return tuple(_tool_definitions(wanted))


@functools.lru_cache(maxsize=64)
def _tool_definitions(wanted: frozenset[str]) -> list[dict[str, Any]]:
    definitions: list[dict[str, Any]] = []
    for name, model in TOOL_MODELS.items():
        if name not in wanted:
            continue
        description = " ".join((model.__doc__ or "").split())
        definitions.append(
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": description,
                    "parameters": _tool_schema(name),
                    "strict": True,
                },
            }
        )
    return definitions


ALL_TOOLS: tuple[str, ...] = tuple(TOOL_MODELS)
