"""Apply provider delivery statuses to outbox rows, forward only."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

_RANK_SQL = (
    "CASE status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2 WHEN 'unknown' THEN 2 "
    "WHEN 'delivered' THEN 3 WHEN 'undelivered' THEN 3 WHEN 'failed' THEN 3 ELSE 4 END"
)


class OutboxStatus:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def apply(
        self, clinic_id: int, outbox_id: int, status: str, rank: int, error_code: str | None, provider_id: str | None
    ) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.clinic_id', %s, true)", (str(clinic_id),))
            await conn.execute(
                f"""UPDATE outbox SET status = %s,
                        error_code = COALESCE(%s, error_code),
                        provider_message_id = COALESCE(provider_message_id, %s),
                        delivered_at = CASE WHEN %s = 'delivered' THEN now() ELSE delivered_at END
                    WHERE id = %s AND {_RANK_SQL} <= %s AND status NOT IN ('suppressed', 'cancelled')""",
                (status, error_code, provider_id, status, outbox_id, rank),
            )
