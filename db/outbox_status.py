"""The provider's delivery status applied to an outbox row, forward only (``domain.outbox.may_advance``), and
the carrier's verdicts in its error codes applied to the recipient (``delivery_error_statements``).

Executed by the webhook app on its async psycopg connection (the status callback, both in one transaction: its
204 means the verdict is recorded, with nothing left to a queue) and by the worker when a send fails with such a
code: import-light on purpose — no SQLAlchemy, nothing of the worker — so the web process may import it.
"""

from __future__ import annotations

from typing import Any

from db.consent import Statement, consent_statements
from domain.compliance import ConsentKind, ConsentRecord, ConsentScope, ConsentSource
from domain.outbox import DELIVERED, NOT_THE_PROVIDERS, STATUS_RANK

# Carrier verdicts (Twilio error codes) that change how we treat a number from now on.
CARRIER_UNSUBSCRIBED = "21610"  # the recipient replied STOP at the carrier level: our ledger records it too
NUMBER_STATUS_AFTER = {"21211": "invalid", "21614": "not_mobile"}
_NUMBER_STATUS = "UPDATE clients SET sms_status = %s WHERE id = %s"
# The row's recipient and its error code before a callback changes it, locked until the callback commits.
RECIPIENT_FOR_UPDATE = "SELECT client_id, to_address, error_code FROM outbox WHERE id = %s FOR UPDATE"


def delivery_error_statements(clinic_id: int, client_id: int | None, phone: str, code: str | None) -> list[Statement]:
    """The statements that apply a carrier's error ``code`` to the recipient (none for any other code): 21610 is
    an opt-out in the consent ledger (``db.consent``), an invalid or landline number marks the client's number."""
    if code == CARRIER_UNSUBSCRIBED:
        wording = "Twilio error 21610: unsubscribed"
        record = ConsentRecord(ConsentKind.OPT_OUT, ConsentScope.ALL, ConsentSource.CARRIER, wording)
        return consent_statements(clinic_id, client_id, phone, record)
    if code in NUMBER_STATUS_AFTER and client_id is not None:
        return [(_NUMBER_STATUS, (NUMBER_STATUS_AFTER[code], client_id))]
    return []


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
