"""Conversation scenarios as data: the file format, two ways to run them, and the checks.

Format (one JSON file per scenario in ``tests/scenarios/``)::

    {
      "name": "book-botox-tomorrow-3pm",            # unique, also the pytest id
      "description": "why this scenario exists",
      "clinic": "glow-medspa",                      # clinic slug
      "clock": "2027-03-02T10:00:00-08:00",         # frozen time of the first message (aware ISO)
      "patient": {"phone": "+14155557001", "name": null, "consent": "opted_in"},
      "setup": {                                     # optional rows created before the first message
        "appointments": [
          {"key": "mine", "owner": "patient" | "other", "service": "neurotoxin", "provider": "maya-chen",
           "start": "2027-03-04T15:00", "status": "booked"}  # start is clinic-local
        ]
      },
      "turns": [
        {"send": "botox tomorrow at 3pm",            # one message (or "send_all": [..] for a burst)
         "advance_minutes": 0,                       # optional: move the clock before this message
         "setup_before": [ {appointment as in setup} ],  # optional: rows created just before this message
         "expect": {
           "tools": ["check_availability", "propose_action"],   # exact names in order (this turn)
           "tools_include": ["propose_action"],                  # must appear
           "no_tools": ["book_appointment"],                     # must not appear
           "no_tool_calls": true,                                # nothing at all
           "tool_args": {"check_availability": {"date_from": "2027-03-03"}},  # subset of the first call's args
           "tool_ok": {"book_appointment": false},
           "reply_contains": ["3:00 PM"], "reply_not_contains": ["booked"],  # case-insensitive
           "reply_regex": "deposit.*https?://", "max_length": 320
         }}
      ],
      "final": {
        "appointments": [{"service": "neurotoxin", "start": "2027-03-03T15:00", "provider": "maya-chen",
                          "status": "pending_deposit"}],        # the patient's live appointments, exactly
        "setup_status": {"mine": "cancelled"},                   # status of a setup appointment by key
        "consent": "opted_out", "state": "handoff", "handoff_urgency": "emergency",
        "pages": 1,                                              # on-call pages sent (pipeline runs only)
        "never_tools": ["cancel_appointment"]                   # over the whole conversation
      }
    }

Every reply is also checked to be at most 320 characters (SMS budget) unless ``max_length`` says otherwise.

Two runners produce the same ``ScenarioRun`` record, checked by the same code:
- ``run_scenario_direct``: AgentBrain(OfflinePolicy) + DbToolExecutor on real Postgres with a frozen clock,
  with the pipeline's compliance keyword handling done in-line (STOP/HELP/START before the brain);
- ``run_scenario_stack``: the real webhook and worker (``tests.support.stack``), messages as signed Twilio
  webhooks, replies read from the fake Twilio, tool calls from the audit table.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from db.consent import record_consent
from db.engine import Database
from domain.agent_loop import AgentBrain
from domain.compliance import (
    KeywordIntent,
    classify_keyword,
    help_reply,
    keyword_consent,
    opt_in_confirmation,
    opt_out_confirmation,
)
from domain.conversation import AppointmentView, ClinicProfile, PatientProfile, TurnInput
from domain.offline_policy import OfflinePolicy
from domain.ports import Calendar, ChatMessage, Embedder, Payments
from worker.tool_executor import DbToolExecutor

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "scenarios"
DEFAULT_MAX_LENGTH = 320
LIVE = ("pending_deposit", "booked", "confirmed")


@dataclass
class TurnRecord:
    sent: list[str]
    replies: list[str]
    tool_calls: list[dict[str, Any]]  # name, arguments, ok


@dataclass
class ScenarioRun:
    scenario: dict[str, Any]
    phone: str
    clinic_id: int
    turns: list[TurnRecord] = field(default_factory=list)
    setup_ids: dict[str, int] = field(default_factory=dict)
    pages: int | None = None  # on-call pages the pipeline sent for this conversation (None: direct run, no outbox)


def load_scenarios(directory: Path = SCENARIO_DIR) -> list[dict[str, Any]]:
    scenarios = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        data.setdefault("name", path.stem)
        scenarios.append(data)
    names = [s["name"] for s in scenarios]
    assert len(names) == len(set(names)), "scenario names must be unique"
    return scenarios


# ------------------------------------------------------------------------------------------------ setup
def clinic_id_for(database: Database, slug: str) -> int:
    with database.directory_scope() as session:
        return int(session.execute(text("SELECT id FROM clinics WHERE slug = :s"), {"s": slug}).scalar_one())


def _local(value: str, tz: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(tz))


def _other_phone(phone: str) -> str:
    return phone[:-4] + str((int(phone[-4:]) + 5000) % 10_000).zfill(4)


def ensure_client(database: Database, clinic_id: int, phone: str, *, name: str | None, consent: str) -> int:
    with database.tenant_scope(clinic_id) as session:
        session.execute(
            text(
                """INSERT INTO clients (clinic_id, phone_e164, name, consent_state) VALUES (:c, :p, :n, :consent)
                   ON CONFLICT (clinic_id, phone_e164) DO NOTHING"""
            ),
            {"c": clinic_id, "p": phone, "n": name, "consent": consent},
        )
        return int(
            session.execute(
                text("SELECT id FROM clients WHERE clinic_id = :c AND phone_e164 = :p"), {"c": clinic_id, "p": phone}
            ).scalar_one()
        )


def reset_patient(database: Database, clinic_id: int, phone: str) -> None:
    """Remove what an earlier run of this scenario left behind (appointments, conversation, setup rows)."""
    with database.tenant_scope(clinic_id) as session:
        for p in (phone, _other_phone(phone)):
            session.execute(
                text(
                    """DELETE FROM appointments WHERE clinic_id = :c
                       AND client_id IN (SELECT id FROM clients WHERE phone_e164 = :p)"""
                ),
                {"c": clinic_id, "p": p},
            )
            session.execute(
                text(
                    """DELETE FROM conversations WHERE clinic_id = :c
                       AND client_id IN (SELECT id FROM clients WHERE phone_e164 = :p)"""
                ),
                {"c": clinic_id, "p": p},
            )
            session.execute(
                text("UPDATE clients SET consent_state = 'opted_in' WHERE clinic_id = :c AND phone_e164 = :p"),
                {"c": clinic_id, "p": p},
            )


def apply_setup(
    database: Database, run: ScenarioRun, tz: str, appointments: list[dict[str, Any]] | None = None
) -> None:
    scenario = run.scenario
    patient = scenario.get("patient", {})
    if appointments is None:
        appointments = scenario.get("setup", {}).get("appointments", [])
    for appt in appointments:
        owner_phone = run.phone if appt.get("owner", "patient") == "patient" else _other_phone(run.phone)
        client_id = ensure_client(database, run.clinic_id, owner_phone, name=patient.get("name"), consent="opted_in")
        start = _local(appt["start"], tz)
        with database.tenant_scope(run.clinic_id) as session:
            service = session.execute(
                text(
                    "SELECT id, duration_min, buffer_min, deposit_cents FROM services WHERE clinic_id = :c AND slug = :s"
                ),
                {"c": run.clinic_id, "s": appt["service"]},
            ).one()
            provider_id = session.execute(
                text("SELECT id FROM providers WHERE clinic_id = :c AND slug = :s"),
                {"c": run.clinic_id, "s": appt["provider"]},
            ).scalar_one()
            end = start + timedelta(minutes=service.duration_min)
            new_id = session.execute(
                text(
                    """INSERT INTO appointments (clinic_id, client_id, provider_id, service_id, starts_at, ends_at,
                           blocked_until, status, source_key, deposit_cents)
                       VALUES (:c, :client, :p, :s, :start, :end, :blocked, :status, :key, :dep) RETURNING id"""
                ),
                {
                    "c": run.clinic_id,
                    "client": client_id,
                    "p": provider_id,
                    "s": service.id,
                    "start": start,
                    "end": end,
                    "blocked": end + timedelta(minutes=service.buffer_min),
                    "status": appt.get("status", "booked"),
                    "key": f"scenario:{run.phone}:{appt.get('key', start)}",
                    "dep": int(appt.get("deposit_cents", 0)),
                },
            ).scalar_one()
        run.setup_ids[appt.get("key", str(new_id))] = int(new_id)


# ------------------------------------------------------------------------------------------------ direct runner
def _clinic_profile(database: Database, clinic_id: int) -> ClinicProfile:
    with database.directory_scope() as session:
        row = session.execute(
            text(
                """SELECT id, name, timezone, phone, address, business_hours, holidays, policies
                   FROM clinics WHERE id = :c"""
            ),
            {"c": clinic_id},
        ).one()
    return ClinicProfile(
        row.id, row.name, row.timezone, row.phone, row.address, row.business_hours, row.holidays, row.policies
    )


def _patient_profile(database: Database, clinic_id: int, client_id: int, now: datetime) -> PatientProfile:
    with database.tenant_scope(clinic_id) as session:
        client = session.execute(
            text("SELECT name, email, consent_state FROM clients WHERE id = :id"), {"id": client_id}
        ).one()
        rows = session.execute(
            text(
                """SELECT a.id, coalesce(s.name, 'Appointment') AS service, p.name AS provider, a.starts_at,
                          a.ends_at, a.status
                   FROM appointments a JOIN providers p ON p.id = a.provider_id
                   LEFT JOIN services s ON s.id = a.service_id
                   WHERE a.client_id = :id AND a.status = ANY(:live) AND a.starts_at > :now ORDER BY a.starts_at"""
            ),
            {"id": client_id, "live": list(LIVE), "now": now},
        ).all()
    return PatientProfile(
        client_id=client_id,
        name=client.name,
        email=client.email,
        consent_state=client.consent_state,
        upcoming=tuple(AppointmentView(r.id, r.service, r.provider, r.starts_at, r.ends_at, r.status) for r in rows),
    )


def run_scenario_direct(
    scenario: dict[str, Any],
    database: Database,
    *,
    payments: Payments,
    calendar: Calendar | None,
    embedder: Embedder | None,
    public_base_url: str = "http://127.0.0.1:8000",
) -> ScenarioRun:
    """Run a scenario against AgentBrain(OfflinePolicy) + DbToolExecutor on real Postgres with a frozen clock."""
    clinic_id = clinic_id_for(database, scenario["clinic"])
    clinic = _clinic_profile(database, clinic_id)
    patient = scenario.get("patient", {})
    phone = patient["phone"]
    run = ScenarioRun(scenario, phone, clinic_id)
    reset_patient(database, clinic_id, phone)
    client_id = ensure_client(
        database, clinic_id, phone, name=patient.get("name"), consent=patient.get("consent", "opted_in")
    )
    apply_setup(database, run, clinic.timezone)
    with database.tenant_scope(clinic_id) as session:
        conversation_id = int(
            session.execute(
                text(
                    """INSERT INTO conversations (clinic_id, client_id, channel) VALUES (:c, :client, 'sms')
                       RETURNING id"""
                ),
                {"c": clinic_id, "client": client_id},
            ).scalar_one()
        )
    brain = AgentBrain(OfflinePolicy())
    now = datetime.fromisoformat(scenario["clock"])
    state, slots = "idle", {}
    history: list[ChatMessage] = []
    for turn in scenario["turns"]:
        now += timedelta(minutes=turn.get("advance_minutes", 0))
        apply_setup(database, run, clinic.timezone, turn.get("setup_before", []))
        sent = list(turn.get("send_all") or [turn["send"]])
        calls: list[dict[str, Any]] = []
        keyword = classify_keyword(sent[-1]) if len(sent) == 1 else None
        if keyword is not None:
            replies = [_compliance(database, clinic, client_id, phone, keyword)]
            if keyword is KeywordIntent.OPT_OUT:
                state = "opted_out"
            elif keyword is KeywordIntent.OPT_IN and state == "opted_out":
                state = "idle"
            run.turns.append(TurnRecord(sent, replies, calls))
            continue
        turn_input = TurnInput(
            clinic=clinic,
            patient=_patient_profile(database, clinic_id, client_id, now),
            conversation_id=conversation_id,
            channel="sms",
            agent_state=state,
            slots=slots,
            history=tuple(history[-20:]),
            new_messages=tuple(sent),
            now=now,
            trace_id="scenario",
        )
        executor = DbToolExecutor(
            database,
            clinic_id=clinic_id,
            client_id=client_id,
            conversation_id=conversation_id,
            fence_version=0,
            now=now,
            payments=payments,
            calendar=calendar,
            embedder=embedder,
            public_base_url=public_base_url,
        )
        output = brain.run_turn(turn_input, executor)
        state, slots = output.agent_state, output.slots
        history += [ChatMessage(role="user", content=m) for m in sent] + list(output.transcript)
        with database.tenant_scope(clinic_id) as session:
            session.execute(
                text(
                    """UPDATE conversations SET agent_state = :s, slots = CAST(:slots AS jsonb),
                           handoff_reason = coalesce(:reason, handoff_reason), handoff_urgency = coalesce(:u, handoff_urgency)
                       WHERE id = :id"""
                ),
                {
                    "s": state,
                    "slots": json.dumps(slots, default=str),
                    "id": conversation_id,
                    "reason": output.handoff.reason if output.handoff else None,
                    "u": output.handoff.urgency if output.handoff else None,
                },
            )
        calls = [{"name": a.name, "arguments": a.arguments, "ok": a.ok, "result": a.result} for a in output.tool_audit]
        run.turns.append(TurnRecord(sent, [r.text for r in output.replies], calls))
    return run


def _compliance(database: Database, clinic: ClinicProfile, client_id: int, phone: str, keyword: KeywordIntent) -> str:
    """What the pipeline does before the brain for carrier keywords (so direct runs see the same outcome)."""
    if keyword is KeywordIntent.HELP:
        return help_reply(clinic.name, clinic.phone)
    with database.tenant_scope(clinic.id) as session:
        record_consent(session, clinic.id, client_id, phone, keyword_consent(keyword, ""))
    return opt_out_confirmation(clinic.name) if keyword is KeywordIntent.OPT_OUT else opt_in_confirmation(clinic.name)


# ------------------------------------------------------------------------------------------------ checks
def _subset(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    return all(actual.get(k) == v for k, v in expected.items())


def check_turn(index: int, turn: dict[str, Any], record: TurnRecord) -> list[str]:
    problems: list[str] = []
    expect = turn.get("expect", {})
    names = [c["name"] for c in record.tool_calls]
    where = f"turn {index + 1} ({record.sent[-1]!r})"
    if "tools" in expect and names != expect["tools"]:
        problems.append(f"{where}: tools {names} != {expect['tools']}")
    for name in expect.get("tools_include", []):
        if name not in names:
            problems.append(f"{where}: expected a {name} call, got {names}")
    for name in expect.get("no_tools", []):
        if name in names:
            problems.append(f"{where}: {name} must not be called, got {names}")
    if expect.get("no_tool_calls") and names:
        problems.append(f"{where}: expected no tool calls, got {names}")
    for name, args in expect.get("tool_args", {}).items():
        call = next((c for c in record.tool_calls if c["name"] == name), None)
        if call is None or not _subset(args, call["arguments"] or {}):
            problems.append(f"{where}: {name} arguments {call and call['arguments']} lack {args}")
    for name, ok in expect.get("tool_ok", {}).items():
        call = next((c for c in record.tool_calls if c["name"] == name), None)
        if call is None or bool(call["ok"]) != ok:
            problems.append(f"{where}: {name} ok should be {ok}, got {call and call['ok']}")
    if not record.replies:
        problems.append(f"{where}: no reply")
        return problems
    reply = " ".join(record.replies)
    limit = expect.get("max_length", DEFAULT_MAX_LENGTH)
    for r in record.replies:
        if len(r) > limit:
            problems.append(f"{where}: reply longer than {limit}: {len(r)} chars")
    for needle in expect.get("reply_contains", []):
        if needle.lower() not in reply.lower():
            problems.append(f"{where}: reply lacks {needle!r}: {reply!r}")
    for needle in expect.get("reply_not_contains", []):
        if needle.lower() in reply.lower():
            problems.append(f"{where}: reply must not contain {needle!r}: {reply!r}")
    if "reply_regex" in expect:
        import re

        if not re.search(expect["reply_regex"], reply, re.IGNORECASE | re.DOTALL):
            problems.append(f"{where}: reply does not match /{expect['reply_regex']}/: {reply!r}")
    return problems


def check_final(run: ScenarioRun, database: Database) -> list[str]:
    final = run.scenario.get("final", {})
    problems: list[str] = []
    clinic_id = run.clinic_id
    with database.tenant_scope(clinic_id) as session:
        tz = session.execute(text("SELECT timezone FROM clinics WHERE id = :c"), {"c": clinic_id}).scalar_one()
        client = session.execute(
            text("SELECT id, consent_state FROM clients WHERE clinic_id = :c AND phone_e164 = :p"),
            {"c": clinic_id, "p": run.phone},
        ).one()
        appointments = session.execute(
            text(
                """SELECT a.id, s.slug AS service, p.slug AS provider, a.starts_at, a.status
                   FROM appointments a JOIN providers p ON p.id = a.provider_id JOIN services s ON s.id = a.service_id
                   WHERE a.client_id = :id AND a.status = ANY(:live) ORDER BY a.starts_at"""
            ),
            {"id": client.id, "live": list(LIVE)},
        ).all()
        conversation = session.execute(
            text(
                "SELECT agent_state, handoff_urgency FROM conversations WHERE client_id = :id ORDER BY id DESC LIMIT 1"
            ),
            {"id": client.id},
        ).one_or_none()
        setup_status = {
            key: session.execute(text("SELECT status FROM appointments WHERE id = :id"), {"id": appt_id}).scalar_one()
            for key, appt_id in run.setup_ids.items()
        }
    if "appointments" in final:
        actual = [
            {
                "service": a.service,
                "start": a.starts_at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M"),
                "provider": a.provider,
                "status": a.status,
            }
            for a in appointments
        ]
        expected = [{k: v for k, v in e.items()} for e in final["appointments"]]
        trimmed = [{k: a[k] for k in e} for a, e in zip(actual, expected, strict=False)]
        if len(actual) != len(expected) or trimmed != expected:
            problems.append(f"final: live appointments {actual} != {expected}")
    if "pages" in final and run.pages is not None and run.pages != final["pages"]:
        problems.append(f"final: {run.pages} on-call pages sent, expected {final['pages']}")
    for key, status in final.get("setup_status", {}).items():
        if setup_status.get(key) != status:
            problems.append(f"final: setup appointment {key} is {setup_status.get(key)}, expected {status}")
    if "consent" in final and client.consent_state != final["consent"]:
        problems.append(f"final: consent {client.consent_state} != {final['consent']}")
    if "state" in final:
        state = (conversation.agent_state if conversation else "").lower()
        if state != final["state"].lower():
            problems.append(f"final: conversation state {state!r} != {final['state']!r}")
    if "handoff_urgency" in final:
        urgency = conversation.handoff_urgency if conversation else None
        if urgency != final["handoff_urgency"]:
            problems.append(f"final: handoff urgency {urgency!r} != {final['handoff_urgency']!r}")
    every = [c["name"] for t in run.turns for c in t.tool_calls]
    for name in final.get("never_tools", []):
        if name in every:
            problems.append(f"final: {name} was called during the conversation ({every})")
    return problems


def check_run(run: ScenarioRun, database: Database) -> list[str]:
    problems: list[str] = []
    turns: Iterable[dict[str, Any]] = run.scenario["turns"]
    for index, (turn, record) in enumerate(zip(turns, run.turns, strict=True)):
        problems += check_turn(index, turn, record)
    return problems + check_final(run, database)


def transcript(run: ScenarioRun) -> str:
    lines = []
    for record in run.turns:
        lines += [f"  > {m}" for m in record.sent]
        lines += [f"    [{c['name']} {json.dumps(c['arguments'])} ok={c['ok']}]" for c in record.tool_calls]
        lines += [f"  < {r}" for r in record.replies]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ stack runner
def run_scenario_stack(scenario: dict[str, Any], stack: Any) -> ScenarioRun:
    """Run a scenario through the real webhook and worker (``tests.support.stack.Stack``)."""
    database: Database = stack.database
    clinic_id = clinic_id_for(database, scenario["clinic"])
    clinic = _clinic_profile(database, clinic_id)
    patient = scenario.get("patient", {})
    # A different number from the direct run of the same scenario: both runs share one database.
    phone = patient["phone"][:-5] + "8" + patient["phone"][-4:]
    run = ScenarioRun(scenario, phone, clinic_id)
    reset_patient(database, clinic_id, phone)
    ensure_client(database, clinic_id, phone, name=patient.get("name"), consent=patient.get("consent", "opted_in"))
    apply_setup(database, run, clinic.timezone)
    with database.directory_scope() as session:
        clinic_number = session.execute(
            text("SELECT e164 FROM clinic_phone_numbers WHERE clinic_id = :c ORDER BY id LIMIT 1"), {"c": clinic_id}
        ).scalar_one()
    now = datetime.fromisoformat(scenario["clock"])
    seen_calls = len(stack.tool_calls(phone, clinic_id))
    seen_replies = len(stack.replies_to(phone))
    for turn in scenario["turns"]:
        now += timedelta(minutes=turn.get("advance_minutes", 0))
        apply_setup(database, run, clinic.timezone, turn.get("setup_before", []))
        stack.clock.set(now)
        sent = list(turn.get("send_all") or [turn["send"]])
        with stack.burst(clinic_id, phone) if len(sent) > 1 else contextlib.nullcontext():
            for body in sent:
                stack.send_sms(clinic_number, phone, body)
        replies = stack.wait_replies(phone, seen_replies + 1)
        stack.wait_idle(clinic_id)
        replies = stack.replies_to(phone)
        calls = stack.tool_calls(phone, clinic_id)
        run.turns.append(
            TurnRecord(
                sent,
                replies[seen_replies:],
                [
                    {"name": c["name"], "arguments": c["arguments"], "ok": c["ok"], "result": c["result"]}
                    for c in calls[seen_calls:]
                ],
            )
        )
        seen_calls, seen_replies = len(calls), len(replies)
    run.pages = _pages_sent(database, clinic_id, phone)
    return run


def _pages_sent(database: Database, clinic_id: int, phone: str) -> int:
    """On-call notifications sent about this patient's conversation."""
    with database.tenant_scope(clinic_id) as session:
        return int(
            session.execute(
                text(
                    """SELECT count(*) FROM outbox o JOIN conversations c ON c.id = o.conversation_id
                       JOIN clients cl ON cl.id = c.client_id JOIN clinics k ON k.id = o.clinic_id
                       WHERE cl.phone_e164 = :p AND o.kind = 'notification' AND o.to_address = k.oncall_phone
                         AND o.status IN ('sent', 'delivered')"""
                ),
                {"p": phone},
            ).scalar_one()
        )


# ------------------------------------------------------------------------------------------------ tests
import os  # noqa: E402

import pytest  # noqa: E402

from worker.integrations.console import DatabaseOnlyCalendar, LocalTestPayments  # noqa: E402
from worker.integrations.embedders import LocalMiniLMEmbedder  # noqa: E402
from worker.knowledge import reindex_missing_embeddings  # noqa: E402

SCENARIOS = load_scenarios()


@pytest.fixture(scope="module")
def scenario_embedder(database: Database) -> Embedder:
    embedder = LocalMiniLMEmbedder()
    for clinic_id in (1, 2):
        reindex_missing_embeddings(database, clinic_id, embedder)
    return embedder


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 30
    phones = [s["patient"]["phone"] for s in SCENARIOS]
    assert len(phones) == len(set(phones)), "each scenario needs its own patient phone"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario_direct(scenario: dict[str, Any], database: Database, scenario_embedder: Embedder) -> None:
    run = run_scenario_direct(
        scenario,
        database,
        payments=LocalTestPayments("http://127.0.0.1:8000"),
        calendar=DatabaseOnlyCalendar(),
        embedder=scenario_embedder,
    )
    try:
        problems = check_run(run, database)
    finally:
        reset_patient(database, run.clinic_id, run.phone)  # free the slots for the next scenario
    if os.environ.get("SCENARIO_VERBOSE"):
        print(f"\n{scenario['name']}\n{transcript(run)}")
    assert not problems, "\n".join(problems) + "\n" + transcript(run)


@pytest.fixture(scope="module")
def scenario_stack(infra: Any, tmp_path_factory: pytest.TempPathFactory, scenario_embedder: Embedder) -> Any:
    from tests.support.stack import running_stack

    with running_stack(
        infra,
        tmp_path_factory.mktemp("scenario-stack"),
        model_provider="offline",
        local_embeddings=True,
        openai_api_key=None,  # embeddings from the local MiniLM model, the same vectors the knowledge base holds
    ) as (stack, _container):
        yield stack


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario_through_webhook_and_worker(scenario: dict[str, Any], scenario_stack: Any) -> None:
    run = run_scenario_stack(scenario, scenario_stack)
    try:
        problems = check_run(run, scenario_stack.database)
    finally:
        reset_patient(scenario_stack.database, run.clinic_id, run.phone)
    assert not problems, "\n".join(problems) + "\n" + transcript(run)
