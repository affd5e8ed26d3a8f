"""The direct runner: a scenario's turns through the brain and tools in process (no queue, no webhook)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

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
from domain.ports import Calendar, ChatMessage, ChatModel, Embedder, Payments
from tests.support.scenarios.model import LIVE, ScenarioRun, TurnRecord
from tests.support.scenarios.setup import apply_setup, clinic_id_for, ensure_client, reset_patient
from worker.tools import DbToolExecutor


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
