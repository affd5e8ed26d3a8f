"""AgentBrain with the real OpenAIChatModel (official openai SDK) against the local fake Chat Completions server,
and the real DbToolExecutor on the seeded Postgres: scripted tool calls exercise the whole loop."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from db.engine import Database
from domain.agent_loop import NOT_CONFIRMED, AgentBrain
from domain.conversation import ClinicProfile, PatientProfile, TurnInput
from tests.fakes.openai_api import FakeOpenAIApi, text_reply, tool_calls_reply
from tests.support.phones import random_phone
from worker.integrations.console import DatabaseOnlyCalendar, LocalTestPayments
from worker.integrations.openai_model import OpenAIChatModel
from worker.tools import DbToolExecutor

KEY = "sk-test-brain"
LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2027, 5, 4, 10, 0, tzinfo=LA).astimezone(UTC)  # Tuesday; clear of seeded and other tests' rows


@pytest.fixture()
def fake() -> Iterator[FakeOpenAIApi]:
    with FakeOpenAIApi(KEY) as server:
        yield server
        server.assert_clean()


def model(fake: FakeOpenAIApi, **kwargs: Any) -> OpenAIChatModel:
    options = {"deadline_s": 5.0, "backoff_initial_s": 0.01, "backoff_max_s": 0.05, **kwargs}
    return OpenAIChatModel(KEY, fake.base_url + "/v1", "gpt-test", **options)


class Session:
    """One patient's conversation on the seeded clinic, with the executor the pipeline would build."""

    def __init__(self, database: Database) -> None:
        self.database = database
        with database.tenant_scope(1) as s:
            self.client_id = s.execute(
                text(
                    "INSERT INTO clients (clinic_id, phone_e164, consent_state) VALUES (1, :p, 'opted_in') RETURNING id"
                ),
                {"p": random_phone()},
            ).scalar_one()
            self.conversation_id = s.execute(
                text("INSERT INTO conversations (clinic_id, client_id, channel) VALUES (1, :c, 'sms') RETURNING id"),
                {"c": self.client_id},
            ).scalar_one()
            row = s.execute(text("SELECT * FROM clinics WHERE id = 1")).mappings().one()
        self.clinic = ClinicProfile(
            row["id"],
            row["name"],
            row["timezone"],
            row["phone"],
            row["address"],
            row["business_hours"],
            row["holidays"],
            row["policies"],
        )

    def turn(self, *messages: str, state: str = "idle", slots: dict[str, Any] | None = None) -> TurnInput:
        return TurnInput(
            clinic=self.clinic,
            patient=PatientProfile(self.client_id, None, None, "opted_in"),
            conversation_id=self.conversation_id,
            channel="sms",
            agent_state=state,
            slots=dict(slots or {}),
            history=(),
            new_messages=messages,
            now=NOW,
        )

    def tools(self) -> DbToolExecutor:
        return DbToolExecutor(
            self.database,
            clinic_id=1,
            client_id=self.client_id,
            conversation_id=self.conversation_id,
            fence_version=0,
            now=NOW,
            payments=LocalTestPayments("http://127.0.0.1:8000"),
            calendar=DatabaseOnlyCalendar(),
            embedder=None,
            public_base_url="http://127.0.0.1:8000",
        )

    def appointments(self) -> list[Any]:
        with self.database.tenant_scope(1) as s:
            return s.execute(
                text("""SELECT s.slug, p.slug AS provider, a.starts_at, a.status FROM appointments a
                        JOIN services s ON s.id = a.service_id JOIN providers p ON p.id = a.provider_id
                        WHERE a.client_id = :c"""),
                {"c": self.client_id},
            ).all()

    def close(self) -> None:
        with self.database.tenant_scope(1) as s:
            s.execute(text("DELETE FROM appointments WHERE client_id = :c"), {"c": self.client_id})


@pytest.fixture()
def session(database: Database) -> Iterator[Session]:
    s = Session(database)
    yield s
    s.close()


def chat_bodies(fake: FakeOpenAIApi) -> list[dict[str, Any]]:
    return [r.json() for r in fake.requests_to("POST", "/v1/chat/completions")]


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(m["content"]) for m in body["messages"] if m["role"] == "tool"]


def test_multi_step_booking_over_two_turns(fake: FakeOpenAIApi, session: Session) -> None:
    fake.reply_with(
        tool_calls_reply(
            (
                "check_availability",
                json.dumps(
                    {
                        "service": "botox",
                        "date_from": "2027-05-05",
                        "date_to": "2027-05-05",
                        "time_of_day": None,
                        "preferred_time": "15:00",
                        "provider": None,
                    }
                ),
            )
        ),
        tool_calls_reply(
            (
                "propose_action",
                json.dumps(
                    {
                        "action": "book",
                        "service": "botox",
                        "start": "2027-05-05T15:00",
                        "provider": None,
                        "appointment_id": None,
                    }
                ),
            )
        ),
        text_reply("I can book Botox with Dr. Maya Chen on Wed May 5 at 3:00 PM. Reply YES to confirm."),
    )
    brain = AgentBrain(model(fake))
    first = brain.run_turn(session.turn("botox tomorrow at 3pm"), session.tools())
    bodies = chat_bodies(fake)
    assert len(bodies) == 3 and first.steps == 3
    assert bodies[0]["messages"][0]["role"] == "system" and "Glow MedSpa" in bodies[0]["messages"][0]["content"]
    assert {t["function"]["name"] for t in bodies[0]["tools"]} >= {"check_availability", "propose_action"}
    assert "book_appointment" not in {t["function"]["name"] for t in bodies[0]["tools"]}
    assert any(s["start"] == "2027-05-05T15:00" for s in tool_messages(bodies[1])[0]["slots"])
    assert first.agent_state == "confirming" and first.slots["pending_action"]["provider"] == "maya-chen"
    assert first.usage.prompt_tokens > 0 and first.model == "gpt-4o-mini-2024-07-18"
    assert session.appointments() == []

    fake.reply_with(
        tool_calls_reply(
            ("book_appointment", json.dumps({"service": "Botox", "start": "2027-05-05T15:00", "provider": None}))
        ),
        tool_calls_reply(("create_deposit_link", json.dumps({"appointment_id": 0}))),  # wrong id: refused
        text_reply("You're booked."),
    )
    second = brain.run_turn(session.turn("yes", state=first.agent_state, slots=first.slots), session.tools())
    booked = tool_messages(chat_bodies(fake)[4])[-1]
    assert booked["ok"] and booked["status"] == "pending_deposit"
    assert tool_messages(chat_bodies(fake)[5])[-1]["error"] == NOT_CONFIRMED
    [row] = session.appointments()
    assert (row.slug, row.provider, row.status) == ("neurotoxin", "maya-chen", "pending_deposit")
    assert row.starts_at == datetime(2027, 5, 5, 15, 0, tzinfo=LA)
    assert second.agent_state == "awaiting_deposit" and second.replies[0].text == "You're booked."


def test_parallel_calls_malformed_json_and_unknown_tool(fake: FakeOpenAIApi, session: Session) -> None:
    fake.reply_with(
        tool_calls_reply(
            ("get_service_details", json.dumps({"service": "lip filler"})),
            ("get_service_details", '{"service": "botox"'),  # malformed
            ("get_patient_phone_numbers", "{}"),  # not a tool of ours
        ),
        text_reply("Lip filler is $750 per syringe."),
    )
    out = AgentBrain(model(fake)).run_turn(session.turn("how much is lip filler?"), session.tools())
    results = tool_messages(chat_bodies(fake)[1])
    assert results[0]["price"] == "$750 per syringe"
    assert "not valid JSON" in results[1]["error"] and "unknown tool" in results[2]["error"]
    assert [a.ok for a in out.tool_audit] == [True, False, False]
    assert out.outcome == "replied" and out.replies[0].text == "Lip filler is $750 per syringe."


def test_rate_limit_then_success_is_retried(fake: FakeOpenAIApi, session: Session) -> None:
    fake.rate_limit_next(2, retry_after_ms=10)
    fake.reply_with(text_reply("Hello! How can I help?"))
    out = AgentBrain(model(fake)).run_turn(session.turn("hi"), session.tools())
    assert len(fake.requests_to("POST", "/v1/chat/completions")) == 3
    assert out.outcome == "replied" and out.replies[0].text == "Hello! How can I help?"


def test_server_errors_until_the_deadline_give_apology_and_handoff(fake: FakeOpenAIApi, session: Session) -> None:
    fake.server_error_forever()
    started = time.monotonic()
    out = AgentBrain(model(fake, deadline_s=1.0, max_attempts=50)).run_turn(session.turn("hi"), session.tools())
    assert time.monotonic() - started < 5
    assert len(fake.requests_to("POST", "/v1/chat/completions")) >= 2
    assert out.outcome == "failed" and out.handoff is not None and out.handoff.reason == "model unavailable"
    assert "Sorry" in out.replies[0].text and out.agent_state == "handoff"


def test_step_cap(fake: FakeOpenAIApi, session: Session) -> None:
    fake.reply_with(*[tool_calls_reply(("list_services", "{}")) for _ in range(4)])
    out = AgentBrain(model(fake), max_steps=3).run_turn(session.turn("menu"), session.tools())
    assert len(fake.requests_to("POST", "/v1/chat/completions")) == 3
    assert len(out.tool_audit) == 3 and out.outcome == "handoff" and out.handoff is not None
    assert "follow up" in out.replies[0].text
