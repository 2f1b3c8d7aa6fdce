"""The in-memory verdict cache and the cache key: hits, misses, expiry, coalescing, invalidation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from evaluators.base import BaseEvaluator, EvalItem, Verdict
from proxy.cache import MemoryVerdictCache, build_cache, cache_key
from proxy.config import CacheConfig


class CountingEvaluator(BaseEvaluator):
    """Flags texts containing "bad"; counts calls; optionally slow or failing."""

    name = "counting"
    version = "1"

    def __init__(self, delay_s: float = 0.0, error: str | None = None) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self.error = error

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error:
            return [Verdict.failure(self, self.error) for _ in items]
        return [Verdict(safe="bad" not in it.text, evaluator=self.name, version=self.version,
                        categories=[] if "bad" not in it.text else ["S1"], score=0.5) for it in items]

    def compute_for(self, item: EvalItem):  # type: ignore[no-untyped-def]
        async def compute() -> Verdict:
            return (await self.evaluate([item]))[0]

        return compute


async def test_miss_then_hit_returns_copy_marked_cached() -> None:
    ev, cache = CountingEvaluator(), MemoryVerdictCache()
    item = EvalItem.of_text("a bad prompt")
    key = cache_key(ev, "p1", item)
    first = await cache.get_or_compute(key, ev.compute_for(item), ttl_s=60)
    second = await cache.get_or_compute(key, ev.compute_for(item), ttl_s=60)
    assert ev.calls == 1
    assert first.cached is False and second.cached is True
    assert (second.safe, second.categories, second.score) == (False, ["S1"], 0.5)
    second.categories.append("mutated")
    third = await cache.get_or_compute(key, ev.compute_for(item), ttl_s=60)
    assert third.categories == ["S1"], "hits must be copies: callers cannot corrupt the cache"


async def test_ttl_expiry_and_zero_ttl() -> None:
    ev, cache = CountingEvaluator(), MemoryVerdictCache()
    item = EvalItem.of_text("hello")
    key = cache_key(ev, "p1", item)
    cache._store(key, Verdict(True, "counting", "1"), ttl_s=1)
    cache._entries[key] = (0.0, cache._entries[key][1])  # expired in the past
    await cache.get_or_compute(key, ev.compute_for(item), ttl_s=60)
    assert ev.calls == 1
    other = cache_key(ev, "p1", EvalItem.of_text("never stored"))
    await cache.get_or_compute(other, ev.compute_for(item), ttl_s=0)
    await cache.get_or_compute(other, ev.compute_for(item), ttl_s=0)
    assert ev.calls == 3


async def test_fifty_concurrent_identical_lookups_evaluate_once() -> None:
    ev, cache = CountingEvaluator(delay_s=0.05), MemoryVerdictCache()
    item = EvalItem.of_text("same text")
    key = cache_key(ev, "p1", item)
    results = await asyncio.gather(*(cache.get_or_compute(key, ev.compute_for(item), 60) for _ in range(50)))
    assert ev.calls == 1
    assert sum(not r.cached for r in results) == 1 and all(r.safe for r in results)


async def test_errors_are_not_cached() -> None:
    ev, cache = CountingEvaluator(error="timeout"), MemoryVerdictCache()
    item = EvalItem.of_text("x")
    key = cache_key(ev, "p1", item)
    for _ in range(3):
        verdict = await cache.get_or_compute(key, ev.compute_for(item), 60)
        assert verdict.error == "timeout"
    assert ev.calls == 3


async def test_cancelled_leader_does_not_fail_waiters() -> None:
    ev, cache = CountingEvaluator(delay_s=0.2), MemoryVerdictCache()
    item = EvalItem.of_text("x")
    key = cache_key(ev, "p1", item)
    leader = asyncio.create_task(cache.get_or_compute(key, ev.compute_for(item), 60))
    await asyncio.sleep(0.01)
    follower = asyncio.create_task(cache.get_or_compute(key, ev.compute_for(item), 60))
    await asyncio.sleep(0.01)
    leader.cancel()
    verdict = await follower
    assert verdict.safe and ev.calls == 2
    with pytest.raises(asyncio.CancelledError):
        await leader


def test_key_changes_with_policy_evaluator_version_stage_and_context() -> None:
    ev = CountingEvaluator()
    item = EvalItem.of_text("hello", "input")
    base = cache_key(ev, "p1", item)
    assert base == cache_key(ev, "p1", EvalItem.of_text("hello", "input"))
    assert base.startswith("gs:v1:") and len(base) == len("gs:v1:") + 64
    assert cache_key(ev, "p2", item) != base
    assert cache_key(ev, "p1", EvalItem.of_text("hello", "output")) != base
    assert cache_key(ev, "p1", EvalItem.of_text("hello!", "input")) != base
    newer = CountingEvaluator()
    newer.version = "2"
    assert cache_key(newer, "p1", item) != base


async def test_policy_change_misses() -> None:
    ev, cache = CountingEvaluator(), MemoryVerdictCache()
    item = EvalItem.of_text("hello")
    await cache.get_or_compute(cache_key(ev, "policy-a", item), ev.compute_for(item), 60)
    hit = await cache.get_or_compute(cache_key(ev, "policy-a", item), ev.compute_for(item), 60)
    fresh = await cache.get_or_compute(cache_key(ev, "policy-b", item), ev.compute_for(item), 60)
    assert hit.cached and not fresh.cached and ev.calls == 2


async def test_lru_bound_and_build_cache() -> None:
    cache = build_cache(CacheConfig(max_entries=3))
    assert isinstance(cache, MemoryVerdictCache)
    await cache.start()
    ev = CountingEvaluator()
    for i in range(5):
        item = EvalItem.of_text(f"t{i}")
        await cache.get_or_compute(cache_key(ev, "p", item), ev.compute_for(item), 60)
    state = cache.state()
    assert state["backend"] == "memory" and state["ok"] is True and state["entries"] == 3
    await cache.close()
