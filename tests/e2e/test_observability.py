"""Metrics after a conversation, and no PHI in any service log line."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
from sqlalchemy import text

from db.engine import make_engine
from tests.fakes.openai_api import tool_calls_reply
from tests.support.infra import wait_for
from tests.support.stack import GLOW_NUMBER, echo_responder, running_process_stack

CANARY_NAME = "Zebulon Quartermaine"
CANARY_PHONE = "+14155550777"
CANARY_BODY = "pineapple horizon canary 4242"


def _series(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)$", line)
        if match:
            name = match.group(1)
            values[name] = values.get(name, 0.0) + float(match.group(3))
    return values


def test_metrics_have_values_after_a_conversation_and_logs_carry_no_phi(infra, tmp_path):
    with running_process_stack(infra, tmp_path, workers=((1, 4),)) as procs:
        stack = procs.stack
        stack.send_sms(GLOW_NUMBER, CANARY_PHONE, f"Hi, this is {CANARY_NAME}. {CANARY_BODY} [c1-m1]")
        stack.wait_replies(CANARY_PHONE, 1)
        stack.send_sms(GLOW_NUMBER, CANARY_PHONE, f"{CANARY_BODY} again [c1-m2]")
        stack.wait_replies(CANARY_PHONE, 2)
        stack.wait_idle()
        metrics_url = f"http://127.0.0.1:{stack.settings.webhook_metrics_port}/metrics"
        webhook = _series(httpx.get(metrics_url, timeout=10).text)
        public = httpx.get(stack.base_url + "/metrics", timeout=10)  # not on the port the internet reaches
        worker = _series(httpx.get(f"http://127.0.0.1:{procs.workers[0].metrics_port}/", timeout=10).text)
        logs = procs.logs()

    assert public.status_code == 404 and "medspa_" not in public.text
    assert webhook["medspa_webhook_requests_total"] >= 2
    assert webhook["medspa_webhook_request_seconds_count"] >= 2
    assert "medspa_queue_depth" in webhook
    for name in (
        "medspa_turns_total",
        "medspa_turn_seconds_count",
        "medspa_model_seconds_count",
        "medspa_model_tokens_total",
        "medspa_tool_calls_total",
        "medspa_sends_total",
        "medspa_inbox_lag_seconds_count",
        "medspa_outbox_lag_seconds_count",
        "dramatiq_messages_total",
    ):
        assert worker.get(name, 0) > 0, f"{name} missing or zero"
    assert '"trace_id"' in logs  # structured logs carry the trace id
    digits = CANARY_PHONE.lstrip("+")
    for canary in (CANARY_NAME, "Zebulon", "Quartermaine", CANARY_PHONE, digits, digits[1:], CANARY_BODY, "pineapple"):
        assert canary.lower() not in logs.lower(), f"PHI canary {canary!r} found in service logs"


# ------------------------------------------------------------------ error paths
ERROR_PHONE = "+14155550778"  # the duplicate-message (Dramatiq failure) path
WEBHOOK_PHONE = "+14155550779"  # the webhook (uvicorn error log) path
CANARY_EMAIL = "zebulon.canary@example.com"
PROFILE_REQUEST = "please update my email"


def _profile_responder(body: dict[str, Any]) -> dict[str, Any]:
    """The model saves the patient's name and email when asked (the canary row then violates a constraint)."""
    last = body["messages"][-1]
    if last["role"] == "user" and PROFILE_REQUEST in (last.get("content") or ""):
        arguments = json.dumps({"name": CANARY_NAME, "email": CANARY_EMAIL})
        return tool_calls_reply(("update_profile", arguments))
    return echo_responder(body)


@contextlib.contextmanager
def _canary_constraints(owner_url: str) -> Iterator[None]:
    """Constraints only the canary's rows violate, so each error path raises a real Postgres error whose text
    carries PHI.  Row-level security makes Postgres leave row values out of DETAIL for the tenant tables, so
    the DETAIL case is a table without it (as an audit table someone adds would be): a trigger copies canary
    texts into it, and a repeated text violates its unique key (``DETAIL: Key (source, body)=(…)``)."""
    setup = [
        "ALTER TABLE clients ADD CONSTRAINT phi_canary_email CHECK (email NOT LIKE '%canary%') NOT VALID",
        "CREATE TABLE phi_canary_audit (source text, body text, UNIQUE (source, body))",
        "GRANT SELECT, INSERT ON phi_canary_audit TO medspa_app",
        """CREATE FUNCTION phi_canary_audit() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             INSERT INTO phi_canary_audit
             VALUES (TG_TABLE_NAME, coalesce(to_jsonb(NEW)->'payload'->>'body', to_jsonb(NEW)->>'body'));
             RETURN NEW;
           END $$""",
        """CREATE TRIGGER phi_canary_message AFTER INSERT ON messages FOR EACH ROW
           WHEN (NEW.role = 'user' AND NEW.body LIKE '%canary%') EXECUTE FUNCTION phi_canary_audit()""",
        """CREATE TRIGGER phi_canary_inbox AFTER INSERT ON inbox_events FOR EACH ROW
           WHEN (NEW.payload->>'body' LIKE '%webhook canary%') EXECUTE FUNCTION phi_canary_audit()""",
    ]
    teardown = [
        "ALTER TABLE clients DROP CONSTRAINT IF EXISTS phi_canary_email",
        "DROP TRIGGER IF EXISTS phi_canary_message ON messages",
        "DROP TRIGGER IF EXISTS phi_canary_inbox ON inbox_events",
        "DROP FUNCTION IF EXISTS phi_canary_audit()",
        "DROP TABLE IF EXISTS phi_canary_audit",
    ]
    engine = make_engine(owner_url, pool_size=1)
    try:
        with engine.begin() as conn:
            for statement in setup:
                conn.execute(text(statement))
        yield
    finally:
        with engine.begin() as conn:
            for statement in teardown:
                conn.execute(text(statement))
        engine.dispose()


def test_error_paths_log_no_phi(infra, tmp_path):
    """Constraint violations and exceptions carrying PHI, in the real processes: a tool's failure (logged by
    our code), an actor's unhandled exception (logged by Dramatiq's worker) and an inbox row Postgres refuses (a 400 for
    that request only, logged by the webhook app with its constraint's name).  The errors are logged (their
    types and constraint names appear) and no canary is."""
    duplicate = f"call me back on {CANARY_PHONE} or {CANARY_EMAIL}: {CANARY_BODY}"
    with (
        _canary_constraints(infra.migration_database_url),
        running_process_stack(infra, tmp_path, workers=((1, 4),)) as procs,
    ):
        stack = procs.stack
        stack.openai.responder = _profile_responder
        stack.send_sms(GLOW_NUMBER, CANARY_PHONE, f"{PROFILE_REQUEST}, I'm {CANARY_NAME} [c1-m1]")
        stack.wait_replies(CANARY_PHONE, 1)
        stack.send_sms(GLOW_NUMBER, ERROR_PHONE, duplicate)
        stack.wait_replies(ERROR_PHONE, 1)
        stack.send_sms(GLOW_NUMBER, ERROR_PHONE, duplicate)  # the same text again: its message row collides
        webhook_text = f"webhook canary {CANARY_BODY} from {WEBHOOK_PHONE}"
        stack.send_sms(GLOW_NUMBER, WEBHOOK_PHONE, webhook_text)
        refused = stack.post_twilio("/webhooks/twilio/sms", stack.sms_form(GLOW_NUMBER, WEBHOOK_PHONE, webhook_text))
        assert refused.status_code == 400  # the row Postgres refuses fails alone (the inbox writer isolates it)
        worker_log, app_log = procs.workers[0].log_path, procs.app.log_path
        violation = "phi_canary_audit_source_body_key"  # the constraint's name: the error was logged
        wait_for(
            lambda: all(
                m in worker_log.read_text() for m in ("phi_canary_email", "Failed to process message", violation)
            ),
            60,
            what="the tool failure and Dramatiq's failure log in the worker's output",
        )
        wait_for(lambda: violation in app_log.read_text(), 30, what="the webhook's error in the app's output")
        logs = procs.logs()

    detail = "Key (source, body)=([redacted])"  # the DETAIL line was there, and was scrubbed
    assert detail in worker_log.read_text()
    # The webhook app logs what failed (class, SQLSTATE, constraint) and never the exception's text.
    assert "Key (source, body)" not in app_log.read_text()
    for canary in (
        CANARY_NAME,
        "Zebulon",
        "Quartermaine",
        CANARY_EMAIL,
        "zebulon.canary",
        CANARY_BODY,
        "pineapple",
        *_phone_forms(CANARY_PHONE),
        *_phone_forms(ERROR_PHONE),
        *_phone_forms(WEBHOOK_PHONE),
    ):
        assert canary.lower() not in logs.lower(), f"PHI canary {canary!r} found in service logs"


def _phone_forms(phone: str) -> tuple[str, ...]:
    digits = phone.lstrip("+")
    return phone, digits, digits[1:]
