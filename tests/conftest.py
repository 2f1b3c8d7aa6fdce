"""Shared fixtures: real servers (Redis, Kafka-protocol broker) started per session or taken from the environment."""

from __future__ import annotations

from collections.abc import Iterator

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


# -- the proxy, for real, on loopback ----------------------------------------------------------------

from evaluators.registry import EVALUATOR_TYPES  # noqa: E402

EVALUATOR_TYPES.setdefault("keyword", "tests.keyword_evaluator:create")


def keyword_settings(tmp_path, policy: dict | None = None, evaluators: dict | None = None, **sections):  # type: ignore[no-untyped-def]
    """Settings using keyword evaluators: 'secret' words block, 'pii' words flag."""
    from proxy.config import Settings

    base_policy = {
        "mode": "enforce",
        "input": {"evaluators": ["secrets", "pii"]},
        "output": {"evaluators": ["secrets", "pii"]},
        "actions": {"secret": "block", "pii": "flag", "default": "block"},
    }
    base_policy.update(policy or {})
    data = {
        "upstream": {"url": "http://127.0.0.1:9", "api_key": "sk-upstream-SECRET-0000", "read_timeout_s": 5},
        "evaluators": evaluators or {
            "secrets": {"type": "keyword", "on_error": "fail_closed",
                        "options": {"words": ["PRIVATE KEY", "hunter2"], "category": "secret"}},
            "pii": {"type": "keyword", "options": {"words": ["@example.com"], "category": "pii"}},
        },
        "policies": {"default": base_policy},
        "audit": {"jsonl_path": str(tmp_path / "audit.jsonl"), "content": "full"},
    }
    data.update(sections)
    return Settings.model_validate(data)
