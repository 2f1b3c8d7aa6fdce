"""Metrics consumer (real broker, real DB: exactly once across a crash) and the ops dashboard page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from consumers.dashboard import create_app
from consumers.decode import parse_ts
from consumers.kafka import KafkaSettings
from consumers.metrics import MetricsConsumer, aggregate, write_aggregates
from consumers.store import tables as t
from tests.review_support import FAST_GROUP, event_message, make_event, produce
from tests.test_review_store import incoming

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def iso(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def lg(safe: bool, error: str | None = None, cached: bool = False) -> dict[str, Any]:
    return {"evaluator": "llama_guard", "version": "3", "safe": safe, "categories": [] if safe else ["S1"],
            "score": 0.1 if safe else 0.9, "latency_ms": 10.0, "cached": cached, "error": error}


def rules(safe: bool) -> dict[str, Any]:
    return {"evaluator": "pii", "version": "1", "safe": safe, "categories": [] if safe else ["pii"],
            "latency_ms": 0.5}


def traffic() -> list[dict[str, Any]]:
    events = []
    for i in range(24):
        blocked = i % 3 == 0
        events.append(make_event(
            tenant=("acme", "globex")[i % 2], stage=("input", "output")[i % 2],
            action="block" if blocked else ("flag" if i % 3 == 1 else "allow"),
            categories=("S1", "pii") if blocked else (("pii",) if i % 3 == 1 else ()),
            verdicts=[lg(not blocked, error="timeout" if i % 8 == 5 else None, cached=i % 4 == 0),
                      rules(not (blocked or i % 3 == 1))],
            ts=iso(i % 5)))
    return events


def table_rows(store: Any) -> dict[str, set]:
    with store.read() as conn:
        return {
            "events": {tuple(r) for r in conn.execute(select(t.metric_events))},
            "categories": {tuple(r) for r in conn.execute(select(t.metric_categories))},
            "evaluators": {tuple(r) for r in conn.execute(select(t.metric_evaluators))},
        }


def expected_rows(events: list[dict[str, Any]]) -> dict[str, set]:
    agg = aggregate((e, parse_ts(e["ts"])) for e in events)
    return {
        "events": {(*k, n) for k, n in agg.events.items()},
        "categories": {(*k, n) for k, n in agg.categories.items()},
        "evaluators": {(*k, *(int(x) for x in v[:4]), v[4]) for k, v in agg.evaluators.items()},
    }


class Crash(Exception):
    pass


def test_metrics_exactly_once_across_a_crash(store, kafka_bootstrap, topic) -> None:
    events = traffic()
    produce(kafka_bootstrap, topic, [event_message(e) for e in events] + [(b"x", b"not json")])
    settings = KafkaSettings(bootstrap=kafka_bootstrap, topic=topic, group_id=f"{topic}-metrics",
                             max_poll_records=5, **FAST_GROUP)

    def crash(counted: int) -> None:
        raise Crash  # after the DB commit, before the Kafka offset commit

    first = MetricsConsumer(store, settings, after_write=crash)
    first.start()
    with pytest.raises(Crash):
        for _ in range(100):
            first.poll_once()
    first.close()
    assert 0 < first.counted < len(events)

    second = MetricsConsumer(store, settings)
    second.start()
    try:
        for _ in range(200):
            if first.counted + second.counted + first.invalid + second.invalid >= len(events) + 1:
                break
            second.poll_once()
    finally:
        second.close()
    assert first.counted + second.counted == len(events) and first.invalid + second.invalid == 1
    assert table_rows(store) == expected_rows(events)  # nothing counted twice


@pytest.fixture
def dashboard_store(store) -> Any:
    events = traffic()
    events.append(make_event(tenant="<script>x</script>", action="block", ts=iso(2)))
    with store.write() as conn:
        write_aggregates(conn, aggregate((e, parse_ts(e["ts"])) for e in events))
    violent = make_event(action="block", categories=("S1",), verdicts=[lg(False), rules(True)], ts=iso(2))
    reviewed = events[:6] + [violent]
    store.write_batch([incoming(e, i) for i, e in enumerate(reviewed)])
    store.add_label(reviewed[0]["event_id"], "alice", "unsafe", ["S1"])   # blocked for S1 and pii: S1 only, so
    store.add_label(reviewed[0]["event_id"], "bob", "unsafe", ["S1"])     # llama_guard agrees, pii's flag is wrong
    store.add_label(reviewed[3]["event_id"], "alice", "safe")              # blocked: evaluators disagree
    store.add_label(reviewed[3]["event_id"], "bob", "unsafe", ["S1"])      # reviewers disagree too
    store.add_label(reviewed[1]["event_id"], "alice", "safe")              # flagged by pii only: pii disagrees
    store.add_label(violent["event_id"], "alice", "unsafe", ["S1"])        # pii let it through: not its category,
    return store                                                           # so pii agrees (it was 'no' before)


async def test_dashboard_page_and_api(dashboard_store) -> None:
    async with TestClient(TestServer(create_app(dashboard_store))) as client:
        api = await (await client.get("/api/summary?minutes=15")).json()
        page = await client.get("/?minutes=15")
        html = await page.text()
    assert sum(sum(v) for v in api["blocks"].values()) == 9  # 8 blocked in traffic() + 1
    assert api["actions"] == {"block": 9, "flag": 8, "allow": 8}
    assert api["top_categories"][:2] == [["pii", 16], ["S1", 9]]
    lg_row = next(e for e in api["evaluators"] if e["evaluator"] == "llama_guard")
    assert lg_row["calls"] == 25 and lg_row["errors"] == 3 and abs(lg_row["error_rate"] - 3 / 25) < 1e-9
    assert api["backlog"]["total"] == 3 and dict(api["backlog"]["by_age"])["< 1 h"] == 3
    agree = {a["evaluator"]: (a["n"], a["agree"], a["flagged"], a["confirmed"]) for a in api["agreement"]["evaluators"]}
    assert agree == {"llama_guard": (3, 3, 2, 2), "pii": (3, 1, 2, 0)}
    scopes = {a["evaluator"]: a["scope"] for a in api["agreement"]["evaluators"]}
    assert scopes["pii"] == ["pii"] and len(scopes["llama_guard"]) == 14  # an S-code stands for the taxonomy
    assert api["agreement"]["reviewers"] == {"n": 2, "agree": 1, "rate": 0.5}
    assert page.status == 200 and html.count("<svg") == 6
    assert "on the categories each can name" in html and "S1-S14" in html
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert 'id="n-block">9<' in html and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert json.loads(json.dumps(api))  # plain JSON


def test_aggregate_keys_longer_than_their_columns_are_cut(store) -> None:
    """PostgreSQL refuses strings past a VARCHAR's width (SQLite stores them): keys are cut to fit."""
    event = make_event(categories=("x" * 100,), tenant="t" * 300)
    event["verdicts"][0]["evaluator"] = "e" * 300
    with store.write() as conn:
        write_aggregates(conn, aggregate([(event, parse_ts(event["ts"]))]))
    with store.read() as conn:
        assert conn.execute(select(t.metric_categories.c.category)).scalars().all() == ["x" * 64]
        assert conn.execute(select(t.metric_events.c.tenant)).scalars().all() == ["t" * 256]
        assert conn.execute(select(t.metric_evaluators.c.evaluator)).scalars().all() == ["e" * 256]
