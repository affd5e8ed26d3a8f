"""A run's checks: each turn's expectations and the final state, and the transcript shown on a failure."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from db.engine import Database
from tests.support.scenarios.model import DEFAULT_MAX_LENGTH, LIVE, OFFLINE_ONLY_KEYS, ScenarioRun, TurnRecord


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
