"""Missed-call text-back and MMS photos on real Postgres, with Twilio faked at its HTTP API.

- a recorded missed call becomes one queued text through the outbox (and its history message), once per call,
  at most the clinic's daily cap per caller, never to a STOPped number;
- a photo recorded with its message is fetched with the account's credentials and stored in the local media
  store, once; a URL that is not this account's Twilio media is never fetched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from db.engine import Database
from medspa.services import Infrastructure
from medspa.settings import Settings
from tests.fakes.twilio_api import FakeTwilioApi
from tests.support.phones import random_phone
from tests.support.stack import TWILIO_SID, TWILIO_TOKEN, FrozenClock
from worker.container import Container, build_container
from worker.conversations import attach_and_lease
from worker.media import fetch_and_store
from worker.missed_calls import text_back

GLOW = 1
GLOW_NUMBER = "+14155550123"
# A Wednesday afternoon in the clinic's zone (inside quiet hours' allowed window).
AFTERNOON = datetime(2031, 3, 5, 14, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00fake-image-bytes" * 64


def _phone() -> str:
    return random_phone()


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilioApi]:
    with FakeTwilioApi(TWILIO_SID, TWILIO_TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
def env(
    infra: Infrastructure, twilio: FakeTwilioApi, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Container, FrozenClock]]:
    settings = Settings(
        _env_file=None,
        database_url=infra.database_url,
        redis_url=infra.redis_url,
        model_provider="offline",
        local_embeddings=False,
        twilio_account_sid=TWILIO_SID,
        twilio_auth_token=TWILIO_TOKEN,
        twilio_api_base=twilio.base_url,
        media_storage_dir=tmp_path_factory.mktemp("media"),
        media_max_bytes=4096,
        public_base_url="http://127.0.0.1:9",
        worker_threads=2,
    )
    clock = FrozenClock(AFTERNOON)
    container = build_container(settings, clock=clock)
    yield container, clock
    container.close()


def _record(database: Database, source: str, sid: str, sender: str, payload: dict[str, object]) -> int:
    with database.tenant_scope(GLOW) as session:
        return int(
            session.execute(
                text("""INSERT INTO inbox_events (clinic_id, source, provider_event_id, sender_key, payload, trace_id)
                        VALUES (1, :source, :sid, :sender, CAST(:payload AS jsonb), 'trace') RETURNING id"""),
                {"source": source, "sid": sid, "sender": sender, "payload": json.dumps(payload)},
            ).scalar_one()
        )


def _missed_call(database: Database, caller: str, sid: str | None = None) -> int:
    payload = {"from": caller, "to": GLOW_NUMBER, "reason": "no-answer"}
    return _record(database, "voice", sid or "CA" + uuid.uuid4().hex, f"voice:{caller}", payload)


def _outbox(database: Database, caller: str) -> list[dict[str, object]]:
    with database.tenant_scope(GLOW) as session:
        rows = session.execute(
            text("SELECT kind, status, body, conversation_id, meta FROM outbox WHERE to_address = :p ORDER BY id"),
            {"p": caller},
        ).mappings()
        return [dict(r) for r in rows]


def test_a_missed_call_queues_one_text_in_the_callers_conversation(env):
    container, _ = env
    caller = _phone()
    sid = "CA" + uuid.uuid4().hex
    inbox_id = _missed_call(container.database, caller, sid)

    outcome = text_back(container, GLOW, inbox_id)
    again = text_back(container, GLOW, inbox_id)

    assert outcome.status == "texted" and outcome.outbox_id is not None, outcome
    assert again.status == "done", "the same recorded call is handled once"
    (row,) = _outbox(container.database, caller)
    assert row["kind"] == "missed_call" and row["status"] == "queued"
    assert "Sorry we missed your call" in str(row["body"]) and "Glow MedSpa" in str(row["body"])
    assert row["conversation_id"] == outcome.conversation_id
    with container.database.tenant_scope(GLOW) as session:
        history = session.execute(
            text("SELECT role, body FROM messages WHERE conversation_id = :c"), {"c": outcome.conversation_id}
        ).all()
        event = session.execute(text("SELECT status FROM inbox_events WHERE id = :id"), {"id": inbox_id}).scalar()
        record = session.execute(
            text("SELECT status, reason, outbox_id FROM missed_calls WHERE call_sid = :s"), {"s": sid}
        ).one()
    assert [(r, b) for r, b in history] == [("assistant", row["body"])], "the patient's reply continues this text"
    assert event == "processed"
    assert tuple(record) == ("texted", "no-answer", outcome.outbox_id)


def test_the_daily_cap_holds_a_second_call_the_same_day(env):
    container, clock = env
    caller = _phone()
    first = text_back(container, GLOW, _missed_call(container.database, caller))
    second = text_back(container, GLOW, _missed_call(container.database, caller))
    assert (first.status, second.status, second.skip_reason) == ("texted", "skipped", "daily_cap")
    assert len(_outbox(container.database, caller)) == 1

    clock.set(datetime(2031, 3, 6, 10, 0, tzinfo=ZoneInfo("America/Los_Angeles")))  # the next local day
    try:
        third = text_back(container, GLOW, _missed_call(container.database, caller))
    finally:
        clock.set(AFTERNOON)
    assert third.status == "texted"
    assert len(_outbox(container.database, caller)) == 2


def test_a_stopped_number_gets_no_text(env):
    container, _ = env
    caller = _phone()
    with container.database.tenant_scope(GLOW) as session:
        session.execute(
            text("INSERT INTO clients (clinic_id, phone_e164, consent_state) VALUES (1, :p, 'opted_out')"),
            {"p": caller},
        )
    outcome = text_back(container, GLOW, _missed_call(container.database, caller))
    assert (outcome.status, outcome.skip_reason) == ("skipped", "opted_out")
    assert _outbox(container.database, caller) == []


def _photo_message(container: Container, urls: list[str], body: str = "") -> list[int]:
    caller = _phone()
    payload = {
        "from": caller,
        "to": GLOW_NUMBER,
        "body": body,
        "num_media": str(len(urls)),
        "media": [{"url": u, "content_type": "image/png"} for u in urls],
    }
    inbox_id = _record(container.database, "sms", "MM" + uuid.uuid4().hex, f"sms:{caller}", payload)
    with container.database.tenant_connection(GLOW) as conn:
        attached = attach_and_lease(
            conn,
            GLOW,
            inbox_id,
            clinic_name="Glow MedSpa",
            clinic_phone="+14155550100",
            owner="test",
            lease_seconds=45,
            history_window=20,
            quarantine_after=5,
        )
    assert attached is not None
    return attached.media_ids


def _media_row(database: Database, media_id: int) -> dict[str, object]:
    with database.tenant_scope(GLOW) as session:
        row = session.execute(
            text("""SELECT mm.status, mm.storage_key, mm.size_bytes, mm.position, mm.last_error, m.meta
                    FROM message_media mm JOIN messages m ON m.id = mm.message_id WHERE mm.id = :id"""),
            {"id": media_id},
        ).mappings()
        return dict(row.one())


def test_a_photo_is_fetched_with_the_account_credentials_and_stored_once(env, twilio):
    container, _ = env
    url = twilio.add_media("image/png", PNG)
    (media_id,) = _photo_message(container, [url])
    fetcher, store = container.media()

    outcome = fetch_and_store(container.database, fetcher, store, GLOW, media_id, max_bytes=4096)
    fetched = len(twilio.requests_to("GET", f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/"))
    again = fetch_and_store(container.database, fetcher, store, GLOW, media_id, max_bytes=4096)

    assert outcome.status == "stored" and again.status == "stored"
    # Stored before (by another worker, say): the second caller still learns where (a vision turn reads it from there).
    assert again.storage_key == outcome.storage_key and outcome.storage_key
    assert len(twilio.requests_to("GET", f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/")) == fetched == 1
    row = _media_row(container.database, media_id)
    assert row["status"] == "stored" and row["size_bytes"] == len(PNG) and row["position"] == 0
    assert dict(row["meta"])["media"] == 1, "the message says it carried a photo"
    assert store.get(str(row["storage_key"])) == PNG
    assert Path(store.location(str(row["storage_key"]))).read_bytes() == PNG
    twilio.assert_clean()


def test_only_this_accounts_twilio_media_urls_are_fetched(env, twilio):
    container, _ = env
    foreign = (
        "https://evil.example/2010-04-01/Accounts/" + TWILIO_SID + "/Messages/MM" + "1" * 32 + "/Media/ME" + "2" * 32
    )
    other_account = twilio.add_media("image/png", PNG).replace(TWILIO_SID, "AC" + "9" * 32)
    too_big = twilio.add_media("image/png", PNG * 10)
    ids = _photo_message(container, [foreign, other_account, too_big])
    fetcher, store = container.media()
    before = len(twilio.requests)

    outcomes = [fetch_and_store(container.database, fetcher, store, GLOW, i, max_bytes=4096) for i in ids]

    assert [o.status for o in outcomes] == ["failed", "failed", "failed"]
    assert len(twilio.requests) - before == 2, (
        "only the too-large photo of this account was requested (and its CDN copy)"
    )
    assert "larger" in str(_media_row(container.database, ids[2])["last_error"])


def test_photos_can_live_in_s3_compatible_storage(env, twilio):
    from tests.fakes.s3_api import FakeS3Api
    from worker.integrations.s3_media import S3MediaStore

    container, _ = env
    with FakeS3Api("clinic-photos", "AKIATEST", "s3-test-secret") as s3:
        store = S3MediaStore(
            bucket="clinic-photos",
            endpoint_url=s3.base_url,
            region="us-east-1",
            access_key_id="AKIATEST",
            secret_access_key="s3-test-secret",
            prefix="media/",
        )
        (media_id,) = _photo_message(container, [twilio.add_media("image/png", PNG)])
        fetcher, _ = container.media()
        outcome = fetch_and_store(container.database, fetcher, store, GLOW, media_id, max_bytes=4096)

        assert outcome.status == "stored" and outcome.storage_key is not None
        assert s3.objects[f"media/{outcome.storage_key}"] == ("image/png", PNG)
        assert store.get(outcome.storage_key) == PNG
        assert store.location(outcome.storage_key) == f"s3://clinic-photos/media/{outcome.storage_key}"
        with pytest.raises(KeyError):
            store.get("1/1/999999.png")
        wrong = S3MediaStore(
            bucket="clinic-photos",
            endpoint_url=s3.base_url,
            region="us-east-1",
            access_key_id="AKIATEST",
            secret_access_key="not-the-secret",
        )
        with pytest.raises(RuntimeError, match="403"):
            wrong.put("1/1/1.png", PNG, "image/png")
        s3.assert_clean()


def test_the_sweeper_finds_unhandled_calls_and_unfetched_photos(env, twilio):
    from worker.sweeper import SweepDeadlines, sweep

    container, _ = env
    call_id = _missed_call(container.database, _phone())
    (media_id,) = _photo_message(container, [twilio.add_media("image/png", PNG)])
    with container.database.tenant_scope(GLOW) as session:  # as if recorded a minute ago and never enqueued
        session.execute(
            text("UPDATE inbox_events SET received_at = now() - interval '1 minute' WHERE id = :id"), {"id": call_id}
        )
        session.execute(
            text("UPDATE message_media SET created_at = now() - interval '1 minute' WHERE id = :id"), {"id": media_id}
        )
    enqueued: list[tuple[str, int, int]] = []
    sweep(container.database, lambda kind, clinic, item: enqueued.append((kind, clinic, item)), SweepDeadlines(30, 30))
    assert ("missed_call", GLOW, call_id) in enqueued
    assert ("media", GLOW, media_id) in enqueued
    again: list[tuple[str, int, int]] = []
    sweep(container.database, lambda kind, clinic, item: again.append((kind, clinic, item)), SweepDeadlines(30, 30))
    assert ("missed_call", GLOW, call_id) not in again, "at most once per deadline"
