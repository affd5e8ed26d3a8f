"""Typed array parameters (``db/arrays.py``) reach a real Postgres as the arrays they were, element for element,
whatever the text holds — and through the hot path's own pipeline connection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from db.arrays import BigintArray, BoolArray, IntArray, JsonbArray, TextArray, TimestamptzArray
from db.engine import Database
from medspa.services import Infrastructure

AWKWARD_TEXTS = [
    "plain",
    "",
    "NULL",  # the word, not a null
    'she said "hi"',
    'back\\slash and \\" both',
    "{braces}, commas, and 'quotes'",
    "  leading and trailing spaces  ",
    "line\nbreak\ttab",
    "Ünïcödé — émoji 💉",
    None,
]


@pytest.fixture()
def conn(infra: Infrastructure) -> psycopg.Connection[tuple[object, ...]]:
    url = infra.migration_database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as connection:
        yield connection


def test_text_arrays_round_trip_every_awkward_element(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    row = conn.execute("SELECT %s::text[], pg_typeof(%s)::text", (TextArray(AWKWARD_TEXTS), TextArray([]))).fetchone()
    assert row == (AWKWARD_TEXTS, "text[]")  # sent as text[] (the cast is a no-op), nothing altered
    # Unnested with ordinality, as the statements read them: same order, nulls where they were.
    rows = conn.execute(
        "SELECT u.value, u.n FROM unnest(%s::text[]) WITH ORDINALITY AS u(value, n) ORDER BY u.n",
        (TextArray(AWKWARD_TEXTS),),
    ).fetchall()
    assert [r[0] for r in rows] == AWKWARD_TEXTS


def test_jsonb_arrays_carry_documents_with_quotes_and_backslashes(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    documents = [{"q": 'a "quoted" word', "path": "C:\\temp", "n": [1, 2]}, {}, "just a string", None]
    sent = JsonbArray(None if d is None else json.dumps(d) for d in documents)
    row = conn.execute("SELECT %s::jsonb[]", (sent,)).fetchone()
    assert row is not None and row[0] == documents


def test_number_bool_and_time_arrays(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    at = datetime(2026, 12, 4, 23, 59, 58, 123456, tzinfo=UTC)
    elsewhere = datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=-7)))
    row = conn.execute(
        "SELECT %s::bigint[], %s::int[], %s::boolean[], %s::timestamptz[]",
        (
            BigintArray([2**62, -1, 0, None]),
            IntArray([7, None]),
            BoolArray([True, False, None]),
            TimestamptzArray([at, elsewhere, None]),
        ),
    ).fetchone()
    assert row == ([2**62, -1, 0, None], [7, None], [True, False, None], [at, elsewhere, None])


def test_a_typed_array_is_still_a_list(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    values = TextArray(["a", "b"])
    assert values == ["a", "b"] and isinstance(values, list)
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        conn.execute("SELECT %s::bigint[]", (TextArray(["not a number"]),))  # still typed by Postgres


def test_a_nul_is_refused_before_it_reaches_the_server(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    # Postgres text cannot hold NUL; the server would cut the literal at it.  Refused client-side, a DataError
    # like psycopg's own (the webhook isolates such a row and answers 400).
    with pytest.raises(psycopg.DataError, match="NUL"):
        conn.execute("SELECT %s::text[]", (TextArray(["a\x00b"]),))
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the connection is fine


def test_through_the_hot_path_pipeline(database: Database) -> None:
    with database.tenant_connection(1) as pipeline_conn:
        cursor = pipeline_conn.execute(
            "SELECT array_length(%s::text[], 1), (%s::jsonb[])[1]->>'k'",
            (TextArray(AWKWARD_TEXTS), JsonbArray([json.dumps({"k": 'v "1"'})])),
        )
        assert cursor.fetchone() == (len(AWKWARD_TEXTS), 'v "1"')
