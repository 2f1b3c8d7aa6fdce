"""The `reward_model` evaluator: a reward per (conversation, answer); `low_quality` below the threshold.

Output stage only. The verdict's `score` is the raw reward (a logit: unbounded, higher = better); with a
`threshold` an answer scoring below it is `safe: false` with category `low_quality`, which policies flag by
default (proxy/config.py `PolicyConfig.action_for`). It scores whole answers only: streamed answers are scored
once the stream has ended, in the background (proxy/quality.py), never window by window.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from evaluators.base import BaseEvaluator, EvalItem, OptionError, Stage, Turn, Verdict
from evaluators.options import parse_options
from evaluators.reward_model.artifact import ArtifactError, resolve
from evaluators.reward_model.backends import RewardBackend, RewardBackendError
from evaluators.reward_model.options import RewardModelOptions

LOW_QUALITY = "low_quality"


class RewardModelEvaluator(BaseEvaluator):
    stages: frozenset[Stage] = frozenset({"output"})
    #: judges how good an answer is, not whether it is safe (comparisons do not count it as a safety verdict)
    quality = True
    #: reads whole answers: the stream relay leaves it out of windows (see proxy/streaming/relay.py)
    whole_answers = True

    def __init__(self, name: str, backend: RewardBackend, threshold: float | None = None) -> None:
        self.name = name
        self.backend = backend
        self.threshold = threshold
        self.version = backend.version + (f"-t{threshold:g}" if threshold is not None else "")

    def cache_context(self, item: EvalItem) -> str:
        """The text the model reads: the conversation through the judged answer, rendered."""
        return self.backend.render(judged_turns(item))

    async def rewards(self, items: Sequence[EvalItem]) -> list[float]:
        """The reward of each item's judged answer (higher = better)."""
        return await self.backend.score([judged_turns(item) for item in items])

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        started = time.perf_counter()
        rewards = await self.rewards(items)
        latency_ms = (time.perf_counter() - started) * 1000
        return [self.verdict(r, latency_ms) for r in rewards]

    def verdict(self, reward: float, latency_ms: float = 0.0) -> Verdict:
        low = self.threshold is not None and reward < self.threshold
        return Verdict(safe=not low, evaluator=self.name, version=self.version,
                       categories=[LOW_QUALITY] if low else [], score=reward, latency_ms=latency_ms)

    async def aclose(self) -> None:
        await self.backend.aclose()


def judged_turns(item: EvalItem) -> tuple[Turn, ...]:
    """The conversation up to and including the judged turn."""
    end = item.judged + 1 if item.judged >= 0 else len(item.turns) + item.judged + 1
    return item.turns[:end]


def create(name: str, options: Mapping[str, Any]) -> RewardModelEvaluator:
    opts = parse_options(RewardModelOptions, options)
    if opts.backend == "vllm":
        from evaluators.reward_model.backends.vllm_http import VLLMRewardBackend

        backend: RewardBackend = VLLMRewardBackend(
            opts.url, str(opts.model), endpoint=opts.endpoint, input_format=opts.input_format,
            server_scale=opts.server_scale, api_key_env=opts.api_key_env, timeout_s=opts.timeout_s,
            connect_timeout_s=opts.connect_timeout_s, retries=opts.retries, pool_size=opts.pool_size,
            request_batch_size=opts.request_batch_size)
    else:
        from evaluators.reward_model.backends.transformers_backend import TransformersRewardBackend

        try:
            source = resolve(str(opts.path))
        except ArtifactError as exc:
            raise OptionError("path", str(exc)) from None
        backend = TransformersRewardBackend(
            source, input_format=opts.input_format, max_length=opts.max_length, device=opts.device,
            dtype=opts.dtype, max_batch_size=opts.max_batch_size, max_wait_ms=opts.max_wait_ms,
            torch_threads=opts.torch_threads)
    return RewardModelEvaluator(name, backend, opts.threshold)


__all__ = ["RewardModelEvaluator", "RewardBackendError", "LOW_QUALITY", "create"]
