"""What the planners of clinic-initiated texts (campaign batches and previews, automation scans) read about a
recipient before they queue anything: the client's consent columns and how many marketing texts they got — the
weekly cap and the first-message opt-out footer count the outbox's own rows, so the count lives with the outbox.

SQLAlchemy's ``:name`` dialect: these fragments go into the planners' queries (binds ``:week_ago``, and
``:campaign_id`` with ``except_campaign``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from db.engine import sql_list
from domain.audience import RecipientFacts
from domain.outbox import NEVER_REACHED, SENT_OVER, WENT_OUT

# The client's columns ``planned_recipient`` reads (``c``: the clients table).
RECIPIENT_COLUMNS = "c.phone_e164, c.timezone, c.consent_state, c.marketing_consent, c.sms_status"


def marketing_counts(client_id_column: str, *, except_campaign: bool = False) -> str:
    """``LEFT JOIN LATERAL … m``: ``m.week`` (marketing texts sent or queued in the rolling week: the cap counts
    what will go out) and ``m.ever`` (marketing texts that went out, or are going: the first-message footer is for
    the first text the client reads, and a queued text may yet be withdrawn — a cancelled or paused campaign —,
    leaving a later one, rendered without the footer, to go out first) for the client in ``client_id_column``.
    ``except_campaign``: not counting ``:campaign_id``'s own rows (a campaign's preview and batches decide its
    recipients before or while its rows exist)."""
    own = " AND o.campaign_id IS DISTINCT FROM :campaign_id" if except_campaign else ""
    return f"""
    LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE coalesce(o.sent_at, o.created_at) > :week_ago) AS week,
               count(*) FILTER (WHERE o.status IN {sql_list((*SENT_OVER, *WENT_OUT))}) AS ever
        FROM outbox o
        WHERE o.client_id = {client_id_column} AND (o.kind = 'campaign' OR o.meta->>'marketing' = 'true')
          AND o.status NOT IN {sql_list(NEVER_REACHED)}{own}
    ) m ON true"""


def planned_recipient(row: Mapping[Any, Any]) -> RecipientFacts:
    """The facts ``domain.audience.decide`` reads, from a row with ``client_id``, ``RECIPIENT_COLUMNS`` and the
    marketing counts (``week``, ``ever``)."""
    return RecipientFacts(
        client_id=int(row["client_id"]),
        phone=row["phone_e164"],
        consent_state=row["consent_state"],
        sms_status=row["sms_status"],
        marketing_consent=row["marketing_consent"],
        timezone=row["timezone"],
        marketing_last_7d=int(row["week"] or 0),
        marketing_ever=int(row["ever"] or 0),
    )
