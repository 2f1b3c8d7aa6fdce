"""Review consumer against the real broker and real databases: exactly once, dead letters, offsets after writes."""

from __future__ import annotations

import json
import time
from typing import Any

from consumers.kafka import KafkaSettings
from consumers.review import ReviewConsumer
from consumers.store import queries
from tests.review_support import FAST_GROUP, event_message, make_event, produce


def consume_until(consumer: ReviewConsumer, store: Any, events: int, dead: int, timeout: float = 25.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.poll_once()
        with store.read() as conn:
            counts = queries.counts(conn)
        if counts["events"] >= events and counts["dead_letters"] >= dead:
            return
    raise AssertionError(f"timed out: {counts}")


def started_consumer(store: Any, bootstrap: str, topic: str, **settings: Any) -> ReviewConsumer:
    consumer = ReviewConsumer(store, KafkaSettings(bootstrap=bootstrap, topic=topic, group_id=f"{topic}-g",
                                                   **FAST_GROUP, **settings))
    consumer.start()
    return consumer


def test_events_stored_exactly_once_and_bad_messages_dead_lettered(store, kafka_bootstrap, topic) -> None:
    events = [make_event(tenant=f"t{i % 3}", stage="input" if i % 2 else "output") for i in range(20)]
    bad_schema = make_event()
    bad_schema["stage"] = "sideways"
    messages = [event_message(e) for e in events]
    messages += [event_message(events[0]), event_message(events[7])]  # redelivered duplicates (e.g. spool replay)
    messages += [(b"k1", b"{definitely not json"), (b"k2", json.dumps({"schema": "guardstream.event.v2"}).encode()),
                 event_message(bad_schema), (b"k4", None)]
    sent = produce(kafka_bootstrap, topic, messages)

    consumer = started_consumer(store, kafka_bootstrap, topic, max_poll_records=7)
    try:
        consume_until(consumer, store, events=20, dead=4)
        for _ in range(3):  # nothing more arrives: the duplicates were ignored, not stored
            consumer.poll_once()
        committed = {tp.partition: consumer._consumer.committed(tp) for tp in consumer._consumer.assignment()}
    finally:
        consumer.close()

    with store.read() as conn:
        rows, total = queries.queue(conn, queries.QueueFilter(status="all"), None, limit=100)
        letters = queries.dead_letter_page(conn)
    assert total == 20 and sorted(r.event_id for r in rows) == sorted(e["event_id"] for e in events)
    assert consumer.stats.inserted == 20 and consumer.stats.duplicates == 2
    reasons = sorted(d["reason"].split(":")[0] for d in letters)
    assert reasons == ["empty message (tombstone)", "malformed JSON", "schema-invalid", "unknown schema"]
    raw = {d["key"]: d["raw"] for d in letters}
    assert raw["k1"] == "{definitely not json" and all(d["topic"] == topic for d in letters)
    # offsets were committed after the writes, up to one past the last message of every partition
    ends: dict[int, int] = {}
    for meta in sent:
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    assert {p: c for p, c in committed.items() if c is not None} == ends


def test_store_failure_rewinds_and_retries_the_batch(store, kafka_bootstrap, topic, monkeypatch) -> None:
    """A failed DB transaction commits no offsets: the same records are read again and stored once."""
    from sqlalchemy.exc import OperationalError

    events = [make_event() for _ in range(6)]
    produce(kafka_bootstrap, topic, [event_message(e) for e in events])
    real_write = store.write_batch
    calls: list[int] = []

    def flaky_write(items, dead=(), comparisons=()):
        calls.append(len(items))
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real_write(items, dead, comparisons)

    monkeypatch.setattr(store, "write_batch", flaky_write)
    consumer = started_consumer(store, kafka_bootstrap, topic)
    try:
        consume_until(consumer, store, events=6, dead=0)
        assert consumer.state()["last_error"] is None
    finally:
        consumer.close()
    assert calls[0] > 0 and sum(calls[1:]) == 6 and consumer.stats.inserted == 6
    assert consumer.stats.duplicates == 0  # the failed batch was not half-written


def test_hostile_event_content_is_stored_not_a_stalled_consumer(store, kafka_bootstrap, topic) -> None:
    """A client can put NUL characters in a prompt and any model name in a request; the proxy audits both.
    PostgreSQL refused them (text cannot hold NUL; `model` is VARCHAR(256)) and the consumer retried that
    batch forever. Now NUL becomes U+FFFD and long strings are cut to their columns."""
    nul = make_event(tenant="t\x00x", messages=[{"role": "user", "content": "before \x00 after"}])
    long_model = make_event(model="m" * 1000, categories=("c" * 100,))
    produce(kafka_bootstrap, topic, [event_message(nul), event_message(long_model)])
    consumer = started_consumer(store, kafka_bootstrap, topic)
    try:
        consume_until(consumer, store, events=2, dead=0)
        assert consumer.state()["last_error"] is None
    finally:
        consumer.close()
    from sqlalchemy import select

    from consumers.store import tables

    stored = store.get_event(nul["event_id"])
    assert stored.payload["tenant"] == "t\ufffdx"
    assert stored.content["messages"][0]["content"] == "before \ufffd after"
    with store.read() as conn:
        model = conn.execute(select(tables.events.c.model)
                             .where(tables.events.c.event_id == long_model["event_id"])).scalar()
    assert model == "m" * 256


def test_a_record_the_store_refuses_becomes_a_dead_letter(store, kafka_bootstrap, topic, monkeypatch) -> None:
    """A batch the database refuses for its data is written record by record; the record it still refuses
    is kept as a dead letter (raw bytes and the database's reason) and the consumer moves on."""
    from sqlalchemy.exc import DataError

    events = [make_event() for _ in range(5)]
    poison = events[2]["event_id"]
    produce(kafka_bootstrap, topic, [event_message(e) for e in events])
    real_write = store.write_batch

    def refusing_write(items, dead=(), comparisons=()):
        if any(i.event["event_id"] == poison for i in items):
            raise DataError("INSERT", {}, Exception("value too long for type character varying(256)"))
        return real_write(items, dead, comparisons)

    monkeypatch.setattr(store, "write_batch", refusing_write)
    consumer = started_consumer(store, kafka_bootstrap, topic)
    try:
        consume_until(consumer, store, events=4, dead=1)
        committed = sum(consumer._consumer.committed(tp) or 0 for tp in consumer._consumer.assignment())
    finally:
        consumer.close()
    with store.read() as conn:
        letters = queries.dead_letter_page(conn)
    assert len(letters) == 1 and letters[0]["reason"].startswith("store refused: DataError")
    assert json.loads(letters[0]["raw"])["event_id"] == poison
    assert store.get_event(poison) is None and consumer.stats.inserted == 4
    assert committed == 5  # the offsets moved past the refused record
