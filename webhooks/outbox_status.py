"""Apply provider delivery statuses to outbox rows, forward only (the rule: ``domain.outbox``; the statements:
``db.outbox_status``), with the carrier's verdict in an error code applied to the recipient in the same
transaction: the callback's 204 means both are recorded (a queue in between could lose an opt-out)."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from db.directory import SET_CLINIC_SQL
from db.outbox_status import (
    APPLY_DELIVERY_STATUS,
    RECIPIENT_FOR_UPDATE,
    delivery_error_statements,
    delivery_status_params,
)


class OutboxStatus:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def apply(
        self, clinic_id: int, outbox_id: int, status: str, error_code: str | None, provider_id: str | None
    ) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(SET_CLINIC_SQL, (str(clinic_id),))
            recipient = await (await conn.execute(RECIPIENT_FOR_UPDATE, (outbox_id,))).fetchone()
            if recipient is None:
                return  # not this clinic's row (or gone): nothing to apply
            await conn.execute(
                APPLY_DELIVERY_STATUS, delivery_status_params(outbox_id, status, error_code, provider_id)
            )
            client_id, phone, code_before = recipient
            if error_code and error_code != code_before:  # a repeated callback records its verdict once
                for sql, params in delivery_error_statements(clinic_id, client_id, phone, error_code):
                    await conn.execute(sql, params)
