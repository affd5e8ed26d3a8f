from __future__ import annotations

import pytest

from domain.agent_state import ALL_TOOLS as STATE_TOOLS
from domain.tools import ALL_TOOLS, CONFIRMED_TOOLS, ToolArgumentError, parse_arguments, tool_definitions, tool_schema


def _walk(schema: object):
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from _walk(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _walk(value)


def test_catalogue_matches_the_state_machine() -> None:
    assert set(ALL_TOOLS) == set(STATE_TOOLS)
    assert set(CONFIRMED_TOOLS) == {
        "book_appointment",
        "reschedule_appointment",
        "cancel_appointment",
        "create_deposit_link",
    }


@pytest.mark.parametrize("name", ALL_TOOLS)
def test_schemas_are_openai_strict(name: str) -> None:
    schema = tool_schema(name)
    assert schema["type"] == "object"
    for node in _walk(schema):
        assert "$ref" not in node and "default" not in node and "title" not in node
        if node.get("type") == "object":
            assert node["additionalProperties"] is False
            assert sorted(node["required"]) == sorted(node["properties"])


def test_no_tool_lets_the_model_choose_whose_data() -> None:
    forbidden = {"clinic_id", "client_id", "patient_id", "phone", "conversation_id", "clinic", "client"}
    for name in ALL_TOOLS:
        assert not forbidden & set(tool_schema(name)["properties"]), name


def test_optional_fields_are_nullable_and_enums_keep_their_values() -> None:
    props = tool_schema("check_availability")["properties"]
    assert props["date_from"]["type"] == ["string", "null"]
    assert props["time_of_day"]["enum"] == ["morning", "afternoon", "evening", "any", None]
    assert tool_schema("propose_action")["properties"]["action"]["enum"] == ["book", "reschedule", "cancel", "deposit"]


def test_definitions_follow_the_allow_list_and_carry_the_docstring() -> None:
    defs = tool_definitions(["search_knowledge", "book_appointment", "not_a_tool"])
    assert [d["function"]["name"] for d in defs] == ["search_knowledge", "book_appointment"]
    assert all(d["type"] == "function" and d["function"]["strict"] is True for d in defs)
    assert "cite" in defs[0]["function"]["description"]
    assert "said yes" in defs[1]["function"]["description"]
    assert tool_definitions([]) == []


def test_parse_accepts_strict_nulls_and_omitted_optionals() -> None:
    a = parse_arguments("check_availability", {"service": "botox"})
    b = parse_arguments(
        "check_availability",
        {
            "service": "botox",
            "date_from": None,
            "date_to": None,
            "time_of_day": None,
            "preferred_time": None,
            "provider": None,
        },
    )
    assert a == b
    assert parse_arguments("check_availability", {"service": "x", "preferred_time": "9:5"}).preferred_time == "09:05"


@pytest.mark.parametrize(
    ("name", "args", "fragment"),
    [
        ("check_availability", {"service": "botox", "clinic_id": 2}, "clinic_id"),
        ("check_availability", {"service": "botox", "date_from": "next friday"}, "ISO date"),
        ("check_availability", {"service": "botox", "preferred_time": "25:00"}, "HH:MM"),
        ("book_appointment", {"service": "botox", "start": "tomorrow 3pm"}, "ISO local date-time"),
        ("book_appointment", {"start": "2027-03-03T15:00"}, "service"),
        ("cancel_appointment", {"appointment_id": "abc"}, "appointment_id"),
        ("update_profile", {"email": "not an email"}, "email"),
        ("handoff_to_staff", {"reason": "x", "urgency": "whenever"}, "urgency"),
        ("drop_tables", {}, "unknown tool"),
    ],
)
def test_parse_rejects_with_a_message_the_model_can_use(name: str, args: dict, fragment: str) -> None:
    with pytest.raises(ToolArgumentError) as err:
        parse_arguments(name, args)
    assert fragment in str(err.value)
