"""The provider's delivery status applied to an outbox row, forward only (``domain.outbox.may_advance``).

Executed by the webhook app on its async psycopg connection (the status callback): import-light on purpose — no
SQLAlchemy, nothing of the worker — so the web process may import it.
"""

from __future__ import annotations

from typing import Any

from domain.outbox import DELIVERED, NOT_THE_PROVIDERS, STATUS_RANK

# The rank of the row's current status; a status no callback carries ranks above them all.
_CURRENT_RANK = (
    "CASE status "
    + " ".join(f"WHEN '{status}' THEN {rank}" for status, rank in STATUS_RANK.items())
    + f" ELSE {max(STATUS_RANK.values()) + 1} END"
)
# ``%(status)s`` is one server parameter used twice, so it is cast: untyped, Postgres would deduce varchar from the
# assignment and text from the comparison, and refuse every callback ("inconsistent types deduced for parameter").
APPLY_DELIVERY_STATUS = f"""
UPDATE outbox SET status = %(status)s::text,
       error_code = COALESCE(%(error_code)s, error_code),
       provider_message_id = COALESCE(provider_message_id, %(provider_id)s),
       delivered_at = CASE WHEN %(status)s::text = '{DELIVERED}' THEN now() ELSE delivered_at END
WHERE id = %(id)s AND {_CURRENT_RANK} <= %(rank)s AND status <> ALL(%(not_the_providers)s)
"""


def delivery_status_params(
    outbox_id: int, status: str, error_code: str | None, provider_id: str | None
) -> dict[str, Any]:
    """Parameters of ``APPLY_DELIVERY_STATUS``; ``status`` must be one a callback carries (``STATUS_RANK``)."""
    return {
        "id": outbox_id,
        "status": status,
        "rank": STATUS_RANK[status],
        "error_code": error_code,
        "provider_id": provider_id,
        "not_the_providers": list(NOT_THE_PROVIDERS),
    }
