"""Runs a stage's evaluators (concurrently, each behind the cache and its deadline) and decides."""

from __future__ import annotations

import asyncio
import time
from typing import Mapping

import structlog

from evaluators.base import EvalItem, Evaluator, Stage, Verdict
from proxy.cache import VerdictCache, cache_key
from proxy.config import Settings
from proxy.metrics import BLOCKS, EVALUATOR_ERRORS, EVALUATOR_LATENCY, FLAGS, SHADOW_WOULD_BLOCK
from proxy.policy import Decision, decide

log = structlog.get_logger("guardstream.guard")


class Guard:
    """The guard pipeline: evaluators by name, the verdict cache, and the policies that use them."""

    def __init__(self, settings: Settings, evaluators: Mapping[str, Evaluator], cache: VerdictCache) -> None:
        self.settings = settings
        self.evaluators = dict(evaluators)
        self.cache = cache
        self._policy_hashes = {name: settings.policy_hash(name) for name in settings.policies}
        self._cached = {name: _wants_cache(settings.evaluators[name].cache, ev) for name, ev in self.evaluators.items()}

    def evaluator_names(self, policy: str, stage: Stage) -> list[str]:
        return list(getattr(self.settings.policies[policy], stage).evaluators)

    async def check(self, policy: str, item: EvalItem) -> Decision:
        """Judge one item under a policy's stage and record the outcome in metrics."""
        started = time.perf_counter()
        names = self.evaluator_names(policy, item.stage)
        if not names:
            verdicts: list[Verdict] = []
        elif len(names) == 1:
            verdicts = [await self._verdict(policy, names[0], item)]
        else:
            verdicts = list(await asyncio.gather(*(self._verdict(policy, n, item) for n in names)))
        decision = decide(item.stage, verdicts, self.settings.policies[policy], self.settings.evaluators)
        decision.latency_ms = (time.perf_counter() - started) * 1000
        _count(decision)
        return decision

    async def _verdict(self, policy: str, name: str, item: EvalItem) -> Verdict:
        evaluator = self.evaluators[name]
        if not self._cached[name]:
            return await self._evaluate(name, evaluator, item)
        key = cache_key(evaluator, self._policy_hashes[policy], item)
        ttl = self.settings.policies[policy].cache_ttl_s
        return await self.cache.get_or_compute(key, lambda: self._evaluate(name, evaluator, item), ttl)

    async def _evaluate(self, name: str, evaluator: Evaluator, item: EvalItem) -> Verdict:
        cfg = self.settings.evaluators[name]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(cfg.timeout_ms / 1000):
                verdicts = await evaluator.evaluate([item])
            verdict = verdicts[0]
            kind = "error" if verdict.error else None
        except TimeoutError:
            verdict, kind = Verdict.failure(evaluator, f"timeout after {cfg.timeout_ms} ms"), "timeout"
        except Exception as exc:  # an engine failure must never fail the request: on_error decides
            verdict, kind = Verdict.failure(evaluator, f"{type(exc).__name__}: {exc}"), "exception"
            log.warning("evaluator_failed", evaluator=name, error=type(exc).__name__)
        elapsed = time.perf_counter() - started
        verdict.evaluator = name
        verdict.latency_ms = elapsed * 1000
        EVALUATOR_LATENCY.labels(name, item.stage).observe(elapsed)
        if kind:
            EVALUATOR_ERRORS.labels(name, kind, cfg.on_error).inc()
        return verdict


def _wants_cache(configured: bool | None, evaluator: Evaluator) -> bool:
    return configured if configured is not None else bool(getattr(evaluator, "cacheable", True))


def _count(decision: Decision) -> None:
    if decision.action == "block":
        if decision.enforced:
            for category in decision.categories:
                BLOCKS.labels(decision.stage, category).inc()
        else:
            SHADOW_WOULD_BLOCK.labels(decision.stage).inc()
    elif decision.action in ("flag", "redact"):
        for category in decision.categories:
            FLAGS.labels(decision.stage, category).inc()
