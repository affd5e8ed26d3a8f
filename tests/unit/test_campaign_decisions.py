"""A campaign's decisions without a database: who in a batch is excluded (and why), who waits for their morning,
what the others are sent (the footer on a first marketing text), how much a sender claims at once, and where
each recipient stands in the report."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.audience import RecipientFacts, SendPolicy
from domain.templates import validate_template
from worker.campaigns.content import SendContext
from worker.campaigns.report import recipient_state
from worker.campaigns.runner import Outcome, Recipient, plan_batch
from worker.campaigns.sending import chunk_for

LA = "America/Los_Angeles"
NOON_LA = datetime(2026, 3, 2, 20, tzinfo=UTC)
POLICIES = {"marketing_cap_per_week": 2, "opt_out_footer": "Reply STOP to opt out."}


def _context() -> SendContext:
    return SendContext(
        clinic_id=1,
        clinic_name="Glow",
        clinic_phone="+14155550000",
        clinic_tz=LA,
        sms_number="+14155550123",
        policy=SendPolicy.marketing_for(LA, POLICIES),
        template=validate_template("Hi {first_name}, spring offer at {clinic_name}!"),
    )


def _recipient(n: int, **facts: object) -> Recipient:
    values: dict[str, object] = {
        "client_id": n,
        "phone": f"+1628555{n:04d}",
        "consent_state": "opted_in",
        "marketing_consent": "granted",
        "timezone": LA,
        "marketing_ever": 1,
    }
    values.update(facts)
    return Recipient(100 + n, RecipientFacts(**values), f"Pat{n} Smith")  # type: ignore[arg-type]


def test_a_batch_excludes_defers_and_renders_by_the_one_decision() -> None:
    recipients = [
        _recipient(1),
        _recipient(2, marketing_ever=0),  # their first marketing text: the opt-out footer
        _recipient(3, consent_state="opted_out"),
        _recipient(4, marketing_consent="none"),
        _recipient(5, marketing_last_7d=2),
        _recipient(6, timezone="Asia/Tokyo"),  # 05:00 there: waits for their 08:00
        _recipient(7, phone=None),
    ]

    plan = plan_batch(recipients, _context(), NOON_LA)

    assert plan.excluded == {"opted_out": 1, "no_consent": 1, "frequency_cap": 1, "no_phone": 1}
    assert plan.deferred == 1
    assert Outcome(106, "pending", send_after=datetime(2026, 3, 2, 23, tzinfo=UTC)) in plan.outcomes
    assert Outcome(103, "excluded", "opted_out") in plan.outcomes
    assert plan.recipient_of == {1: 101, 2: 102}
    first, second = plan.messages
    assert first.body == "Hi Pat1, spring offer at Glow!" and not first.footer
    assert second.body.endswith("Reply STOP to opt out.") and second.footer
    assert (second.segments, second.encoding) == (1, "GSM-7")


def test_a_capped_campaign_claims_about_a_tenth_of_a_second_of_sends_at_once() -> None:
    assert chunk_for(None) == 50
    assert chunk_for(30) == 3
    assert chunk_for(5) == 1
    assert chunk_for(10_000) == 50


def test_every_recipient_lands_in_exactly_one_place_of_the_report() -> None:
    assert recipient_state("excluded", None, None) == "excluded"
    assert recipient_state("pending", True, None) == "deferred"
    assert recipient_state("pending", False, None) == "pending"
    assert recipient_state("cancelled", None, "cancelled") == "cancelled"
    assert recipient_state("queued", None, "unknown") == "queued"
    assert recipient_state("queued", None, "delivered") == "delivered"
    assert recipient_state("queued", None, "undelivered") == "failed"
    assert recipient_state("queued", None, "suppressed") == "suppressed"
    assert recipient_state("queued", None, "cancelled") == "withdrawn"
