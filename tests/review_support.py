"""Shared helpers for the review/export/dashboard tests: v1 events, stores (SQLite always, PostgreSQL when
POSTGRES_URL is set, in a schema of its own that is dropped afterwards), a Kafka producer."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from proxy.schemas.events import content_digest, new_event

POSTGRES_URL = os.environ.get("POSTGRES_URL")
STORE_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not POSTGRES_URL, reason="POSTGRES_URL not set (CI sets it: postgresql://postgres@127.0.0.1:5432/test)"))]


def make_event(stage: str = "input", action: str = "block", tenant: str = "acme",
               categories: Sequence[str] = ("S1",), messages: list[dict[str, str]] | None = None,
               completion: str | None = None, content_mode: str = "full",
               verdicts: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """A schema-valid v1 event built with the proxy's own `new_event`."""
    messages = messages if messages is not None else [{"role": "user", "content": "how do I pick a lock?"}]
    if stage == "output" and completion is None:
        completion = "Sure, here is how."
    if verdicts is None:
        verdicts = [{"evaluator": "llama_guard", "version": "3-8b", "safe": not categories,
                     "categories": list(categories), "score": 0.91 if categories else 0.02,
                     "latency_ms": 12.5, "cached": False, "error": None}]
    content: dict[str, Any] = {"mode": content_mode, "sha256": content_digest(messages, completion)}
    if content_mode != "hash":
        content.update(messages=messages, completion=completion)
    base: dict[str, Any] = {
        "request_id": f"req-{uuid.uuid4().hex[:12]}", "tenant": tenant, "policy": "default", "stage": stage,
        "action": action, "mode": "enforce", "route": "/v1/chat/completions", "verdicts": verdicts,
        "categories": list(categories), "model": "llama-3-8b", "upstream": "http://upstream:8000",
        "content": content, "latency_ms": 20.0,
    }
    base.update(fields)
    return new_event(**base)


def open_test_store(kind: str, tmp_path: Path) -> tuple[Any, str, str | None]:
    """(store, db url, schema) for kind sqlite|postgres."""
    from consumers.store import open_store

    if kind == "sqlite":
        db = str(tmp_path / "review.db")
        return open_store(db), db, None
    assert POSTGRES_URL
    schema = f"gs_test_{uuid.uuid4().hex[:10]}"
    _pg_exec(f'CREATE SCHEMA "{schema}"')
    return open_store(POSTGRES_URL, schema=schema), POSTGRES_URL, schema


def drop_test_store(store: Any, schema: str | None) -> None:
    store.dispose()
    if schema:
        _pg_exec(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _pg_exec(sql: str) -> None:
    from sqlalchemy import create_engine, text

    from consumers.store.db import normalize_url

    engine = create_engine(normalize_url(POSTGRES_URL or ""))
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


@pytest.fixture(params=STORE_KINDS)
def store_info(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, str, str | None]]:
    store, db, schema = open_test_store(request.param, tmp_path)
    yield store, db, schema
    drop_test_store(store, schema)


@pytest.fixture
def store(store_info: tuple[Any, str, str | None]) -> Any:
    return store_info[0]


def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes | None]]) -> list[Any]:
    """Send raw (key, value) messages, wait for every ack; returns their RecordMetadata (partition, offset)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    futures = [producer.send(topic, key=key, value=value) for key, value in messages]
    sent = [fut.get(timeout=15) for fut in futures]
    producer.close()
    return sent


def event_message(event: dict[str, Any]) -> tuple[bytes, bytes]:
    return event["request_id"].encode(), json.dumps(event).encode()


#: consumer settings for tests: small group timeouts so joins take ~3 s instead of ~23 s; a poll that kafka-python
#: leaves hanging (consumers/stall.py) is released after 5 s (a healthy one returns within about a second)
FAST_GROUP = dict(session_timeout_ms=2000, heartbeat_interval_ms=400, max_poll_interval_ms=2500, stall_limit_s=5.0,
                  poll_timeout_ms=300)


def drain_review_then_metrics(store: Any, bootstrap: str, topic: str, *, inserted: int, tallies: int,
                              counted: int, timeout_s: float = 30) -> tuple[Any, Any]:
    """Consume the topic into `store` with the review consumer until it inserted `inserted` events and passed over
    `tallies` tallies, then with the metrics consumer until it counted `counted` messages (each within
    `timeout_s`). One consumer at a time: a test polling two in turns can outlast the other's
    max_poll_interval_ms. Returns both consumers (closed) for their counts."""
    from consumers.kafka import KafkaSettings
    from consumers.metrics import MetricsConsumer
    from consumers.review import ReviewConsumer

    group = dict(bootstrap=bootstrap, topic=topic, **FAST_GROUP)
    review = ReviewConsumer(store, KafkaSettings(group_id=f"{topic}-review", **group))
    review.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (review.stats.inserted < inserted or review.tallies < tallies):
            review.poll_once()
    finally:
        review.close()
    metrics = MetricsConsumer(store, KafkaSettings(group_id=f"{topic}-metrics", **group))
    metrics.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and metrics.counted < counted:
            metrics.poll_once()
    finally:
        metrics.close()
    return review, metrics
