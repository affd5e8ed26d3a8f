"""The live inbox's publisher (worker/live_inbox.py): events only while a console watches the clinic, the check
cached per process, ids and urgency only, and a Redis failure never reaches the turn."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from domain.conversation import Handoff
from worker import live_inbox


@dataclass
class FakeRedis:
    keys: set[str] = field(default_factory=set)
    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    exists_calls: int = 0
    broken: bool = False

    def exists(self, key: str) -> int:
        self.exists_calls += 1
        if self.broken:
            raise ConnectionError("down")
        return int(key in self.keys)

    def xadd(self, name: str, fields: Any, *, maxlen: int | None = None, approximate: bool = True) -> str:
        if self.broken:
            raise ConnectionError("down")
        self.entries.append((name, fields))
        return "1-0"


@dataclass
class FakeContainer:
    redis: FakeRedis


def test_turn_events_are_published_only_while_someone_watches_and_the_check_is_cached():
    clinic_id = 987_001
    container = FakeContainer(FakeRedis())
    for _ in range(3):
        live_inbox.announce_turn(container, clinic_id, 5, None)
    assert container.redis.entries == [] and container.redis.exists_calls == 1, "a 'no' is cached for a second"

    watched = FakeContainer(FakeRedis(keys={live_inbox.listening_key(987_002)}))
    live_inbox.announce_turn(watched, 987_002, 7, Handoff("patient asked for a person", "urgent"))
    live_inbox.announce_turn(watched, 987_002, 8, None)
    assert watched.redis.exists_calls == 1
    assert [(k, json.loads(f["data"])) for k, f in watched.redis.entries] == [
        ("console:inbox:987002", {"kind": "handoff", "conversation_id": 7, "urgency": "urgent"}),
        ("console:inbox:987002", {"kind": "message", "conversation_id": 8, "urgency": None}),
    ]
    assert "person" not in json.dumps(watched.redis.entries), "no reasons or bodies in events"


def test_a_redis_failure_never_reaches_the_turn():
    broken = FakeContainer(FakeRedis(broken=True))
    live_inbox.announce_turn(broken, 987_003, 9, None)  # fails open: the check says "publish", the publish fails
    assert broken.redis.entries == []
