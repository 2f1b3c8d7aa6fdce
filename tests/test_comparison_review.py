"""Comparisons after the broker: stored once, reviewed side by side (confirm or flip), exported as DPO rows
(confirmed ones with the reviewers' winner chosen, unreviewed ones above a margin apart), counted per minute
for the ops dashboard with a Wilson interval. SQLite always, PostgreSQL with POSTGRES_URL."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumers.dashboard import create_app as create_dashboard
from consumers.dashboard.quality import wilson
from consumers.decode import decode
from consumers.export import export
from consumers.metrics import aggregate, write_aggregates
from consumers.review_ui import create_app
from consumers.store import IncomingEvent, Position
from consumers.store import comparisons as cmp
from proxy.metrics import SCORE_BUCKETS
from proxy.quality import bucket_of
from proxy.schemas.events import SCORE_TALLY_SCHEMA_NAME, validation_errors
from tests.comparison_support import make_comparison
from tests.test_review_ui import SECRET, csrf_of, login


def stored(event: dict[str, Any], offset: int = 0) -> IncomingEvent:
    assert validation_errors(event, event["schema"]) == []
    decoded = decode(json.dumps(event).encode())
    assert decoded.is_comparison, decoded.reason
    return IncomingEvent(decoded.event, decoded.ts, Position("t", 0, offset))  # type: ignore[arg-type]


def label(store: Any, event: dict[str, Any], reviewer: str, winner: str) -> None:
    with store.write() as conn:
        assert cmp.add_label(conn, event["event_id"], reviewer, winner) is not None


def test_comparisons_are_stored_once(store: Any) -> None:
    a, b = make_comparison(), make_comparison(outcome="loss", margin=-3.0)
    first = store.write_batch([], [], [stored(a), stored(b, 1), stored(a, 2)])
    assert (first.inserted, first.duplicates) == (2, 1)
    replay = store.write_batch([], [], [stored(a), stored(b, 1)])
    assert (replay.inserted, replay.duplicates) == (0, 2)
    with store.read() as conn:
        rows, total = cmp.page(conn, cmp.ComparisonFilter(), "alice")
        assert total == 2 and {r.outcome for r in rows} == {"win", "loss"}
        got = cmp.get(conn, a["event_id"])
    assert got is not None and got.payload == a and got.judged_winner == "candidate"


def test_the_list_puts_what_the_judge_was_least_sure_of_first(store: Any) -> None:
    events = [make_comparison(margin=m, outcome="win" if m > 0.5 else "loss" if m < -0.5 else "tie")
              for m in (3.0, -0.2, -5.0)] + [make_comparison(margin=None, decided_by="safety", outcome="loss")]
    store.write_batch([], [], [stored(e, i) for i, e in enumerate(events)])
    with store.read() as conn:
        rows, _ = cmp.page(conn, cmp.ComparisonFilter(), None)
        assert [r.margin for r in rows] == [-0.2, 3.0, -5.0, None]
        label(store, events[1], "alice", "tie")
    with store.read() as conn:
        assert [r.margin for r in cmp.page(conn, cmp.ComparisonFilter(), None)[0]] == [3.0, -5.0, None]
        reviewed = cmp.page(conn, cmp.ComparisonFilter(status="reviewed"), "alice")[0]
    assert [(r.margin, r.my_winner, r.label_count) for r in reviewed] == [(-0.2, "tie", 1)]


@pytest.fixture
async def ui(store: Any) -> AsyncIterator[tuple[TestClient, dict[str, Any]]]:
    events = {"win": make_comparison(baseline='<script>alert(1)</script>', candidate="It is 42."),
              "tie": make_comparison(outcome="tie", margin=0.1),
              "hashed": make_comparison(content_mode="hash")}
    store.write_batch([], [], [stored(e, i) for i, e in enumerate(events.values())])
    store.add_reviewer("alice", SECRET)
    async with TestClient(TestServer(create_app(store))) as client:
        assert (await login(client)).status == 303
        yield client, events


async def test_a_comparison_side_by_side_confirmed_and_flipped(ui: Any, store: Any) -> None:
    client, events = ui
    win = events["win"]["event_id"]
    listing = await client.get("/comparisons?status=all")
    html = await listing.text()
    assert listing.status == 200 and html.count('data-event-id="') == 3
    page = await client.get(f"/comparisons/{win}")
    html = await page.text()
    assert page.status == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html  # escaped
    assert re.search(r'class="answer candidate judged-better" id="answer-candidate"', html)
    assert 'value="candidate" data-key="c"' in html and 'value="baseline" data-key="x"' in html
    csrf = csrf_of(html)
    # confirm the judge (form post, then on to the next one), then flip it (JSON)
    done = await client.post(f"/comparisons/{win}/labels?status=all", data={"winner": "candidate", "csrf_token": csrf},
                             allow_redirects=False)
    assert done.status == 303 and done.headers["Location"].startswith("/comparisons/")
    flipped = await client.post(f"/comparisons/{win}/labels", data={"winner": "baseline", "note": "wrong number"},
                                headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
    assert (await flipped.json()) == {"ok": True, "event_id": win, "winner": "baseline", "reviewer": "alice"}
    bad = await client.post(f"/comparisons/{win}/labels", data={"winner": "both"},
                            headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
    assert bad.status == 400
    assert (await client.post(f"/comparisons/{win}/labels", data={"winner": "tie"})).status == 403  # no CSRF token
    assert (await client.get("/comparisons/nope")).status == 404
    with store.read() as conn:
        got = cmp.get(conn, win)
    assert [lab.winner for lab in got.labels] == ["candidate", "baseline"]  # type: ignore[union-attr]
    assert cmp.verdict_of(got.labels) == "baseline"  # type: ignore[union-attr]
    # a judged tie offers both sides and no "tie" flip; hash-only content says why it cannot be trained on
    tie_html = await (await client.get(f"/comparisons/{events['tie']['event_id']}")).text()
    assert 'data-key="b"' in tie_html and 'data-key="t"' not in tie_html
    hashed = await (await client.get(f"/comparisons/{events['hashed']['event_id']}")).text()
    assert "Stored as hashes only" in hashed and "It is 42." not in hashed


def test_export_confirmed_and_unconfirmed_comparisons(store: Any, tmp_path: Path) -> None:
    confirmed = make_comparison(prompt="Give me 42.", baseline="No.", candidate="42.")
    flipped = make_comparison(prompt="Give me 7.", baseline="7.", candidate="Seven? No idea.")  # judge was wrong
    disputed = make_comparison(prompt="Give me 8.")
    tied = make_comparison(prompt="Give me 9.")
    sure = make_comparison(prompt="Give me 10.", baseline="Hm.", candidate="10.", margin=2.5)
    unsure = make_comparison(prompt="Give me 11.", margin=0.6)
    loss = make_comparison(prompt="Give me 12.", baseline="12.", candidate="Nope.", outcome="loss", margin=-1.5)
    safety = make_comparison(prompt="Give me 13.", margin=None, decided_by="safety", outcome="loss")
    hashed = make_comparison(prompt="Give me 14.", content_mode="hash")
    everything = [confirmed, flipped, disputed, tied, sure, unsure, loss, safety, hashed]
    store.write_batch([], [], [stored(e, i) for i, e in enumerate(everything)])
    label(store, confirmed, "alice", "candidate")
    label(store, confirmed, "bob", "candidate")
    label(store, flipped, "alice", "baseline")
    label(store, disputed, "alice", "candidate")
    label(store, disputed, "bob", "baseline")
    label(store, tied, "alice", "tie")

    report = export(store, tmp_path / "out", ["dpo"], test_fraction=0.0)

    def rows(name: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in (tmp_path / "out" / name / "train.jsonl").read_text().splitlines()]

    dpo = {r["prompt"][0]["content"]: r for r in rows("dpo")}
    assert set(dpo) == {"Give me 42.", "Give me 7."}
    assert dpo["Give me 42."]["chosen"] == [{"role": "assistant", "content": "42."}]
    assert dpo["Give me 42."]["rejected"] == [{"role": "assistant", "content": "No."}]
    assert dpo["Give me 7."]["chosen"][0]["content"] == "7."  # the reviewer's winner, not the judge's
    assert all(r["source"] == "comparison" and r["confirmed"] is True for r in dpo.values())
    unconfirmed = {r["prompt"][0]["content"]: r for r in rows("dpo_unconfirmed")}
    assert set(unconfirmed) == {"Give me 10.", "Give me 12."}
    assert unconfirmed["Give me 10."]["chosen"][0]["content"] == "10." and not unconfirmed["Give me 10."]["confirmed"]
    assert unconfirmed["Give me 12."]["chosen"][0]["content"] == "12."  # a loss: the baseline is chosen
    assert report.skipped["comparison: reviewers disagree"] == 1
    assert report.skipped["comparison: reviewed as a tie"] == 1
    assert report.skipped["comparison stored as hashes only"] == 1
    assert report.skipped["comparison decided on safety, unreviewed"] == 1
    assert report.skipped["comparison unreviewed, |margin| below 1"] == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["comparisons"] == {"confirmed": 2, "unconfirmed": 2} and manifest["comparison_margin"] == 1.0
    # a lower margin lets the unsure one in too
    export(store, tmp_path / "low", ["dpo"], test_fraction=0.0, comparison_margin=0.5)
    assert len((tmp_path / "low" / "dpo_unconfirmed" / "train.jsonl").read_text().splitlines()) == 3


def test_wilson_interval() -> None:
    low, high = wilson(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(50, 100)
    assert low < 0.5 < high


async def test_ops_dashboard_win_rates_and_score_histograms(store: Any) -> None:
    now = datetime.now(UTC)
    ts = (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    events = ([make_comparison(ts=ts, tenant="acme") for _ in range(18)]
              + [make_comparison(ts=ts, tenant="acme", outcome="loss", margin=-1.0) for _ in range(2)]
              + [make_comparison(ts=ts, tenant="globex", outcome="tie", margin=0.0) for _ in range(2)])
    tally = {"schema": SCORE_TALLY_SCHEMA_NAME, "event_id": "0" * 32, "ts": ts, "request_id": "score-tally-x",
             "instance": "x", "since": ts, "until": ts, "edges": list(SCORE_BUCKETS),
             "counts": [{"evaluator": "rm", "model": "base-model", "bucket": bucket_of(-1.5), "n": 3, "sum": -6.0},
                        {"evaluator": "rm", "model": "base-model", "bucket": bucket_of(0.5), "n": 1, "sum": 0.5},
                        {"evaluator": "rm", "model": "cand", "bucket": bucket_of(9.0), "n": 4, "sum": 40.0}]}
    assert validation_errors(tally, SCORE_TALLY_SCHEMA_NAME) == []
    agg = aggregate([(e, decode(json.dumps(e).encode()).ts) for e in [*events, tally]])
    with store.write() as conn:
        write_aggregates(conn, agg)
    async with TestClient(TestServer(create_dashboard(store))) as client:
        data = await (await client.get("/api/summary?minutes=15")).json()
        html = await (await client.get("/?minutes=15")).text()
    by_tenant = {r["tenant"]: r for r in data["comparisons"]}
    acme = by_tenant["acme"]
    assert (acme["n"], acme["win"], acme["loss"], acme["tie"]) == (20, 18, 2, 0)
    assert acme["win_rate"] == 0.9 and acme["low"] > 0.5 and acme["verdict"] == "better"
    assert by_tenant["globex"]["verdict"] == "not yet distinguishable"
    hist = {h["model"]: h for h in data["scores"]}
    assert hist["base-model"]["n"] == 4 and hist["base-model"]["mean"] == pytest.approx(-5.5 / 4)
    assert hist["base-model"]["bars"] == [["-2 .. -1", 3], ["-1 .. -0.5", 0], ["-0.5 .. 0", 0], ["0 .. 0.5", 1]]
    assert hist["cand"]["bars"] == [["> 8", 4]]  # above the last bound
    assert 'id="comparisons"' in html and "better" in html and "Reward scores of cand" in html
