"""Conversation scenarios as data: the file format, two ways to run them, the checks and the scorecard.

One home for the scenario harness: ``tests/e2e/test_scenarios.py`` runs it under pytest and ``medspa eval``
(``scripts/eval.py``) runs it through a throwaway copy of the whole service against any model.

Format (one JSON or YAML file per scenario in ``tests/scenarios/``)::

    name: book-botox-tomorrow-3pm                 # unique, also the pytest id (default: the file name)
    description: why this scenario exists
    category: booking                             # one of CATEGORIES (the scorecard's rows)
    failure_class: confirmation                   # optional: one of FAILURE_CLASSES (issue 14's classes)
    held_out: true                                # optional: its messages are not NLU examples (scored apart)
    known_failure: why the offline policy fails it  # optional: an expected failure in the test suite (xfail,
                                                  #   strict); medspa eval still counts it as failed
    clinic: glow-medspa                           # clinic slug
    clock: "2027-03-02T10:00:00-08:00"            # frozen time of the first message (aware ISO)
    patient: {phone: "+14155557001", name: null, consent: opted_in}
    setup:                                        # optional rows created before the first message
      appointments:
        - {key: mine, owner: patient | other, service: neurotoxin, provider: maya-chen,
           start: "2027-03-04T15:00", status: booked}          # start is clinic-local
    turns:
      - send: botox tomorrow at 3pm               # one message (or send_all: [..] for a burst)
        advance_minutes: 0                        # optional: move the clock before this message
        setup_before: [ {appointment as in setup} ]  # optional: rows created just before this message
        expect:                                   # outcome checks: any competent model must meet them
          no_tools: [book_appointment]            #   must not be called this turn
          reply_contains: ["3"], reply_not_contains: ["booked"]    # case-insensitive
          reply_regex: "3(:00)? ?pm", reply_not_regex: "...", max_length: 320
          offline:                                # checks only the offline policy must meet (its wording,
            tools: [check_availability, propose_action]   # its exact tool sequence)
            tools_include: [propose_action]
            no_tool_calls: true
            tool_args: {check_availability: {date_from: "2027-03-03"}}   # subset of the first call's args
            tool_ok: {book_appointment: false}
            reply_contains: ["Reply YES"]
    final:
      appointments: [{service: neurotoxin, start: "2027-03-03T15:00", provider: maya-chen,
                      status: pending_deposit}]   # the patient's live appointments, exactly
      setup_status: {mine: cancelled}             # status of a setup appointment by key
      consent: opted_out
      state: handoff
      handoff_urgency: emergency
      handoff: true                               # the conversation was handed to staff (any urgency)
      pages: 1                                    # on-call pages sent (pipeline runs only)
      never_tools: [cancel_appointment]           # over the whole conversation
      profile_name: Jess Morales                  # the name on file at the end
      offline: {state: awaiting_deposit}          # offline-only final checks

Per-turn tool sequences are offline-only: ``tools``, ``tools_include``, ``tool_args``, ``tool_ok`` and
``no_tool_calls`` written directly under ``expect`` count as ``expect.offline`` (older scenario files).
Every reply is also checked to be at most 320 characters (SMS budget) unless ``max_length`` says otherwise.

Two runners produce the same ``ScenarioRun`` record, checked by the same code:
- ``run_scenario_direct``: AgentBrain(model) + DbToolExecutor on real Postgres with a frozen clock, with the
  pipeline's compliance keyword handling done in-line (STOP/HELP/START before the brain);
- ``run_scenario_stack``: the real webhook and worker (``tests.support.stack``), messages as signed Twilio
  webhooks, replies read from the fake Twilio, tool calls, tokens and latency from the audit tables.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import text

from db.consent import record_consent
from db.engine import Database
from domain.agent_loop import AgentBrain
from domain.appointments import LIVE_STATUSES
from domain.compliance import (
    KeywordIntent,
    classify_keyword,
    help_reply,
    keyword_consent,
    opt_in_confirmation,
    opt_out_confirmation,
)
from domain.conversation import AppointmentView, ClinicProfile, PatientProfile, TurnInput
from domain.ports import Calendar, ChatMessage, ChatModel, Embedder, Payments
from worker.tools import DbToolExecutor

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "scenarios"
DEFAULT_MAX_LENGTH = 320
LIVE = LIVE_STATUSES

CATEGORIES = ("booking", "reschedule_cancel", "faq", "screening", "compliance", "safety", "injection", "robustness")
# The classes of failure issue 14 names, in its order.
FAILURE_CLASSES = (
    "screening",  # 1. clinical screening before offering a treatment
    "confirmation",  # 2. confirmations with extra words
    "question_not_booking",  # 3. a question is not a booking request
    "relative_time",  # 4. relative and partial times that depend on context
    "direct_answer",  # 5. direct answers
    "names",  # 6. names and profile
    "safety_language",  # 7. safety in the patient's language
    "multi_topic",  # 8. multi-topic messages
)
# Categories the offline policy must pass in full (issue 14's bar).
MUST_PASS = ("safety", "screening", "compliance", "injection")
# Per-turn expectation keys that describe how the offline policy gets there, not the outcome.
OFFLINE_ONLY_KEYS = ("tools", "tools_include", "tool_args", "tool_ok", "no_tool_calls")


@dataclass
class TurnRecord:
    sent: list[str]
    replies: list[str]
    tool_calls: list[dict[str, Any]]  # name, arguments, ok, result
    latency_ms: int = 0  # from the first message sent to the reply (stack) / the brain's run (direct)
    model_latency_ms: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ScenarioRun:
    scenario: dict[str, Any]
    phone: str
    clinic_id: int
    turns: list[TurnRecord] = field(default_factory=list)
    setup_ids: dict[str, int] = field(default_factory=dict)
    pages: int | None = None  # on-call pages the pipeline sent for this conversation (None: direct run, no outbox)


# ------------------------------------------------------------------------------------------------ loading
def load_scenarios(directory: Path = SCENARIO_DIR) -> list[dict[str, Any]]:
    """Every scenario file in ``directory`` (JSON or YAML), sorted by file name, validated."""
    scenarios = []
    paths = sorted(p for p in directory.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
    for path in paths:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a scenario is a mapping")
        data.setdefault("name", path.stem.replace("_", "-"))
        data["_file"] = path.name
        problems = validate_scenario(data)
        if problems:
            raise ValueError(f"{path}: " + "; ".join(problems))
        scenarios.append(data)
    names = [s["name"] for s in scenarios]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"scenario names must be unique: {duplicates}")
    return scenarios


def validate_scenario(scenario: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for key in ("clinic", "clock", "patient", "turns"):
        if key not in scenario:
            problems.append(f"missing {key}")
    if scenario.get("category") not in CATEGORIES:
        problems.append(f"category must be one of {CATEGORIES}, got {scenario.get('category')!r}")
    if not isinstance(scenario.get("known_failure", ""), str):
        problems.append("known_failure is the reason the offline policy fails it today (text)")
    if scenario.get("failure_class") not in (None, *FAILURE_CLASSES):
        problems.append(f"failure_class must be one of {FAILURE_CLASSES}")
    for index, turn in enumerate(scenario.get("turns") or []):
        sent = turn.get("send_all") or [turn.get("send")]
        if not all(isinstance(m, str) and m for m in sent):
            # YAML reads a bare yes/no/on/off as a boolean: quote messages like "yes".
            problems.append(f"turn {index + 1} must send text (quote YAML words like yes/no): {sent!r}")
    return problems


def as_pytest_params(scenarios: list[dict[str, Any]]) -> list[Any]:
    """Scenarios as pytest parameters; a ``known_failure`` is a strict expected failure (it must fail, so fixing it
    means removing the marker), never a hidden one: ``medspa eval`` counts it as failed."""
    import pytest

    return [
        pytest.param(
            s,
            id=s["name"],
            marks=[pytest.mark.xfail(strict=True, reason=s["known_failure"])] if s.get("known_failure") else [],
        )
        for s in scenarios
    ]


def patient_messages(scenario: dict[str, Any]) -> list[str]:
    """Everything the patient sends in a scenario (what held-out scenarios keep out of the NLU examples)."""
    out: list[str] = []
    for turn in scenario["turns"]:
        out += list(turn.get("send_all") or [turn["send"]])
    return out


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
                   ON CONFLICT (clinic_id, phone_e164) DO UPDATE SET name = EXCLUDED.name"""
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
                text(
                    """DELETE FROM waitlist_entries WHERE clinic_id = :c
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
        mine = appt.get("owner", "patient") == "patient"
        owner_phone = run.phone if mine else _other_phone(run.phone)
        client_id = ensure_client(
            database,
            run.clinic_id,
            owner_phone,
            name=patient.get("name") if mine else appt.get("owner_name", "Other Patient"),
            consent="opted_in",
        )
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
    model: ChatModel,
    payments: Payments,
    calendar: Calendar | None,
    embedder: Embedder | None,
    public_base_url: str = "http://127.0.0.1:8000",
) -> ScenarioRun:
    """Run a scenario against AgentBrain(model) + DbToolExecutor on real Postgres with a frozen clock."""
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
    brain = AgentBrain(model)
    now = datetime.fromisoformat(scenario["clock"])
    state: str = "idle"
    slots: dict[str, Any] = {}
    history: list[ChatMessage] = []
    seq = 0
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
        # The inbound messages are recorded before the brain runs, as the pipeline's attach step does (the tool
        # executor's screening reads the conversation's own messages).
        with database.tenant_scope(clinic_id) as session:
            for body in sent:
                seq += 1
                session.execute(
                    text(
                        """INSERT INTO messages (clinic_id, conversation_id, direction, role, body, inbound_seq,
                                                 channel)
                           VALUES (:c, :conv, 'inbound', 'user', :body, :seq, 'sms')"""
                    ),
                    {"c": clinic_id, "conv": conversation_id, "body": body, "seq": seq},
                )
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
        started = time.perf_counter()
        output = brain.run_turn(turn_input, executor)
        elapsed_ms = int((time.perf_counter() - started) * 1000)
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
        run.turns.append(
            TurnRecord(
                sent,
                [r.text for r in output.replies],
                calls,
                latency_ms=elapsed_ms,
                model_latency_ms=output.model_latency_ms,
                prompt_tokens=output.usage.prompt_tokens,
                completion_tokens=output.usage.completion_tokens,
            )
        )
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


def turn_expectations(turn: dict[str, Any], *, offline: bool) -> dict[str, Any]:
    """The checks that apply to this turn: the outcome checks, plus the offline-only ones for the offline policy."""
    expect = dict(turn.get("expect") or {})
    offline_checks = dict(expect.pop("offline", None) or {})
    for key in OFFLINE_ONLY_KEYS:
        if key in expect:
            offline_checks.setdefault(key, expect.pop(key))
    if not offline:
        return expect
    merged = dict(expect)
    for key, value in offline_checks.items():
        if key in ("reply_contains", "reply_not_contains", "no_tools") and key in merged:
            merged[key] = [*merged[key], *value]
        elif key == "reply_regex" and key in merged:
            merged["reply_regex_offline"] = value
        else:
            merged[key] = value
    return merged


def check_turn(index: int, turn: dict[str, Any], record: TurnRecord, *, offline: bool = True) -> list[str]:
    problems: list[str] = []
    expect = turn_expectations(turn, offline=offline)
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
    for key in ("reply_regex", "reply_regex_offline"):
        if key in expect and not re.search(expect[key], reply, re.IGNORECASE | re.DOTALL):
            problems.append(f"{where}: reply does not match /{expect[key]}/: {reply!r}")
    if "reply_not_regex" in expect and re.search(expect["reply_not_regex"], reply, re.IGNORECASE | re.DOTALL):
        problems.append(f"{where}: reply must not match /{expect['reply_not_regex']}/: {reply!r}")
    return problems


def check_final(run: ScenarioRun, database: Database, *, offline: bool = True) -> list[str]:
    final = dict(run.scenario.get("final") or {})
    offline_final = final.pop("offline", None) or {}
    if offline:
        final.update(offline_final)
    problems: list[str] = []
    clinic_id = run.clinic_id
    with database.tenant_scope(clinic_id) as session:
        tz = session.execute(text("SELECT timezone FROM clinics WHERE id = :c"), {"c": clinic_id}).scalar_one()
        client = session.execute(
            text("SELECT id, name, consent_state FROM clients WHERE clinic_id = :c AND phone_e164 = :p"),
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
                """SELECT agent_state, handoff_urgency, handoff_reason FROM conversations WHERE client_id = :id
                   ORDER BY id DESC LIMIT 1"""
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
        expected = [dict(e) for e in final["appointments"]]
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
    if "handoff" in final:
        handed = bool(conversation and (conversation.handoff_reason or conversation.handoff_urgency))
        if handed != bool(final["handoff"]):
            problems.append(f"final: handed to staff is {handed}, expected {final['handoff']}")
    if "profile_name" in final and (client.name or None) != final["profile_name"]:
        problems.append(f"final: name on file {client.name!r} != {final['profile_name']!r}")
    every = [c["name"] for t in run.turns for c in t.tool_calls]
    for name in final.get("never_tools", []):
        if name in every:
            problems.append(f"final: {name} was called during the conversation ({every})")
    return problems


def check_run(run: ScenarioRun, database: Database, *, offline: bool = True) -> list[str]:
    problems: list[str] = []
    turns: Iterable[dict[str, Any]] = run.scenario["turns"]
    for index, (turn, record) in enumerate(zip(turns, run.turns, strict=True)):
        problems += check_turn(index, turn, record, offline=offline)
    return problems + check_final(run, database, offline=offline)


def transcript(run: ScenarioRun) -> str:
    lines = []
    for record in run.turns:
        lines += [f"  > {m}" for m in record.sent]
        lines += [f"    [{c['name']} {json.dumps(c['arguments'])} ok={c['ok']}]" for c in record.tool_calls]
        lines += [f"  < {r}" for r in record.replies]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ stack runner
def run_scenario_stack(scenario: dict[str, Any], stack: Any, *, reply_timeout: float = 30) -> ScenarioRun:
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
    seen_turn = _last_turn_id(database, clinic_id, phone)
    for turn in scenario["turns"]:
        now += timedelta(minutes=turn.get("advance_minutes", 0))
        apply_setup(database, run, clinic.timezone, turn.get("setup_before", []))
        stack.clock.set(now)
        sent = list(turn.get("send_all") or [turn["send"]])
        started = time.perf_counter()
        with stack.burst(clinic_id, phone) if len(sent) > 1 else contextlib.nullcontext():
            for body in sent:
                stack.send_sms(clinic_number, phone, body)
        stack.wait_replies(phone, seen_replies + 1, timeout=reply_timeout)
        latency_ms = int((time.perf_counter() - started) * 1000)
        stack.wait_idle(clinic_id, timeout=max(60, reply_timeout))
        replies = stack.replies_to(phone)
        calls = stack.tool_calls(phone, clinic_id)
        usage = _turn_usage(database, clinic_id, phone, seen_turn)
        run.turns.append(
            TurnRecord(
                sent,
                replies[seen_replies:],
                [
                    {"name": c["name"], "arguments": c["arguments"], "ok": c["ok"], "result": c["result"]}
                    for c in calls[seen_calls:]
                ],
                latency_ms=latency_ms,
                model_latency_ms=usage["model_latency_ms"],
                prompt_tokens=usage["prompt_tokens"],
                completion_tokens=usage["completion_tokens"],
            )
        )
        seen_calls, seen_replies, seen_turn = len(calls), len(replies), usage["last_turn_id"]
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


def _last_turn_id(database: Database, clinic_id: int, phone: str) -> int:
    return _turn_usage(database, clinic_id, phone, 0)["last_turn_id"]


def _turn_usage(database: Database, clinic_id: int, phone: str, after_turn_id: int) -> dict[str, int]:
    """Tokens and model time of the turns committed for ``phone`` after ``after_turn_id``."""
    with database.tenant_scope(clinic_id) as session:
        row = session.execute(
            text(
                """SELECT coalesce(sum(t.prompt_tokens), 0) AS prompt_tokens,
                          coalesce(sum(t.completion_tokens), 0) AS completion_tokens,
                          coalesce(sum(t.model_latency_ms), 0) AS model_latency_ms,
                          coalesce(max(t.id), :after) AS last_turn_id
                   FROM turns t JOIN conversations c ON c.id = t.conversation_id
                   JOIN clients cl ON cl.id = c.client_id
                   WHERE cl.phone_e164 = :phone AND t.id > :after"""
            ),
            {"phone": phone, "after": after_turn_id},
        ).one()
    return {k: int(v) for k, v in row._mapping.items()}


# ------------------------------------------------------------------------------------------------ scorecard
@dataclass
class ScenarioResult:
    scenario: dict[str, Any]
    problems: list[str]
    run: ScenarioRun | None
    error: str | None = None

    @property
    def passed(self) -> bool:
        return not self.problems and self.error is None


def _rate(results: list[ScenarioResult]) -> dict[str, Any]:
    passed = sum(r.passed for r in results)
    return {
        "passed": passed,
        "total": len(results),
        "pass_rate": round(passed / len(results), 4) if results else None,
    }


def _percentile(values: list[int], fraction: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def scorecard(results: list[ScenarioResult], *, model: str, runner: str) -> dict[str, Any]:
    """The stable JSON scorecard: pass rates by category, failure class and split, cost and latency per turn,
    and every failure with its transcript.  Keys and orders are fixed; only measured values vary."""
    turns = [t for r in results if r.run for t in r.run.turns if t.tool_calls or t.replies]
    model_turns = [t for t in turns if t.prompt_tokens or t.model_latency_ms or t.tool_calls]
    card: dict[str, Any] = {
        "model": model,
        "runner": runner,
        "scenarios": len(results),
        "overall": _rate(results),
        "by_category": {c: _rate([r for r in results if r.scenario.get("category") == c]) for c in CATEGORIES},
        "by_failure_class": {
            c: _rate([r for r in results if r.scenario.get("failure_class") == c]) for c in FAILURE_CLASSES
        },
        "held_out": _rate([r for r in results if r.scenario.get("held_out")]),
        "seen": _rate([r for r in results if not r.scenario.get("held_out")]),
        "must_pass": {c: _rate([r for r in results if r.scenario.get("category") == c]) for c in MUST_PASS},
        "per_turn": {
            "turns": len(turns),
            "prompt_tokens_mean": round(sum(t.prompt_tokens for t in turns) / len(turns), 1) if turns else 0,
            "completion_tokens_mean": round(sum(t.completion_tokens for t in turns) / len(turns), 1) if turns else 0,
            "tokens_total": sum(t.prompt_tokens + t.completion_tokens for t in turns),
            "latency_ms_p50": _percentile([t.latency_ms for t in turns], 0.5),
            "latency_ms_p95": _percentile([t.latency_ms for t in turns], 0.95),
            "model_latency_ms_p50": _percentile([t.model_latency_ms for t in model_turns], 0.5),
            "model_latency_ms_p95": _percentile([t.model_latency_ms for t in model_turns], 0.95),
        },
        "failures": [
            {
                "name": r.scenario["name"],
                "category": r.scenario.get("category"),
                "failure_class": r.scenario.get("failure_class"),
                "held_out": bool(r.scenario.get("held_out")),
                "problems": r.problems + ([r.error] if r.error else []),
                "transcript": transcript(r.run) if r.run else "",
            }
            for r in results
            if not r.passed
        ],
    }
    return card


def format_scorecard(card: dict[str, Any]) -> str:
    """The scorecard as the table ``medspa eval`` prints."""

    def row(label: str, rate: dict[str, Any]) -> str:
        if not rate["total"]:
            return f"  {label:<24} {'-':>9}"
        return f"  {label:<24} {rate['passed']:>3}/{rate['total']:<3}  {100 * rate['pass_rate']:5.1f}%"

    lines = [f"Scorecard: model {card['model']}, {card['scenarios']} scenarios through the {card['runner']}"]
    lines.append(row("overall", card["overall"]))
    lines.append(row("held out (not in NLU data)", card["held_out"]))
    lines.append(row("seen", card["seen"]))
    lines.append("By category:")
    lines += [row(c, rate) for c, rate in card["by_category"].items()]
    lines.append("By failure class (issue 14):")
    lines += [row(c, rate) for c, rate in card["by_failure_class"].items()]
    per = card["per_turn"]
    lines.append(
        f"Per turn ({per['turns']} turns): tokens prompt {per['prompt_tokens_mean']} / completion "
        f"{per['completion_tokens_mean']} mean ({per['tokens_total']} total); latency p50 {per['latency_ms_p50']} ms, "
        f"p95 {per['latency_ms_p95']} ms; model time p50 {per['model_latency_ms_p50']} ms, "
        f"p95 {per['model_latency_ms_p95']} ms"
    )
    for failure in card["failures"]:
        lines.append(f"FAIL {failure['name']} ({failure['category']}):")
        lines += [f"    {p}" for p in failure["problems"]]
        if failure["transcript"]:
            lines.append(failure["transcript"])
    return "\n".join(lines)
