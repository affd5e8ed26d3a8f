"""Apply provider delivery statuses to outbox rows, forward only (the rule: ``domain.outbox``; the statement:
``db.outbox_status``)."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from db.directory import SET_CLINIC_SQL
from db.outbox_status import APPLY_DELIVERY_STATUS, delivery_status_params


class OutboxStatus:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def apply(
        self, clinic_id: int, outbox_id: int, status: str, error_code: str | None, provider_id: str | None
    ) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(SET_CLINIC_SQL, (str(clinic_id),))
            await conn.execute(
                APPLY_DELIVERY_STATUS, delivery_status_params(outbox_id, status, error_code, provider_id)
            )
