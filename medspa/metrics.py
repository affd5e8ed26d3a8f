"""Prometheus metrics shared by the webhook app and the workers.

Workers run several processes, so metrics use prometheus_client's
multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` must be set before this
module is imported (a worker process's boot does, ``worker.runtime``; Dramatiq's Prometheus middleware
serves the directory on the worker metrics port).  The webhook app serves
``/metrics`` itself.  Labels carry ids of kinds (route, tool, model, error
code) — never anything about a patient.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prom_multiprocess

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

webhook_requests = Counter("medspa_webhook_requests_total", "Webhook requests by route and status", ["route", "status"])
webhook_latency = Histogram("medspa_webhook_request_seconds", "Webhook request latency", ["route"], buckets=_LATENCY)
inbox_lag = Histogram("medspa_inbox_lag_seconds", "Inbound message recorded → its turn started", buckets=_LATENCY)
turns = Counter("medspa_turns_total", "Turns committed by outcome", ["outcome"])
turn_latency = Histogram("medspa_turn_seconds", "Turn duration (think + commit)", buckets=_LATENCY)
model_latency = Histogram("medspa_model_seconds", "Model time per turn", ["model"], buckets=_LATENCY)
model_tokens = Counter("medspa_model_tokens_total", "Model tokens by model and kind", ["model", "kind"])
tool_calls = Counter("medspa_tool_calls_total", "Tool calls by tool", ["tool"])
tool_errors = Counter("medspa_tool_errors_total", "Tool calls that returned an error, by tool", ["tool"])
outbox_lag = Histogram("medspa_outbox_lag_seconds", "Outbox row created → sent", ["channel"], buckets=_LATENCY)
sends = Counter("medspa_sends_total", "Outbox sends by channel, kind and outcome", ["channel", "kind", "outcome"])
send_failures = Counter("medspa_send_failures_total", "Send failures by provider error code", ["code"])
lease_takeovers = Counter("medspa_lease_takeovers_total", "Conversations taken over from an expired lease")
stale_turns = Counter("medspa_stale_turns_total", "Turns discarded by the fencing check")
leases_lost = Counter("medspa_leases_lost_total", "Conversation leases found taken over while their turn ran")
turns_withdrawn = Counter("medspa_turns_withdrawn_total", "Turns stopped early because their lease was lost")
lost_claims = Counter(
    "medspa_outbox_lost_claims_total", "Outbox rows a sender did not send: its claim lapsed before the provider call"
)
sent_marks_unrecorded = Counter(
    "medspa_sent_marks_unrecorded_total",
    "Sent outbox rows whose 'sent' could not be written (the sweeper reconciles them with the provider)",
)
quarantined = Counter("medspa_quarantined_total", "Inbound events or conversations quarantined", ["what"])
redis_fail_open = Counter(
    "medspa_webhook_redis_fail_open_total",
    "Webhook-side Redis calls skipped because Redis was slow or failing (the request went on without them)",
    ["operation", "reason"],
)
chat_streams_open = Gauge(
    "medspa_chat_streams_open", "Chat SSE streams open in this webhook process", multiprocess_mode="livesum"
)
queue_depth = Gauge("medspa_queue_depth", "Messages waiting per Dramatiq queue", ["queue"], multiprocess_mode="max")


def exposition() -> bytes:
    """The metrics text for this process (all processes' when running in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
