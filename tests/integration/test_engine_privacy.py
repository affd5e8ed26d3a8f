"""Database errors carry no row values into exception text (and so into logs)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.engine import make_engine


def test_engine_errors_hide_bound_parameters(infra):
    engine = make_engine(infra.database_url, pool_size=1)
    try:
        with pytest.raises(DBAPIError) as failed, engine.connect() as conn:
            conn.execute(text("SELECT CAST(:phone AS text), 1 / 0"), {"phone": "+14155550777 Zebulon"})
    finally:
        engine.dispose()
    message = str(failed.value)
    assert "hidden due to hide_parameters" in message
    assert "Zebulon" not in message and "4155550777" not in message
