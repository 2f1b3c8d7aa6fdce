"""Shared fixtures: real servers (Redis, Kafka-protocol broker) started per session or taken from the environment."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests import services

#: fixtures of the review/export/dashboard tests (store on SQLite and, with POSTGRES_URL, PostgreSQL)
pytest_plugins = ["tests.review_support"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[services.ManagedServer | None]:
    """A redis-server we own (stoppable), or None when REDIS_URL points at an existing one."""
    if services.env_redis_url():
        yield None
        return
    server = services.start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: services.ManagedServer | None) -> str:
    if redis_server is None:
        return services.env_redis_url() or ""
    return f"redis://127.0.0.1:{redis_server.port}/0"


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[services.ManagedServer | None]:
    """A tansu broker we own (stoppable), or None when KAFKA_BOOTSTRAP points at an existing one."""
    if services.env_kafka_bootstrap():
        yield None
        return
    server = services.start_kafka()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: services.ManagedServer | None) -> str:
    if kafka_server is None:
        return services.env_kafka_bootstrap() or ""
    return f"127.0.0.1:{kafka_server.port}"


@pytest.fixture
def topic() -> str:
    return services.unique_name("gs-test")
