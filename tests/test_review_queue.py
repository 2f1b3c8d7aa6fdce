"""The review queue ordered by value, on real databases (SQLite always, PostgreSQL when POSTGRES_URL is set):
the value score, snippets with marked findings (hostile text stays text), look-alikes and batch labels,
shadow disagreements, and the migration that brings an older store along."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from consumers.review_ui import create_app
from consumers.review_ui.highlight import highlight
from consumers.store import QueueFilter, queries
from consumers.store import tables as t
from consumers.store.derive import ELLIPSIS, closeness, derive, find_marks, snippet_of
from consumers.store.migrations import migrate
from tests.review_support import make_event
from tests.test_review_store import incoming
from tests.test_review_ui import SECRET, csrf_of, login

NOW = datetime.now(UTC).replace(microsecond=0)


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def scored(score: float, threshold: float | None = 0.5, category: str = "S1", name: str = "llama_guard",
           safe: bool | None = None) -> dict[str, Any]:
    unsafe = score >= (threshold or 0.5) if safe is None else not safe
    v = {"evaluator": name, "version": "1", "safe": not unsafe, "categories": [category] if unsafe else [],
         "score": score, "latency_ms": 1.0, "cached": False, "error": None}
    if threshold is not None:
        v["threshold"] = threshold
    return v


def shadowed(disagree: bool) -> dict[str, Any]:
    return {"disagreement": disagree, "categories": ["any", "S1"] if disagree else [],
            "verdicts": [{**scored(0.2, safe=True, name="candidate"), "compared_with": "llama_guard",
                          "compared": True, "differs": ["any", "S1"] if disagree else []}]}


def queue_ids(store: Any, **kw: Any) -> list[str]:
    with store.read() as conn:
        rows, _ = queries.queue(conn, QueueFilter(**kw), "alice")
    return [r.event_id for r in rows]


def test_value_orders_what_teaches_most_first(store: Any) -> None:
    events = {
        "far": make_event(verdicts=[scored(0.99)], ts=at(1)),                        # sure: little to learn
        "near": make_event(verdicts=[scored(0.52)], ts=at(2)),                       # at the threshold
        "near_t": make_event(verdicts=[scored(0.31, threshold=0.3)], ts=at(3)),      # its own threshold
        "shadow": make_event(verdicts=[scored(0.99)], shadow=shadowed(True), ts=at(4)),
        "split": make_event(verdicts=[scored(0.97), scored(0.03, name="clf", safe=True)], ts=at(5)),
        "hash": make_event(verdicts=[scored(0.52)], content_mode="hash", ts=at(6)),
        "rule": make_event(categories=("pii",), verdicts=[
            {"evaluator": "pii", "version": "1", "safe": False, "categories": ["pii"]}], ts=at(7)),
    }
    store.write_batch([incoming(e, i) for i, e in enumerate(events.values())])
    ids = {e["event_id"]: k for k, e in events.items()}
    with store.read() as conn:
        rows, total = queries.queue(conn, QueueFilter(), "alice")
    values = {ids[r.event_id]: r.value for r in rows}
    assert total == 7
    # the documented formula: 0.4 near + 0.4 disagree + 0.2 rare (every category unlabelled: rare = 1)
    assert values["near"] == pytest.approx(0.4 * closeness(0.52, 0.5) + 0.2)
    assert values["near_t"] == pytest.approx(0.4 * closeness(0.31, 0.3) + 0.2)
    assert values["far"] == pytest.approx(0.4 * 0.02 + 0.2)
    assert values["shadow"] == pytest.approx(0.4 * closeness(0.2, 0.5) + 0.4 + 0.2)  # the candidate's score counts
    assert values["split"] == pytest.approx(0.4 * 0.06 + 0.2 + 0.2)
    assert values["hash"] == pytest.approx((0.4 * closeness(0.52, 0.5) + 0.2) * 0.2)
    # a reward model's score is unbounded: near its threshold on its own scale, nothing to be near without one
    assert closeness(-0.2, 0.0) == pytest.approx(0.8187, abs=1e-4) and closeness(3.0, 0.0) < 0.05
    assert closeness(-3.0, None) == 0.0
    assert values["rule"] == pytest.approx(0.2)
    assert [ids[r.event_id] for r in rows] == ["shadow", "near_t", "near", "split", "far", "rule", "hash"]
    assert queue_ids(store, order="newest")[:2] == [events["far"]["event_id"], events["near"]["event_id"]]
    assert queue_ids(store, disagreement=True) == [events["shadow"]["event_id"]]
    shadow_row = next(r for r in rows if ids[r.event_id] == "shadow")
    assert shadow_row.disagreement and [(v.evaluator, v.shadow) for v in shadow_row.fired] == [
        ("llama_guard", False), ("candidate", True)]  # the candidate shows though it said safe


def test_categories_with_few_labels_rise(store: Any) -> None:
    common = [make_event(categories=("S1",), verdicts=[scored(0.99)], ts=at(i + 1)) for i in range(4)]
    rare = make_event(categories=("S10",), verdicts=[scored(0.99, category="S10")], ts=at(10))
    store.write_batch([incoming(e, i) for i, e in enumerate([*common, rare])])
    assert queue_ids(store)[-1] == rare["event_id"]  # all equal but the oldest: ties go newest first
    for e in common[:3]:
        store.add_label(e["event_id"], "alice", "unsafe", ["S1"])
    store.add_label(common[0]["event_id"], "bob", "unsafe", ["S1"])  # a second label: still one labelled event
    with store.read() as conn:
        labelled = dict(conn.execute(text(f"SELECT category, labelled FROM {_name(conn, 'gs_category_labels')}")).all())
        rows, _ = queries.queue(conn, QueueFilter(), "alice")
    assert labelled == {"S1": 3}
    assert [r.event_id for r in rows] == [rare["event_id"], common[3]["event_id"]]
    assert rows[1].value == pytest.approx(0.4 * 0.02 + 0.2 / 4)


def _name(conn: Any, table: str) -> str:
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(None)
    return f'"{schema}".{table}' if schema else table


def test_snippets_mark_findings_in_full_and_redacted_text() -> None:
    secret = "AKIAIOSFODNN7EXAMPLE"
    long_prompt = "filler " * 200 + f"my key is {secret} and mail bob@example.com please" + " tail" * 200
    snippet, marks = snippet_of(long_prompt, redacted=False)
    assert snippet.startswith(ELLIPSIS) and snippet.endswith(ELLIPSIS) and len(snippet) <= 282
    found = {snippet[s:e] for s, e, _ in marks}
    assert secret in found and "bob@example.com" in found
    assert {label.split(":")[0] for _, _, label in marks} == {"secret", "pii"}

    redacted = "write to [PII:email] with [SECRET:aws_access_key]"
    assert [(redacted[s:e], label) for s, e, label in find_marks(redacted, redacted=True)] == [
        ("[PII:email]", "PII:email"), ("[SECRET:aws_access_key]", "SECRET:aws_access_key")]
    hashed = derive(make_event(content_mode="hash"))
    assert hashed.snippet is None and hashed.lookalike_key.startswith("sha256:")


def test_highlighting_keeps_hostile_text_inert() -> None:
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)> \u202eevil\u202c\u200b "quote" &amp;'
    html = str(highlight(hostile, [(0, 8, '"><script>x</script>'), (5, 50, "overlap ignored"), (900, 950, "out")]))
    assert "<script>" not in html and "<img" not in html
    assert '<mark class="finding" title="&#34;&gt;&lt;script&gt;x&lt;/script&gt;">&lt;script&gt;</mark>' in html
    assert "\u202e" not in html and "\u27e8U+202E\u27e9" in html and "\u27e8U+200B\u27e9" in html
    assert "&amp;amp;" in html and html.count("<mark") == 1


@pytest.fixture
async def ui(store: Any) -> AsyncIterator[TestClient]:
    store.add_reviewer("alice", SECRET)
    async with TestClient(TestServer(create_app(store))) as c:
        assert (await login(c)).status == 303
        yield c


async def test_queue_and_event_pages_show_snippets_fired_evaluators_and_shadow(store: Any, ui: TestClient) -> None:
    hostile = make_event(messages=[{"role": "user", "content": '<script>alert(1)</script> key AKIAIOSFODNN7EXAMPLE'
                                                               " and a NUL \x00 here"}],
                         categories=("secret",), verdicts=[scored(0.55, category="secret")], shadow=shadowed(True))
    huge = make_event(messages=[{"role": "user", "content": "x" * 1_000_000 + " mail bob@example.com"}],
                      categories=("pii",), ts=at(30))
    store.write_batch([incoming(hostile, 0), incoming(huge, 1)])
    page = await (await ui.get("/")).text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<mark class="finding" title="secret:aws_access_key">AKIAIOSFODNN7EXAMPLE</mark>' in page
    assert "\x00" not in page and "\ufffd" in page  # NUL replaced when consumed (PostgreSQL cannot hold it)
    assert "llama_guard 0.550" in page and "candidate (shadow) 0.200" in page and "disagree" in page
    assert len(page) < 100_000  # a 1 MB prompt shows as a snippet
    event_page = await (await ui.get(f"/events/{hostile['event_id']}")).text()
    assert 'id="shadow"' in event_page and "disagree with live: any, S1" in event_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in event_page and "<script>alert" not in event_page
    assert '<mark class="finding" title="secret:aws_access_key">' in event_page


async def test_batch_label_applies_to_the_previewed_lookalikes_only(store: Any, ui: TestClient) -> None:
    def spam(order: int, minutes: int) -> dict[str, Any]:
        return make_event(messages=[{"role": "user", "content": f"  Buy CHEAP pills, order #{order} now"}],
                          categories=("S2",), ts=at(minutes))

    first, alike = spam(1, 1), [spam(n, n + 1) for n in (22, 333, 4444)]
    other = make_event(messages=[{"role": "user", "content": "a different prompt"}], ts=at(9))
    store.write_batch([incoming(e, i) for i, e in enumerate([first, *alike, other])])
    rows = {r.event_id: r for r in store_rows(store)}
    assert rows[first["event_id"]].lookalikes == 3 and rows[other["event_id"]].lookalikes == 0

    page = await (await ui.get(f"/events/{first['event_id']}?status=unreviewed")).text()
    listed = re.findall(r'name="lookalikes" value="([^"]+)"', page)
    assert sorted(listed) == sorted(e["event_id"] for e in alike) and 'id="batch-count">3<' in page
    late = spam(55555, 0)  # arrives after the preview: a batch label must not touch it
    store.write_batch([incoming(late, 9)])
    form = [("csrf_token", csrf_of(page)), ("label", "unsafe"), ("categories", "S2"), ("batch", "1"),
            *[("lookalikes", e) for e in listed], ("lookalikes", other["event_id"])]  # not alike: ignored
    resp = await ui.post(f"/events/{first['event_id']}/labels?status=unreviewed", data=form, allow_redirects=False)
    assert resp.status == 303
    labelled = {e["event_id"] for e in [first, *alike, other, late] if store.get_event(e["event_id"]).labels}
    assert labelled == {first["event_id"], *(e["event_id"] for e in alike)}
    # next: the most valuable event left; S2 has 4 labelled events now, so the unlabelled S1 one comes first
    assert resp.headers["Location"].startswith(f"/events/{other['event_id']}")

    # without the box ticked, only the event itself is labelled; the JSON answer says how many
    page = await (await ui.get(f"/events/{late['event_id']}")).text()
    resp = await ui.post(f"/events/{late['event_id']}/labels", data=[("csrf_token", csrf_of(page)),
                                                                      ("label", "safe")],
                         headers={"Accept": "application/json"})
    assert (await resp.json())["labelled"] == 1


def store_rows(store: Any) -> list[Any]:
    with store.read() as conn:
        return queries.queue(conn, QueueFilter(status="all"), "alice")[0]


def test_event_neighbours_follow_the_value_order(store: Any) -> None:
    events = [make_event(verdicts=[scored(s)], ts=at(i)) for i, s in enumerate((0.9, 0.5, 0.7))]
    store.write_batch([incoming(e, i) for i, e in enumerate(events)])
    order = queue_ids(store)
    assert order == [events[1]["event_id"], events[2]["event_id"], events[0]["event_id"]]
    with store.read() as conn:
        middle = queries.get_event(conn, order[1])
        assert queries.neighbours(conn, QueueFilter(), middle) == (order[0], order[2])


def test_an_older_store_is_migrated_and_backfilled(store_info: Any) -> None:
    store, _, _ = store_info
    events = [make_event(verdicts=[scored(0.5)], categories=("S1",)), make_event(categories=("S9",))]
    store.write_batch([incoming(e, i) for i, e in enumerate(events)])
    store.add_label(events[0]["event_id"], "alice", "unsafe", ["S1"])
    with store.write() as conn:  # back to the shape migration 2 left: no queue columns, tables, or record
        conn.execute(text(f"DROP INDEX {_index(conn, 'ix_gs_events_lookalike_key')}"))
        for column in ("value_base", "lookalike_key", "snippet", "snippet_marks", "disagreement"):
            conn.execute(text(f"ALTER TABLE {_name(conn, 'gs_events')} DROP COLUMN {column}"))
        conn.execute(text(f"ALTER TABLE {_name(conn, 'gs_verdicts')} DROP COLUMN shadow"))
        conn.execute(text(f"DROP TABLE {_name(conn, 'gs_category_labels')}"))
        conn.execute(text(f"DROP TABLE {_name(conn, 'gs_metric_shadow')}"))
        conn.execute(t.schema_migrations.delete().where(t.schema_migrations.c.version == 3))
    assert migrate(store.engine) == [3]
    rows = {r.event_id: r for r in store_rows(store)}
    assert rows[events[0]["event_id"]].value == pytest.approx(0.4 + 0.2 / 2)
    assert rows[events[1]["event_id"]].snippet == "how do I pick a lock?"
    with store.read() as conn:
        assert dict(conn.execute(text(f"SELECT category, labelled FROM {_name(conn, 'gs_category_labels')}"))
                    .all()) == {"S1": 1}


def _index(conn: Any, name: str) -> str:
    return _name(conn, name) if conn.dialect.name == "postgresql" else name


def test_hostile_scores_do_not_break_the_value(store: Any) -> None:
    odd = [make_event(verdicts=[{**scored(0.5), "score": float("nan")}]),
           make_event(verdicts=[{**scored(0.5), "score": 1e308, "threshold": -3}]),
           make_event(verdicts=[{**scored(0.5), "threshold": float("inf")}])]
    raw = [json.loads(json.dumps(e)) for e in odd]  # Python's json writes and reads NaN and Infinity
    assert store.write_batch([incoming(e, i) for i, e in enumerate(raw)]).inserted == 3
    values = sorted(r.value for r in store_rows(store))
    assert values == pytest.approx([0.2, 0.2, 0.6])  # no score; a far score; the 0.5 default threshold


def test_decoded_shadow_events_keep_their_shadow_verdicts(store: Any) -> None:
    event = make_event(verdicts=[scored(0.99)], shadow=shadowed(True))
    store.write_batch([incoming(event)])
    with store.read() as conn:
        shadow = conn.execute(text(f"SELECT evaluator, shadow FROM {_name(conn, 'gs_verdicts')} ORDER BY position"))
        assert [tuple(r) for r in shadow] == [("llama_guard", False), ("candidate", True)]
        assert queries.facets(conn)["evaluator"] == ["candidate", "llama_guard"]
    assert json.loads(json.dumps(store.get_event(event["event_id"]).payload["shadow"])) == event["shadow"]
