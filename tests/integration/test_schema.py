"""Foundation: migrations, the no-double-booking constraint, row-level security, seed data, search indexes."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError

from db.engine import Database, make_engine
from db.models import TENANT_TABLES, Base
from medspa.services import downgrade, load_seed, migrate
from worker.automations.rules import dedupe_key


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture()
def scratch_database(infra):
    """An empty database on the same server, dropped afterwards."""
    name = "scratch_" + uuid.uuid4().hex[:8]
    admin = _libpq(infra.migration_database_url).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = infra.migration_database_url.rsplit("/", 1)[0] + "/" + name
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_migrations_round_trip_and_agree_with_the_models(scratch_database):
    migrate(scratch_database)
    downgrade(scratch_database, "base")
    engine = create_engine(scratch_database)
    with engine.connect() as conn:
        tables = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
        ).scalar()
    assert tables == 0
    migrate(scratch_database)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        extensions = set(conn.execute(text("SELECT extname FROM pg_extension")).scalars())
        indexes = dict(
            conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'kb_chunks'")).all()
        )
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"
    assert {"vector", "btree_gist", "pg_trgm"} <= extensions
    assert "USING hnsw" in indexes["ix_kb_chunks_embedding_hnsw"]
    assert "USING gin" in indexes["ix_kb_chunks_tsv"]


_TOOL_CALLS = [
    ("call_1", "search_availability", {"service": "botox"}, {"slots": 2}, True, 3),
    ("call_2", "book_appointment", {"slot": "10:00"}, {"error": "taken"}, False, 7),
]


def _add_conversation(conn, clinic: int) -> int:
    """A client and their SMS conversation, in this transaction's clinic scope; returns the conversation's id."""
    conn.execute(text("SELECT set_config('app.clinic_id', :c, true)"), {"c": str(clinic)})
    client = conn.execute(
        text("INSERT INTO clients (clinic_id, phone_e164) VALUES (:c, '+16285550101') RETURNING id"), {"c": clinic}
    ).scalar()
    return int(
        conn.execute(
            text("INSERT INTO conversations (clinic_id, client_id, channel) VALUES (:c, :cl, 'sms') RETURNING id"),
            {"c": clinic, "cl": client},
        ).scalar()
    )


def _add_turn_with_tool_calls(conn, clinic: int) -> int:
    """At revision 0019: a client, their conversation and one turn with ``_TOOL_CALLS``; returns the turn's id."""
    conversation = _add_conversation(conn, clinic)
    turn = conn.execute(
        text(
            """INSERT INTO turns (clinic_id, conversation_id, first_seq, last_seq, state_before, state_after, outcome,
                                  started_at)
               VALUES (:c, :v, 1, 1, 'idle', 'idle', 'replied', now()) RETURNING id"""
        ),
        {"c": clinic, "v": conversation},
    ).scalar()
    for call_id, name, arguments, result, ok, latency in _TOOL_CALLS:
        conn.execute(
            text(
                """INSERT INTO tool_calls (clinic_id, turn_id, call_id, name, arguments, result, ok, latency_ms)
                   VALUES (:c, :t, :id, :name, CAST(:a AS jsonb), CAST(:r AS jsonb), :ok, :ms)"""
            ),
            {"c": clinic, "t": turn, "id": call_id, "name": name, "a": json.dumps(arguments)}
            | {"r": json.dumps(result), "ok": ok, "ms": latency},
        )
    return int(turn)


def test_migration_0020_moves_each_turns_tool_calls_onto_it_in_order_and_back(scratch_database):
    migrate(scratch_database, "0019")
    load_seed(scratch_database)
    engine = create_engine(scratch_database)
    scope = "SELECT set_config('app.clinic_id', :c, true)"
    with engine.begin() as conn:
        clinic = conn.execute(text("SELECT min(id) FROM clinics")).scalar()
        with_calls = _add_turn_with_tool_calls(conn, clinic)
        without = conn.execute(
            text(
                """INSERT INTO turns (clinic_id, conversation_id, first_seq, last_seq, state_before, state_after,
                                      outcome, started_at)
                   SELECT clinic_id, conversation_id, 2, 2, 'idle', 'idle', 'replied', now() FROM turns WHERE id = :t
                   RETURNING id"""
            ),
            {"t": with_calls},
        ).scalar()
        turns = [with_calls, without]

    migrate(scratch_database)
    with engine.begin() as conn:
        conn.execute(text(scope), {"c": str(clinic)})
        on_turns = dict(conn.execute(text("SELECT id, tool_calls FROM turns ORDER BY id")).all())
        tables = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    assert "tool_calls" not in tables
    keys = ("call_id", "name", "arguments", "result", "ok", "latency_ms")
    assert on_turns == {turns[0]: [dict(zip(keys, call, strict=True)) for call in _TOOL_CALLS], turns[1]: []}

    downgrade(scratch_database, "0019")
    with engine.begin() as conn:
        conn.execute(text(scope), {"c": str(clinic)})
        rows = conn.execute(
            text(
                "SELECT call_id, name, arguments, result, ok, latency_ms, turn_id, clinic_id FROM tool_calls ORDER BY id"
            )
        ).all()
        forced = conn.execute(text("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'tool_calls'")).scalar()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(*call, turns[0], clinic) for call in _TOOL_CALLS]
    assert forced is True


@contextlib.contextmanager
def _as_plain_owner(scratch_database: str, engine: Engine, tables: Sequence[str]) -> Iterator[str]:
    """A login role that is neither a superuser nor BYPASSRLS, made the owner of ``tables`` (and the migration
    table): yields the URL to migrate as it, and drops it afterwards.  FORCE ROW LEVEL SECURITY binds such an
    owner — this suite's own owner is a superuser, whom it does not."""
    role = "owner_" + uuid.uuid4().hex[:8]
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS'))
            conn.execute(text(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"'))
            for table in (*tables, "alembic_version"):
                conn.execute(text(f'ALTER TABLE {table} OWNER TO "{role}"'))
        user = scratch_database.split("://", 1)[1].split("@", 1)[0]
        yield scratch_database.replace(f"://{user}@", f"://{role}@", 1)
    finally:
        with engine.begin() as conn:
            if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar():
                conn.execute(text(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER'))
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))


def test_migration_0020_copies_the_calls_when_the_owner_is_not_a_superuser(scratch_database):
    # Run as a plain owner, a copy that did not lift FORCE ROW LEVEL SECURITY would see no rows and move nothing.
    migrate(scratch_database, "0019")
    load_seed(scratch_database)
    engine = create_engine(scratch_database)
    try:
        with engine.begin() as conn:
            clinic = conn.execute(text("SELECT min(id) FROM clinics")).scalar()
            turn = _add_turn_with_tool_calls(conn, clinic)
        with _as_plain_owner(scratch_database, engine, ("turns", "tool_calls")) as owner_url:
            migrate(owner_url, "0020")
        with engine.begin() as conn:
            calls = conn.execute(text("SELECT tool_calls FROM turns WHERE id = :t"), {"t": turn}).scalar()
            forced = conn.execute(text("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'turns'")).scalar()
        assert [c["call_id"] for c in calls] == ["call_1", "call_2"]
        assert forced is True  # lifted for the copy only
    finally:
        engine.dispose()


def test_migration_0022_deletes_the_transcript_copies_a_plain_owner_could_not_see_and_checks_direction(
    scratch_database,
):
    # 0018's plain DELETE ran under FORCE ROW LEVEL SECURITY with no clinic in scope: for an owner that is not a
    # superuser it removed nothing, and the copies stayed in the history a turn reads.  0022 runs as such an owner.
    migrate(scratch_database, "0021")
    load_seed(scratch_database)
    engine = create_engine(scratch_database)
    insert = """INSERT INTO messages (clinic_id, conversation_id, direction, role, body, channel)
                VALUES (:c, :v, :d, :r, :b, 'sms') RETURNING id"""
    try:
        with engine.begin() as conn:
            clinic = conn.execute(text("SELECT min(id) FROM clinics")).scalar()
            conversation = _add_conversation(conn, clinic)
            kept = [
                conn.execute(text(insert), {"c": clinic, "v": conversation, "d": d, "r": r, "b": b}).scalar()
                for d, r, b in (("inbound", "user", "is botox ok?"), ("outbound", "assistant", "It is."))
            ]
            for r, b in (("assistant", ""), ("tool", '{"ok": true}'), ("assistant", "It is.")):
                conn.execute(text(insert), {"c": clinic, "v": conversation, "d": "internal", "r": r, "b": b})
        with _as_plain_owner(scratch_database, engine, ("messages",)) as owner_url:
            migrate(owner_url, "0022")
        with engine.begin() as conn:
            left = conn.execute(text("SELECT id FROM messages ORDER BY id")).scalars().all()
            forced = conn.execute(text("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'messages'")).scalar()
            with pytest.raises(IntegrityError, match="ck_messages_direction_valid"), conn.begin_nested():
                conn.execute(text(insert), {"c": clinic, "v": conversation, "d": "internal", "r": "tool", "b": "x"})
        assert left == kept
        assert forced is True  # lifted for the delete only
    finally:
        engine.dispose()


def test_migration_0024_keys_the_texts_naming_a_coming_visits_time_by_its_start_and_back(scratch_database):
    # Keyed per appointment only, a reminder already sent would have no key under the new scheme: the first scan
    # after the deploy would text the patient again.  0024 rekeys those rows with their visit's start (the key the
    # scan now looks for), as a plain owner under FORCE ROW LEVEL SECURITY; texts about a visit that is over, and
    # texts that never name the time, keep their key.
    migrate(scratch_database, "0023")
    load_seed(scratch_database)
    engine = create_engine(scratch_database)
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    past = ahead - timedelta(days=12)
    outbox = """INSERT INTO outbox (clinic_id, channel, kind, to_address, body, status, dedupe_key, meta)
                VALUES (:c, 'sms', 'automation', '+1', 'x', 'sent', :k, CAST(:m AS jsonb)) RETURNING id"""
    try:
        with engine.begin() as conn:
            clinic = conn.execute(text("SELECT min(id) FROM clinics")).scalar()
            provider = conn.execute(text("SELECT min(id) FROM providers WHERE clinic_id = :c"), {"c": clinic}).scalar()
            visits = {
                start: conn.execute(
                    text(
                        """INSERT INTO appointments (clinic_id, provider_id, starts_at, ends_at, blocked_until, status)
                           VALUES (:c, :p, :s, :s + interval '1 hour', :s + interval '1 hour', 'booked') RETURNING id"""
                    ),
                    {"c": clinic, "p": provider, "s": start},
                ).scalar()
                for start in (ahead, past)
            }
            rows = {
                (kind, start): conn.execute(
                    text(outbox),
                    {
                        "c": clinic,
                        "k": f"auto:{kind}:appt:{visits[start]}",
                        "m": json.dumps({"automation": kind, "appointment_id": visits[start]}),
                    },
                ).scalar()
                for kind, start in (
                    ("reminder_24h", ahead),
                    ("reminder_2h", ahead),
                    ("confirmation", ahead),
                    ("deposit_reminder", ahead),
                    ("aftercare", ahead),
                    ("reminder_24h", past),
                )
            }
        legacy = {row: f"auto:{kind}:appt:{visits[start]}" for (kind, start), row in rows.items()}
        rekeyed = {
            row: dedupe_key(kind, visits[start], start) if start == ahead else legacy[row]
            for (kind, start), row in rows.items()
        }

        def keys() -> dict[int, str]:
            with engine.begin() as conn:
                return dict(
                    conn.execute(
                        text("SELECT id, dedupe_key FROM outbox WHERE id = ANY(:ids)"), {"ids": list(rows.values())}
                    ).all()
                )

        with _as_plain_owner(scratch_database, engine, ("outbox", "appointments")) as owner_url:
            migrate(owner_url, "0024")
        assert keys() == rekeyed
        assert rekeyed[rows["reminder_24h", ahead]].endswith(":at:" + ahead.strftime("%Y%m%dT%H%M%SZ"))
        assert rekeyed[rows["aftercare", ahead]] == legacy[rows["aftercare", ahead]]  # names no time
        with engine.begin() as conn:
            forced = conn.execute(
                text("SELECT bool_and(relforcerowsecurity) FROM pg_class WHERE relname IN ('outbox', 'appointments')")
            ).scalar()
            # The visit was moved since and reminded for its new time: a downgrade gives the one-per-visit key to
            # that newest row (the older keeps a key the earlier code never looks for).
            moved = conn.execute(
                text(outbox),
                {
                    "c": clinic,
                    "k": dedupe_key("reminder_24h", visits[ahead], ahead + timedelta(hours=3)),
                    "m": json.dumps({"automation": "reminder_24h", "appointment_id": visits[ahead]}),
                },
            ).scalar()
        assert forced is True  # lifted for the rekeying only
        rows["moved", ahead] = moved
        downgrade(scratch_database, "0023")
        assert keys() == {
            **legacy,
            rows["reminder_24h", ahead]: rekeyed[rows["reminder_24h", ahead]],
            moved: legacy[rows["reminder_24h", ahead]],
        }
    finally:
        engine.dispose()


# ------------------------------------------------------------------ exclusion constraint
def _insert_appointment(session, clinic_id, provider_id, start, minutes=60, status="booked"):
    session.execute(
        text(
            """INSERT INTO appointments (clinic_id, provider_id, starts_at, ends_at, blocked_until, status)
               VALUES (:c, :p, :s, :e, :e, :status)"""
        ),
        {"c": clinic_id, "p": provider_id, "s": start, "e": start + timedelta(minutes=minutes), "status": status},
    )


def _providers(database: Database, clinic_id: int) -> list[int]:
    with database.tenant_scope(clinic_id) as session:
        return list(session.execute(text("SELECT id FROM providers ORDER BY id")).scalars())


def test_exclusion_constraint_rejects_overlap_but_allows_back_to_back_and_other_providers(database):
    first, second = _providers(database, 1)[:2]
    start = datetime(2031, 3, 3, 17, 0, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 300)
    with database.tenant_scope(1) as session:
        _insert_appointment(session, 1, first, start)
    with pytest.raises(IntegrityError) as caught, database.tenant_scope(1) as session:
        _insert_appointment(session, 1, first, start + timedelta(minutes=30))
    assert isinstance(caught.value.orig, psycopg.errors.ExclusionViolation)
    with database.tenant_scope(1) as session:
        _insert_appointment(session, 1, first, start + timedelta(minutes=60))  # back to back
        _insert_appointment(session, 1, second, start + timedelta(minutes=15))  # another provider
        _insert_appointment(session, 1, first, start + timedelta(minutes=10), status="cancelled")  # not live


def test_concurrent_bookings_for_one_slot_give_one_booking(database):
    provider = _providers(database, 1)[0]
    start = datetime(2032, 5, 5, 18, 0, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 300)
    import threading

    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            with database.tenant_scope(1) as session:
                _insert_appointment(session, 1, provider, start)
            outcomes.append("booked")
        except IntegrityError:
            outcomes.append("rejected")

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["booked"] + ["rejected"] * 5


# ------------------------------------------------------------------ row-level security
def test_app_role_is_neither_owner_nor_bypassrls(app_engine):
    with app_engine.connect() as conn:
        role = conn.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")).one()
        owned = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user")
        ).scalar()
        forced = dict(
            conn.execute(
                text("SELECT relname, relforcerowsecurity AND relrowsecurity FROM pg_class WHERE relname = ANY(:t)"),
                {"t": list(TENANT_TABLES)},
            ).all()
        )
    assert role == (False, False)
    assert owned == 0
    assert forced == {name: True for name in TENANT_TABLES}


def test_clinic_a_cannot_read_or_write_clinic_b(database):
    with database.tenant_scope(1) as session:
        clinics_seen = set(session.execute(text("SELECT DISTINCT clinic_id FROM clients")).scalars())
        harbor_rows = session.execute(text("SELECT count(*) FROM services WHERE clinic_id = 2")).scalar()
        updated = session.execute(text("UPDATE clients SET notes = 'x' WHERE clinic_id = 2")).rowcount
        deleted = session.execute(text("DELETE FROM kb_documents WHERE clinic_id = 2")).rowcount
    assert clinics_seen == {1}
    assert harbor_rows == 0
    assert updated == 0 and deleted == 0
    with pytest.raises(ProgrammingError) as caught, database.tenant_scope(1) as session:
        session.execute(text("INSERT INTO clients (clinic_id, phone_e164) VALUES (2, '+12125550999')"))
    assert "row-level security" in str(caught.value)
    with database.tenant_scope(2) as session:
        own = session.execute(text("SELECT count(*) FROM clients")).scalar()
        foreign = session.execute(text("SELECT count(*) FROM clients WHERE clinic_id <> 2")).scalar()
    assert own >= 3 and foreign == 0


def test_unset_clinic_means_no_rows_and_the_app_role_cannot_bypass(infra, app_engine):
    db = Database(app_engine)
    with db.directory_scope() as session:
        assert session.execute(text("SELECT count(*) FROM clients")).scalar() == 0
        assert session.execute(text("SELECT count(*) FROM clinics")).scalar() >= 2  # the directory stays readable
    # A setting left over from a previous transaction on the same pooled connection is '' — still no rows.
    engine = make_engine(infra.database_url, pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        with conn.begin():
            conn.execute(text("SELECT set_config('app.clinic_id', '1', true)"))
            assert conn.execute(text("SELECT count(*) FROM clients")).scalar() > 0
        with conn.begin():
            assert conn.execute(text("SELECT count(*) FROM clients")).scalar() == 0
        with pytest.raises(DBAPIError), conn.begin():
            conn.execute(text("SET LOCAL row_security = off"))
            conn.execute(text("SELECT count(*) FROM clients"))
        with pytest.raises(ProgrammingError), conn.begin():
            conn.execute(text("ALTER TABLE clients DISABLE ROW LEVEL SECURITY"))
        with pytest.raises(ProgrammingError), conn.begin():
            conn.execute(
                text(
                    "INSERT INTO clinics (slug, name, timezone, public_key, phone) "
                    "VALUES ('evil', 'x', 'UTC', 'evil', '+1')"
                )
            )
    engine.dispose()


# ------------------------------------------------------------------ seed + search
def test_seed_loads_twice_without_error_or_duplicates(infra, owner_engine):
    def counts() -> dict[str, int]:
        with owner_engine.connect() as conn:
            return {
                t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                for t in (
                    "clinics",
                    "providers",
                    "services",
                    "kb_documents",
                    "kb_chunks",
                    "automations",
                    "consent_events",
                )
            }

    before = counts()
    load_seed(infra.migration_database_url)
    load_seed(infra.migration_database_url)
    after = counts()
    assert after == before
    assert before["kb_documents"] >= 25 + 3


def test_full_text_query_finds_the_parking_article(database):
    with database.tenant_scope(1) as session:
        slugs = (
            session.execute(
                text(
                    """SELECT d.slug FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id
               WHERE c.tsv @@ websearch_to_tsquery('english', 'where do I park')
               ORDER BY ts_rank(c.tsv, websearch_to_tsquery('english', 'where do I park')) DESC"""
                )
            )
            .scalars()
            .all()
        )
    assert slugs and slugs[0] == "location-parking"


def test_hnsw_vector_query_finds_the_comfort_article(database):
    from worker.integrations.embedders import LocalMiniLMEmbedder
    from worker.knowledge import reindex_missing_embeddings

    embedder = LocalMiniLMEmbedder()
    reindex_missing_embeddings(database, 1, embedder)
    query = "is it painful?"
    vector = embedder.embed([query])[0]
    with database.tenant_scope(1) as session:
        # 60 chunks: the planner would rather sort; make it use the ordered HNSW scan it would use at scale.
        session.execute(text("SET LOCAL enable_seqscan = off"))
        session.execute(text("SET LOCAL enable_sort = off"))
        plan = "\n".join(
            session.execute(
                text("EXPLAIN SELECT id FROM kb_chunks ORDER BY embedding <=> CAST(:v AS vector) LIMIT 3"),
                {"v": str(vector)},
            ).scalars()
        )
        top = session.execute(
            text("""SELECT d.slug FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id
                    ORDER BY c.embedding <=> CAST(:v AS vector) LIMIT 1"""),
            {"v": str(vector)},
        ).scalar()
    assert "ix_kb_chunks_embedding_hnsw" in plan
    assert top == "comfort-numbing"
