"""The guard's inline path: engines with `evaluate_sync` are judged without a task or a timer, same outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from evaluators.base import BaseEvaluator, EvalItem, Turn, Verdict
from evaluators.rules.secrets import SecretsEvaluator
from proxy.cache import MemoryVerdictCache
from proxy.config import Settings
from proxy.demo_upstream import DEMO_PRIVATE_KEY
from proxy.guard import Guard


class SyncWord(BaseEvaluator):
    """Unsafe on a word; judges inline unless the text is long (then the async path is wanted)."""

    version = "1"

    def __init__(self, name: str, word: str = "bad", fail: bool = False) -> None:
        self.name, self.word, self.fail = name, word, fail
        self.sync_calls = self.async_calls = 0
        self.tasks: list[asyncio.Task[Any] | None] = []

    def _judge(self, item: EvalItem) -> Verdict:
        if self.fail:
            raise RuntimeError("engine broke")
        hit = self.word in item.text
        return Verdict(safe=not hit, evaluator=self.name, version=self.version, categories=["blocklist"] if hit else [])

    def evaluate_sync(self, items: Sequence[EvalItem]) -> list[Verdict] | None:
        self.sync_calls += 1
        if any(len(i.text) > 100 for i in items):
            return None
        self.tasks.append(asyncio.current_task())
        return [self._judge(i) for i in items]

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        self.async_calls += 1
        self.tasks.append(asyncio.current_task())
        await asyncio.sleep(0)
        return [self._judge(i) for i in items]


def guard_for(evaluators: dict[str, Any], cache: bool = False, on_error: str = "fail_open") -> Guard:
    settings = Settings.model_validate({
        "evaluators": {n: {"type": "x", "on_error": on_error, "cache": cache} for n in evaluators},
        "policies": {"default": {"input": {"evaluators": list(evaluators)}, "actions": {"default": "block"}}},
    })
    return Guard(settings, evaluators, MemoryVerdictCache())


def item(text: str) -> EvalItem:
    return EvalItem((Turn("user", text),), "input")


async def test_sync_engines_run_inline_in_the_callers_task() -> None:
    a, b = SyncWord("a"), SyncWord("b", word="worse")
    guard = guard_for({"a": a, "b": b})
    decision = await guard.check(guard.policy("default"), item("a bad prompt"))
    assert decision.action == "block" and decision.categories == ["blocklist"]
    assert [v.evaluator for v in decision.verdicts] == ["a", "b"]
    assert (a.sync_calls, a.async_calls, b.async_calls) == (1, 0, 0)
    assert a.tasks == [asyncio.current_task()]  # no task of its own
    assert all(v.latency_ms >= 0 and not v.cached for v in decision.verdicts)


async def test_none_from_evaluate_sync_takes_the_async_path() -> None:
    a, b = SyncWord("a"), SyncWord("b")
    guard = guard_for({"a": a, "b": b})
    decision = await guard.check(guard.policy("default"), item("x" * 200 + " bad"))
    assert decision.action == "block"
    assert (a.sync_calls, a.async_calls, b.async_calls) == (1, 1, 1)
    assert asyncio.current_task() not in a.tasks + b.tasks  # gathered in tasks of their own, as before


async def test_inline_engine_failure_follows_on_error() -> None:
    broken = SyncWord("broken", fail=True)
    guard = guard_for({"broken": broken})
    opened = await guard.check(guard.policy("default"), item("fine"))
    assert opened.action == "allow" and opened.failed_open == ["broken"]
    assert opened.verdicts[0].error == "RuntimeError: engine broke"
    guard = guard_for({"broken": SyncWord("broken", fail=True)}, on_error="fail_closed")
    closed = await guard.check(guard.policy("default"), item("fine"))
    assert closed.blocks and closed.categories == ["evaluator_error"]


async def test_cached_engines_keep_the_cache_path() -> None:
    a = SyncWord("a")
    guard = guard_for({"a": a}, cache=True)
    first = await guard.check(guard.policy("default"), item("same text"))
    second = await guard.check(guard.policy("default"), item("same text"))
    assert a.sync_calls == 0 and a.async_calls == 1
    assert not first.verdicts[0].cached and second.verdicts[0].cached


async def test_rule_engines_offer_the_inline_path_and_agree_with_evaluate() -> None:
    engine = SecretsEvaluator("secrets", {})
    items = [item("nothing here"), item("the deploy key:\n" + DEMO_PRIVATE_KEY)]
    inline = engine.evaluate_sync(items)
    assert inline is not None
    awaited = await engine.evaluate(items)
    assert [(v.safe, v.categories) for v in inline] == [(v.safe, v.categories) for v in awaited] == [
        (True, []), (False, ["secret"])]
    big = SecretsEvaluator("secrets", {"inline_max_chars": 10})
    assert big.evaluate_sync(items) is None
    assert [v.safe for v in await big.evaluate(items)] == [True, False]


class LimitedWord(SyncWord):
    """Judges inline up to `limit` characters."""

    def __init__(self, name: str, limit: int, word: str = "bad") -> None:
        super().__init__(name, word)
        self.limit = limit

    def evaluate_sync(self, items: Sequence[EvalItem]) -> list[Verdict] | None:
        self.sync_calls += 1
        if any(len(i.text) > self.limit for i in items):
            return None
        return [self._judge(i) for i in items]


def _latency_count(name: str) -> float:
    from proxy.metrics import REGISTRY

    return REGISTRY.get_sample_value("guardstream_evaluator_latency_seconds_count",
                                     {"evaluator": name, "stage": "input"}) or 0.0


async def test_a_stage_judged_inline_hands_over_where_an_engine_wants_the_async_path() -> None:
    """Each engine is asked once: those before the one that declines keep their inline verdicts, it and the
    rest go on as `_decide` judges them; every evaluator's latency is observed once."""
    a, b, c = LimitedWord("hand-a", 1000), LimitedWord("hand-b", 100), LimitedWord("hand-c", 1000, word="zzz")
    guard = guard_for({"hand-a": a, "hand-b": b, "hand-c": c})
    before = [_latency_count(n) for n in ("hand-a", "hand-b", "hand-c")]
    decision = await guard.check(guard.policy("default"), item("x" * 200 + " bad"))
    assert decision.action == "block" and [v.evaluator for v in decision.verdicts] == ["hand-a", "hand-b", "hand-c"]
    assert [v.safe for v in decision.verdicts] == [False, False, True]
    assert [(e.sync_calls, e.async_calls) for e in (a, b, c)] == [(1, 0), (1, 1), (1, 0)]
    assert [_latency_count(n) - b0 for n, b0 in zip(("hand-a", "hand-b", "hand-c"), before)] == [1, 1, 1]


async def test_every_field_of_a_decision_lands_in_its_place() -> None:
    """`decide` builds its Decision positionally (cheaper on every judged item): each field holds what it names,
    so a reordered dataclass cannot move the failed-open evaluators into the categories."""
    engines = {"a": SyncWord("a", "bad"), "b": SyncWord("b", "worse"), "broken": SyncWord("broken", fail=True)}
    settings = Settings.model_validate({
        "evaluators": {n: {"type": "x", "cache": False} for n in engines},
        "policies": {"default": {"input": {"evaluators": list(engines)}, "mode": "shadow",
                                 "actions": {"default": "flag"}}},
    })
    guard = Guard(settings, engines, MemoryVerdictCache())
    decision = await guard.check(guard.policy("default"), item("bad and worse"))
    assert decision.stage == "input" and decision.action == "flag" and decision.enforced is False
    assert decision.categories == ["blocklist"] and decision.category_actions == {"blocklist": "flag"}
    assert decision.failed_open == ["broken"] and [v.evaluator for v in decision.verdicts] == ["a", "b", "broken"]
    assert decision.latency_ms > 0 and decision.shadow is None
