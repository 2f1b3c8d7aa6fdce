"""The guard's per-category counters: a block counts under the categories whose action blocked, not every
category the decision carried (a prompt blocked for a secret that also had PII is not a PII block)."""

from __future__ import annotations

from typing import Any

from evaluators.base import EvalItem
from proxy.cache import MemoryVerdictCache
from proxy.config import Settings
from proxy.guard import Guard
from proxy.metrics import REGISTRY
from tests.keyword_evaluator import KeywordEvaluator


def _guard(**policy: Any) -> Guard:
    evaluators = {"secrets": KeywordEvaluator("secrets", ["AKIA"], "secret"),
                  "pii": KeywordEvaluator("pii", ["@example.com"], "pii")}
    settings = Settings.model_validate({
        "evaluators": {n: {"type": "keyword"} for n in evaluators},
        "policies": {"default": {"input": {"evaluators": list(evaluators)},
                                 "actions": {"secret": "block", "pii": "flag", "default": "block"}, **policy}},
    })
    return Guard(settings, evaluators, MemoryVerdictCache())


def _count(metric: str, category: str) -> float:
    return REGISTRY.get_sample_value(metric, {"stage": "input", "category": category}) or 0.0


async def test_a_block_counts_only_the_categories_that_blocked() -> None:
    guard = _guard()
    before = {(m, c): _count(m, c) for m in ("guardstream_blocks_total", "guardstream_flags_total")
              for c in ("secret", "pii")}
    decision = await guard.check(guard.policy("default"), EvalItem.of_text("AKIAEXAMPLE and bob@example.com"))
    assert decision.action == "block" and set(decision.categories) == {"secret", "pii"}
    assert _count("guardstream_blocks_total", "secret") == before[("guardstream_blocks_total", "secret")] + 1
    assert _count("guardstream_blocks_total", "pii") == before[("guardstream_blocks_total", "pii")]
    assert _count("guardstream_flags_total", "pii") == before[("guardstream_flags_total", "pii")]  # not allowed

    decision = await guard.check(guard.policy("default"), EvalItem.of_text("only bob@example.com"))
    assert decision.action == "flag"
    assert _count("guardstream_flags_total", "pii") == before[("guardstream_flags_total", "pii")] + 1
    assert _count("guardstream_blocks_total", "pii") == before[("guardstream_blocks_total", "pii")]
