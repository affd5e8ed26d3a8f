"""The outbox's rules (``domain.outbox``): the order a delivery status may move in — and the webhook's statement
generated from it —, the claim rule, what a queued text is about; and the webhook app's imports staying light."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from db.outbox_status import APPLY_DELIVERY_STATUS, delivery_status_params
from domain.audience import Decision
from domain.outbox import (
    APPOINTMENT_GONE,
    BOOKED_SINCE,
    MAX_SEND_ATTEMPTS,
    STATUS_RANK,
    ClaimAction,
    ClaimFacts,
    automation_still_relevant,
    claim_verdict,
    may_advance,
    subject_gone,
)
from medspa.settings import REPO_ROOT

NOW = datetime(2026, 3, 2, 18, tzinfo=UTC)


@pytest.mark.parametrize(
    ("current", "reported", "moves"),
    [
        ("sent", "delivered", True),
        ("delivered", "sent", False),  # a late "sent" never overwrites "delivered"
        ("sending", "sent", True),
        ("unknown", "delivered", True),
        ("undelivered", "failed", True),  # equal ranks replace each other
        ("suppressed", "delivered", False),  # our verdicts stand
        ("cancelled", "sent", False),
        ("sent", "read", False),  # not a status a callback may carry
    ],
)
def test_a_delivery_status_moves_forward_only(current: str, reported: str, moves: bool) -> None:
    assert may_advance(current, reported) is moves


def test_the_status_callbacks_statement_is_the_same_order() -> None:
    for status, rank in STATUS_RANK.items():
        assert f"WHEN '{status}' THEN {rank}" in APPLY_DELIVERY_STATUS
    params = delivery_status_params(7, "delivered", None, "SM1")
    assert params["rank"] == STATUS_RANK["delivered"] and set(params["not_the_providers"]) == {
        "suppressed",
        "cancelled",
    }


def _facts(**overrides: object) -> ClaimFacts:
    values: dict[str, object] = {
        "status": "queued",
        "kind": "reply",
        "not_before": None,
        "attempts": 0,
        "earlier_unsent": False,
        "subject_gone": None,
    }
    values.update(overrides)
    return ClaimFacts(**values)  # type: ignore[arg-type]


def _never() -> Decision | None:
    raise AssertionError("the send decision was asked although an earlier rule decided")


def test_the_claim_rule_checks_in_order_and_asks_the_send_decision_only_when_it_matters() -> None:
    go = Decision(True, None, NOW)
    assert claim_verdict(_facts(status="sent"), NOW, _never).action is ClaimAction.SKIP
    assert claim_verdict(_facts(not_before=NOW + timedelta(seconds=2)), NOW, _never).wait_ms == 2000
    assert claim_verdict(_facts(earlier_unsent=True), NOW, _never).action is ClaimAction.WAIT
    gone = claim_verdict(_facts(subject_gone="campaign paused"), NOW, _never)
    assert (gone.action, gone.reason) == (ClaimAction.SUPPRESS, "campaign paused")
    no = claim_verdict(_facts(), NOW, lambda: Decision(False, "invalid_number"), "not_mobile")
    assert (no.action, no.reason) == (ClaimAction.SUPPRESS, "recipient number not_mobile")
    later = claim_verdict(_facts(status="unknown"), NOW, lambda: Decision(True, None, NOW + timedelta(hours=1), True))
    assert (later.action, later.until) == (ClaimAction.DEFER, NOW + timedelta(hours=1))
    assert claim_verdict(_facts(attempts=MAX_SEND_ATTEMPTS), NOW, lambda: go).action is ClaimAction.GIVE_UP
    assert claim_verdict(_facts(status="unknown"), NOW, lambda: None).action is ClaimAction.CLAIM  # web chat


@pytest.mark.parametrize(
    ("automation", "status", "relevant"),
    [
        ("reminder_24h", "booked", True),
        ("reminder_24h", "cancelled", False),
        ("reminder_2h", None, False),  # the appointment is gone
        ("deposit_reminder", "pending_deposit", True),
        ("deposit_reminder", "booked", False),
        ("aftercare", "completed", True),
        ("no_show_followup", "no_show", True),
        ("win_back", "booked", False),
    ],
)
def test_an_automation_text_needs_its_appointment_as_it_was(
    automation: str, status: str | None, relevant: bool
) -> None:
    meta = {"automation": automation, "appointment_id": 42}
    assert automation_still_relevant(meta, status) is relevant
    assert (subject_gone("automation", meta, status, None) is None) is relevant


@pytest.mark.parametrize(
    ("automation", "status", "upcoming", "gone"),
    [
        # Asking a client back: a visit they booked since the text was planned makes it moot.
        ("rebook_nudge", "completed", True, BOOKED_SINCE),
        ("win_back", "completed", True, BOOKED_SINCE),
        ("rebook_nudge", "completed", False, None),  # nothing booked: it goes out
        ("win_back", "completed", False, None),
        ("rebook_nudge", None, True, APPOINTMENT_GONE),  # the visit it is about is gone: that reason first
        # Texts about a visit itself, or after it, are not stopped by another booking.
        ("reminder_24h", "booked", True, None),
        ("aftercare", "completed", True, None),
        ("review_request", "completed", True, None),
        ("no_show_followup", "no_show", True, None),
    ],
)
def test_a_come_back_text_stops_once_the_client_has_booked_an_upcoming_visit(
    automation: str, status: str | None, upcoming: bool, gone: str | None
) -> None:
    meta = {"automation": automation, "appointment_id": 42}
    assert subject_gone("automation", meta, status, None, upcoming) == gone


def test_only_automations_read_the_clients_upcoming_visit() -> None:
    assert subject_gone("campaign", {"automation": "rebook_nudge"}, None, "sending", True) is None
    assert subject_gone("reply", {}, None, None, True) is None


def test_a_paused_or_cancelled_campaigns_texts_stop() -> None:
    assert subject_gone("campaign", {}, None, "paused") == "campaign paused"
    assert subject_gone("campaign", {}, None, "sending") is None
    assert subject_gone("reply", {"appointment_id": 1}, None, None) is None  # only automations carry the check


def test_the_webhook_app_imports_no_worker_and_no_sqlalchemy() -> None:
    """The status callback and the chat handover share statements with the worker through import-light modules
    (``db.outbox_status``, ``db.consent``, the pure ``domain``), never through ``worker`` or SQLAlchemy."""
    probe = (
        "import sys, webhooks.app; "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('worker', 'sqlalchemy', 'console')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
