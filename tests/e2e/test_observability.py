"""Metrics after a conversation, and no PHI in any service log line."""

from __future__ import annotations

import re

import httpx

from tests.support.stack import GLOW_NUMBER, running_process_stack

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
