from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import Engine

from db.engine import Database, make_engine
from medspa.services import Infrastructure
from tests.support.infra import start_test_infrastructure, stop_test_infrastructure

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def infra() -> Iterator[Infrastructure]:
    infrastructure, data_dir = start_test_infrastructure()
    try:
        yield infrastructure
    finally:
        stop_test_infrastructure(data_dir)


@pytest.fixture(scope="session")
def app_engine(infra: Infrastructure) -> Iterator[Engine]:
    engine = make_engine(infra.database_url, pool_size=4)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def owner_engine(infra: Infrastructure) -> Iterator[Engine]:
    engine = make_engine(infra.migration_database_url, pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def database(app_engine: Engine) -> Database:
    return Database(app_engine)


@pytest.fixture()
def one_connection(infra: Infrastructure) -> Iterator[Database]:
    """A pool of one connection: what a scope hands back is what the next caller gets."""
    engine = make_engine(infra.database_url, pool_size=1, max_overflow=0)
    yield Database(engine)
    engine.dispose()


@pytest.fixture()
def redis_client(infra: Infrastructure) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(infra.redis_url)
    yield client
    client.close()


@pytest.fixture()
def stack(infra: Infrastructure, tmp_path):  # type: ignore[no-untyped-def]
    """The whole service: real app over HTTP, a real Dramatiq worker, fakes only at Twilio/OpenAI."""
    from tests.support.stack import running_stack

    with running_stack(infra, tmp_path) as (running, _container):
        yield running
