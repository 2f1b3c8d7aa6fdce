"""Quality experts end to end, on a real broker: a tiny reward model trained in the test prefers answers that
give the asked-for number. Two demo upstreams answer the same prompts, one vaguely (the baseline) and one with
the number (the candidate); the proxy scores live answers (streamed ones after their stream), compares the
candidate on every request, and the comparisons flow through Kafka to the review store (confirmed and flipped
by reviewers), the metrics consumer (win rate with its interval, score histograms per model) and the DPO
export."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumers.dashboard import create_app as dashboard_app
from consumers.export import export
from consumers.store import QueueFilter, queries
from consumers.store import comparisons as cmp
from proxy.demo_upstream import DemoUpstream, last_prompt
from proxy.metrics import REGISTRY
from tests.comparison_support import Servers
from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness
from tests.review_support import drain_review_then_metrics
from tests.tiny_reward import bad_answer, build_reward_model, good_answer

pytestmark = pytest.mark.slow
NUMBERS = (17, 230, 5, 64, 911, 38)


def numbered(body: dict[str, Any]) -> str:
    return good_answer(int(re.findall(r"\d+", last_prompt(body))[-1]))


@pytest.mark.timeout(300)  # its waits add up to two minutes on a loaded machine (60 s + 30 s + 30 s)
def test_a_better_candidate_wins_through_the_broker_and_becomes_dpo_data(
        tmp_path: Path, store: Any, kafka_bootstrap: str, topic: str) -> None:
    import torch

    torch.set_num_threads(2)
    model = build_reward_model(tmp_path / "rm")
    servers = Servers()
    candidate_url = servers.add(DemoUpstream(answer=numbered).app())
    settings = keyword_settings(
        tmp_path,
        evaluators={"secrets": {"type": "keyword", "options": {"words": ["hunter2"], "category": "secret"}},
                    "pii": {"type": "keyword", "options": {"words": ["@example.com"], "category": "pii"}},
                    "rm": {"type": "reward_model", "timeout_ms": 20000,
                           "options": {"path": str(model), "threshold": 0.0}}},
        policy={"output": {"evaluators": ["secrets", "pii", "rm"]},
                "compare": {"name": "numbers", "candidate": {"url": candidate_url, "model": "cand-llm"},
                            "sample": 1.0, "max_inflight": 8, "judge": {"reward_model": "rm", "tie_margin": 0.1}}},
        audit={"kafka_bootstrap": kafka_bootstrap, "topic": topic, "spool_dir": str(tmp_path / "spool"),
               "content": "full"})
    h = ProxyHarness(settings, DemoUpstream(answer=lambda body: bad_answer())).start()
    scored_before = REGISTRY.get_sample_value("guardstream_quality_runs_total", {"result": "scored"}) or 0.0
    try:
        client = openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
        for i, n in enumerate(NUMBERS):
            messages = [{"role": "user", "content": f"Please give me the number {n}."}]
            if i < 4:
                answer = client.chat.completions.create(model="base-llm", messages=messages)
                assert answer.choices[0].message.content == bad_answer()  # the client's answer, unchanged
            else:
                stream = client.chat.completions.create(model="base-llm", messages=messages, stream=True)
                assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == bad_answer()
        # the client is done before the proxy hands a stream's answer on: wait for every comparison and scoring
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                (REGISTRY.get_sample_value("guardstream_comparison_runs_total",
                                           {"candidate": "numbers", "result": "compared"}) or 0.0) < 6
                or (REGISTRY.get_sample_value("guardstream_quality_runs_total", {"result": "scored"}) or 0.0)
                - scored_before < 2):
            time.sleep(0.1)
    finally:
        h.stop()  # the last score tally goes out at shutdown
        servers.stop()

    review, _ = drain_review_then_metrics(store, kafka_bootstrap, topic, inserted=12, tallies=1, counted=13)
    # 6 low_quality flags (4 live, 2 scored after their stream), 6 comparisons, 1 score tally
    assert (review.stats.inserted, review.stats.dead_letters, review.tallies) == (12, 0, 1)

    with store.read() as conn:
        flagged, total = queries.queue(conn, QueueFilter(category="low_quality", status="all"), None)
        listed, compared = cmp.page(conn, cmp.ComparisonFilter(status="all", order="newest"), None)
        stored = [cmp.get(conn, row.event_id) for row in listed]
    assert total == 6 and all(r.action == "flag" for r in flagged)
    assert {r.stage for r in flagged} == {"output"}
    assert compared == 6 and {r.outcome for r in listed} == {"win"} and all(r.margin > 0.1 for r in listed)
    streamed = [c for c in stored if c.payload["stream"]]
    assert len(streamed) == 2 and all(c.payload["content"]["baseline"] == bad_answer() for c in streamed)

    # reviewers: one confirms the judge, one flips another; the export takes both, the rest apart
    first, second = stored[0], stored[1]
    with store.write() as conn:
        cmp.add_label(conn, first.event_id, "alice", "candidate")
        cmp.add_label(conn, second.event_id, "alice", "baseline")
    export(store, tmp_path / "out", ["dpo"], test_fraction=0.0, comparison_margin=0.1)
    rows = [json.loads(x) for x in (tmp_path / "out/dpo/train.jsonl").read_text().splitlines()]
    by_id = {r["comparison_id"]: r for r in rows}
    assert set(by_id) == {first.event_id, second.event_id}
    assert by_id[first.event_id]["chosen"][0]["content"] == first.payload["content"]["candidate"]
    assert by_id[second.event_id]["chosen"][0]["content"] == bad_answer()  # flipped: the baseline chosen
    unconfirmed = (tmp_path / "out/dpo_unconfirmed/train.jsonl").read_text().splitlines()
    assert len(unconfirmed) == 4 and all(json.loads(x)["confirmed"] is False for x in unconfirmed)

    async def summary() -> dict[str, Any]:
        async with TestClient(TestServer(dashboard_app(store))) as c:
            page = await (await c.get("/?minutes=15")).text()
            assert 'id="comparisons"' in page and "Reward scores of numbers (rm)" in page
            return await (await c.get("/api/summary?minutes=15")).json()

    data = asyncio.run(summary())
    (row,) = data["comparisons"]
    assert (row["baseline"], row["candidate"], row["tenant"], row["n"], row["win"]) == ("base-llm", "numbers",
                                                                                         "default", 6, 6)
    assert row["verdict"] == "better" and row["low"] > 0.5
    hist = {h["model"]: h for h in data["scores"]}
    assert hist["base-llm"]["n"] == 6 and hist["numbers"]["n"] == 6
    assert hist["numbers"]["mean"] > 0 > hist["base-llm"]["mean"]
