"""The review store on real databases: migrations, idempotent writes, dead letters, reviewers, labels, queue."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from consumers.decode import decode
from consumers.store import DeadLetter, IncomingEvent, Position, QueueFilter, open_store, queries
from consumers.store.migrations import MIGRATIONS, applied_versions, migrate
from consumers.store.reviewers import hash_secret, verify_secret
from tests.review_support import make_event


def incoming(event: dict, offset: int = 0) -> IncomingEvent:
    decoded = decode(json.dumps(event).encode())
    assert decoded.event is not None, decoded.reason
    return IncomingEvent(decoded.event, decoded.ts, Position("t", 0, offset))


def test_migrations_are_versioned_and_applied_once(store_info) -> None:
    store, db, schema = store_info
    assert applied_versions(store.engine) == [v for v, _, _ in MIGRATIONS]
    assert migrate(store.engine) == []  # nothing pending
    again = open_store(db, schema=schema)  # a second process starting: no error, nothing re-applied
    assert applied_versions(again.engine) == [1, 2, 3]
    again.dispose()


def test_batch_write_is_idempotent_on_event_id(store) -> None:
    a, b = make_event(), make_event(stage="output", categories=("S10",))
    first = store.write_batch([incoming(a, 0), incoming(b, 1), incoming(a, 2)])
    assert (first.inserted, first.duplicates) == (2, 1)
    replay = store.write_batch([incoming(a, 0), incoming(b, 1)])
    assert (replay.inserted, replay.duplicates) == (0, 2)
    with store.read() as conn:
        assert queries.counts(conn)["events"] == 2
        stored = queries.get_event(conn, b["event_id"])
    assert stored is not None and stored.payload == b


def test_dead_letters_are_unique_per_kafka_position(store) -> None:
    letter = DeadLetter(Position("audit", 3, 17), b"k", b"{not json", "malformed JSON: x")
    assert store.write_batch([], [letter]).dead_letters == 1
    assert store.write_batch([], [letter]).dead_letter_duplicates == 1
    with store.read() as conn:
        [row] = queries.dead_letter_page(conn)
    assert (row["topic"], row["partition"], row["offset"], row["raw"]) == ("audit", 3, 17, "{not json")


def test_decode_reasons() -> None:
    assert decode(b"{oops").reason.startswith("malformed JSON")
    assert decode(b"[1]").reason == "not a JSON object: list"
    assert decode(json.dumps({"schema": "other.v9"}).encode()).reason.startswith("unknown schema: 'other.v9'")
    bad = make_event()
    bad["stage"] = "sideways"
    del bad["tenant"]
    reason = decode(json.dumps(bad).encode()).reason
    assert reason.startswith("schema-invalid:") and "tenant" in reason and "stage" in reason
    bad_ts = make_event(ts="yesterday")
    assert "ts" in decode(json.dumps(bad_ts).encode()).reason
    assert decode(None).reason.startswith("empty message")


def test_reviewer_secrets_are_salted_scrypt_hashes(store) -> None:
    h1, h2 = hash_secret("correct horse battery"), hash_secret("correct horse battery")
    assert h1 != h2 and h1.startswith("scrypt$16384$8$1$") and "correct" not in h1
    assert verify_secret("correct horse battery", h1) and not verify_secret("wrong horse battery", h1)
    secret = store.add_reviewer("alice")
    assert len(secret) >= 24 and store.authenticate("alice", secret)
    assert not store.authenticate("alice", secret + "x") and not store.authenticate("mallory", secret)
    with pytest.raises(ValueError):
        store.add_reviewer("bad name!", "long enough secret")
    with pytest.raises(ValueError):
        store.add_reviewer("bob", "short")


def test_labels_keep_history_and_queue_filters(store) -> None:
    now = datetime.utcnow().replace(microsecond=0)
    events = [
        make_event(tenant="acme", stage="input", action="block", categories=("S1",),
                   ts=(now - timedelta(minutes=30)).isoformat() + "Z"),
        make_event(tenant="globex", stage="output", action="flag", categories=("pii",),
                   verdicts=[{"evaluator": "pii", "version": "1", "safe": False, "categories": ["pii"]}],
                   ts=(now - timedelta(minutes=20)).isoformat() + "Z"),
        make_event(tenant="acme", stage="output", action="block", categories=("S10",),
                   ts=(now - timedelta(minutes=10)).isoformat() + "Z"),
    ]
    store.write_batch([incoming(e, i) for i, e in enumerate(events)])
    first = store.add_label(events[0]["event_id"], "alice", "unsafe", ["S1", "S2"], "clear case")
    store.add_label(events[0]["event_id"], "alice", "not_sure")
    store.add_label(events[0]["event_id"], "bob", "unsafe", ["S1"])
    assert first is not None and first.categories == ["S1", "S2"]
    assert store.add_label("no-such-event", "alice", "unsafe") is None
    with pytest.raises(ValueError):
        store.add_label(events[1]["event_id"], "alice", "maybe")

    stored = store.get_event(events[0]["event_id"])
    assert [(lab.reviewer, lab.label) for lab in stored.labels] == [
        ("alice", "unsafe"), ("alice", "not_sure"), ("bob", "unsafe")]
    assert {k: v.label for k, v in stored.latest_by_reviewer().items()} == {"alice": "not_sure", "bob": "unsafe"}

    def ids(**kw) -> list[str]:
        with store.read() as conn:
            rows, total = queries.queue(conn, QueueFilter(order="newest", **kw), "alice")
        assert total == len(rows)
        return [r.event_id for r in rows]

    e0, e1, e2 = (e["event_id"] for e in events)
    assert ids(status="all") == [e2, e1, e0]  # newest first
    assert ids(status="unreviewed") == [e2, e1]
    assert ids(status="reviewed") == [e0]
    assert ids(status="all", tenant="acme") == [e2, e0]
    assert ids(status="all", stage="output", action="block") == [e2]
    assert ids(status="all", category="pii") == [e1]
    assert ids(status="all", evaluator="pii") == [e1]
    assert ids(status="all", since=now - timedelta(minutes=25), until=now - timedelta(minutes=15)) == [e1]
    with store.read() as conn:
        rows, _ = queries.queue(conn, QueueFilter(status="reviewed"), "alice")
        assert (rows[0].my_label, rows[0].label_count) == ("not_sure", 2)
        middle = queries.get_event(conn, e1)
        assert queries.neighbours(conn, QueueFilter(status="all", order="newest"), middle) == (e2, e0)
        assert queries.facets(conn) == {"tenant": ["acme", "globex"], "category": ["S1", "S10", "pii"],
                                        "evaluator": ["llama_guard", "pii"]}
