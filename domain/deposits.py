"""A deposit's payment record: its statuses and their named sets, what of it the clinic still holds, and whether a
completed checkout is the deposit we asked for.  The one home of these rules: the payments flow, the settlement
(``worker/deposit_refunds.py``), the cancel terms, the visit lifecycle and staff's attention list all read them.

Pure: plain data in, plain data out.
"""

from __future__ import annotations

from typing import Final

# ---------------------------------------------------------------------------------------------- statuses
PENDING: Final = "pending"  # a checkout link is out
PAID: Final = "paid"
EXPIRED: Final = "expired"
KEPT: Final = "kept"  # kept per the clinic's cancellation policy
REFUND_DUE: Final = "refund_due"  # money for a slot we no longer held: refunded whatever the policy
REFUNDED: Final = "refunded"  # given back in full (a partial refund leaves the status as it was)
REFUND_FAILED: Final = "refund_failed"  # the provider refused the refund: staff refund by hand
REVIEW: Final = "review"  # paid, but not the amount or currency we asked for: staff decide, nothing is confirmed

# Money arrived for the checkout: a second completion event for it changes nothing.
RECEIVED_STATUSES: Final[tuple[str, ...]] = (PAID, REFUNDED, KEPT, REFUND_DUE, REFUND_FAILED, REVIEW)
# Held and not settled yet: what a cancellation's terms quote and the settlement refunds or keeps.
SETTLEABLE_STATUSES: Final[tuple[str, ...]] = (PAID, REFUND_DUE)
# A refund the provider made is recorded over these: a settlement that lost a race to a concurrent one (its
# request refused while the winner's was in flight) may have marked the payment failed before the winner's answer.
REFUND_RECORDABLE_STATUSES: Final[tuple[str, ...]] = (*SETTLEABLE_STATUSES, REFUND_FAILED)
# A refund made outside the agent (the Stripe dashboard) may land on any payment money arrived for.
REFUNDABLE_STATUSES: Final[tuple[str, ...]] = RECEIVED_STATUSES
# Staff must act: a refund the provider refused, a payment that is not the deposit we asked for.
NEEDS_STAFF_STATUSES: Final[tuple[str, ...]] = (REFUND_FAILED, REVIEW)


# ---------------------------------------------------------------------------------------------- amounts
def held_cents(amount_cents: int, refunded_cents: int) -> int:
    """What of a deposit the clinic still holds after refunds made so far (e.g. a partial refund in the Stripe
    dashboard): the amount a settlement refunds or keeps, and a kept deposit nets a fee by.  Never negative."""
    return max(0, amount_cents - max(0, refunded_cents))


def fully_refunded(amount_cents: int, refunded_cents: int) -> bool:
    """Nothing of the deposit is held any more: only then is the payment ``refunded``."""
    return refunded_cents >= amount_cents


def checkout_matches(amount_cents: int, currency: str, paid_cents: int | None, paid_currency: str | None) -> bool:
    """A completed checkout is the deposit we recorded: the same amount in the same currency (a field the event
    omits is not a mismatch; a session recreated by hand in the dashboard for another amount is)."""
    if paid_cents is not None and int(paid_cents) != int(amount_cents):
        return False
    return not paid_currency or paid_currency.lower() == (currency or "").lower()
