"""A shadow candidate end to end on the real broker: proxy (Kafka audit) -> review consumer (disagreements in
the value-ordered queue, tallies passed over) -> metrics consumer (tallies) -> ops dashboard (agreement per
category)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
from aiohttp.test_utils import TestClient, TestServer

from consumers.dashboard import create_app as dashboard_app
from consumers.store import QueueFilter, queries
from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness
from tests.review_support import drain_review_then_metrics
from tests.test_shadow import ANSWER, LIVE, candidate, demo


def test_shadow_disagreements_reach_the_queue_and_agreement_the_dashboard(
        tmp_path: Path, store: Any, kafka_bootstrap: str, topic: str) -> None:
    settings = keyword_settings(
        tmp_path, evaluators={**LIVE, "cand_k": candidate(["hello", "hunter2"])},
        policy={"input": {"evaluators": ["secrets", "pii"], "shadow": {"cand_k": "secrets"}}},
        audit={"kafka_bootstrap": kafka_bootstrap, "topic": topic, "spool_dir": str(tmp_path / "spool"),
               "content": "redacted"})
    h = ProxyHarness(settings, demo()).start()
    try:
        c = openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
        for text in ("hello world", "hello again", "fine", "also fine"):
            assert c.chat.completions.create(model="m", messages=[{"role": "user", "content": text}]
                                             ).choices[0].message.content == ANSWER
    finally:
        h.stop()  # the last tally goes out at shutdown

    review, _ = drain_review_then_metrics(store, kafka_bootstrap, topic, inserted=2, tallies=1, counted=3)
    assert (review.stats.inserted, review.stats.dead_letters, review.tallies) == (2, 0, 1)

    with store.read() as conn:
        rows, total = queries.queue(conn, QueueFilter(disagreement=True), None)
    assert total == 2 and all(r.action == "allow" and r.disagreement for r in rows)
    assert {r.snippet for r in rows} == {"hello world", "hello again"}
    assert all([(v.evaluator, v.shadow, v.safe) for v in r.fired] == [("cand_k", True, False)] for r in rows)

    import asyncio

    async def summary() -> dict[str, Any]:
        async with TestClient(TestServer(dashboard_app(store))) as client:
            page = await (await client.get("/?minutes=15")).text()
            assert 'id="shadow"' in page and "cand_k" in page
            return await (await client.get("/api/summary?minutes=15")).json()

    shadow = {(r["shadow"], r["live"], r["category"]): (r["compared"], r["agree"], r["shadow_only"])
              for r in asyncio.run(summary())["shadow"]}
    assert shadow == {("cand_k", "secrets", "any"): (4, 2, 2), ("cand_k", "secrets", "secret"): (2, 0, 2)}
