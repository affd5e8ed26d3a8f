"""Can this person receive this text now: ``domain.audience.decide`` — the one decision — applied to an outbox
row at the moment of sending, to a turn's reply, and to a staff member's text.

Consent (an opt-out blocks everything but the keyword confirmations and the safety reply; marketing needs its own
grant), the number's status, and the time window: a marketing or reminder text whose moment passed into quiet
hours while it waited is deferred to the next allowed instant (``not_before``), never dropped and never sent at
night.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from domain.audience import Decision, RecipientFacts, SendPolicy, TextKind, decide, text_kind
from domain.conversation import ClinicProfile
from domain.outbox import Verdict, claim_verdict
from worker.outbox.rows import SendRow


def send_policy(outbox_kind: str, clinic: ClinicProfile, *, marketing: bool = False) -> SendPolicy:
    """The clinic's rules for the kind of text an outbox row of ``outbox_kind`` carries."""
    return SendPolicy.for_kind(text_kind(outbox_kind, marketing=marketing), clinic.timezone, clinic.policies)


def send_decision(row: SendRow, clinic: ClinicProfile, now: datetime) -> Decision | None:
    """The decision for a row at the moment of sending; None for web chat (the patient's own open widget: nothing
    to consent to)."""
    if row.channel != "sms":
        return None
    facts = row.recipient or RecipientFacts(0, row.to_address, "unknown")
    if row.client_id is None and row.number_opted_out:
        facts = RecipientFacts(0, row.to_address, "opted_out")  # a staff notification's number opted out itself
    return decide(facts, send_policy(row.kind, clinic, marketing=bool(row.meta.get("marketing"))), now)


def claim_judge(clinic: ClinicProfile, now: datetime) -> Callable[[SendRow], Verdict]:
    """The claim rule (``domain.outbox.claim_verdict``) for a clinic's rows at ``now``, with their send decision."""

    def judge(row: SendRow) -> Verdict:
        sms_status = row.recipient.sms_status if row.recipient else None
        return claim_verdict(row.claim_facts(), now, lambda: send_decision(row, clinic, now), sms_status)

    return judge


def conversation_text_decision(phone: str | None, consent_state: str, sms_status: str, now: datetime) -> Decision:
    """A text to a patient in their conversation (a staff reply, a notice about their booking): the conversation
    rules — opt-out and the number's status, any time of day."""
    policy = SendPolicy.for_kind(TextKind.CONVERSATION, "UTC", {})  # no window: the zone plays no part
    return decide(RecipientFacts(0, phone, consent_state, sms_status), policy, now)
