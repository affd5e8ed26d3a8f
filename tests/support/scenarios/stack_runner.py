"""The stack runner: a scenario's texts through the running service (webhook, queue, workers, fake Twilio)."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from db.engine import Database
from tests.support.scenarios.direct import _clinic_profile
from tests.support.scenarios.model import ScenarioRun, TurnRecord
from tests.support.scenarios.setup import apply_setup, clinic_id_for, ensure_client, reset_patient


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
