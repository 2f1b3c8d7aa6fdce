"""Reward scores on live answers: histograms per (evaluator, model), and streamed answers scored after the fact.

- `ScoreTally` observes every score a reward model gives an answer (`guardstream_reward_score{evaluator,
  model}` in Prometheus) and, every `quality.tally_interval_s`, sends the counts per bucket to the audit topic
  as a `guardstream.score_tally.v1` message, which the metrics consumer adds up for the ops dashboard. Model
  names come from clients: at most `MAX_MODELS` distinct ones are kept, later ones count as `other`.
- `AfterStream`: a reward model reads whole answers, so in windowed streaming modes (buffered, optimistic) it
  is left out of the windows (proxy/streaming/relay.py) and scores the answer once the stream has ended, in a bounded
  background task (`quality.max_inflight`): the client's stream is over and never waits for it. Its decision
  is recorded like any other (a low_quality flag is audited); a block can no longer be applied, so it is
  recorded as not enforced.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from evaluators.base import Verdict
from proxy.config import Settings
from proxy.metrics import QUALITY_RUNS, REWARD_SCORES, child
from proxy.policy import Decision
from proxy.schemas.events import SCORE_BUCKETS, SCORE_TALLY_SCHEMA_NAME
from proxy.tallies import Emit, PeriodicTally

if TYPE_CHECKING:  # the resolved policy imports the streaming modes, whose package needs this module
    from proxy.resolved_policy import ResolvedPolicy

log = structlog.get_logger("guardstream.quality")

MAX_MODELS = 64
OTHER = "other"


class LabelCap:
    """Remembers the first `limit` distinct values of a client-chosen label; later ones map to `other`."""

    def __init__(self, limit: int = MAX_MODELS) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        value = (value or "unknown")[:256]
        if value in self._seen:
            return value
        if len(self._seen) < self.limit:
            self._seen.add(value)
            return value
        return OTHER


def bucket_of(score: float) -> int:
    """Index of the first bucket whose upper bound is >= score (len(SCORE_BUCKETS): above the last bound)."""
    return bisect.bisect_left(SCORE_BUCKETS, score)


class ScoreTally:
    """Reward scores per (evaluator, model): Prometheus histograms, and counts for the audit topic."""

    def __init__(self, evaluators: set[str], interval_s: float, models: LabelCap | None = None) -> None:
        self.evaluators = evaluators
        self.models = models or LabelCap()
        self._counts: Counter[tuple[str, str, int]] = Counter()
        self._sums: dict[tuple[str, str, int], float] = {}
        self._sender = PeriodicTally(SCORE_TALLY_SCHEMA_NAME, "score", interval_s, self._collect)

    def observe(self, evaluator: str, model: str | None, score: float) -> None:
        if not math.isfinite(score):
            return
        label = self.models(model)
        child(REWARD_SCORES, evaluator, label).observe(score)
        key = (evaluator, label, bucket_of(score))
        self._counts[key] += 1
        self._sums[key] = self._sums.get(key, 0.0) + score

    def observe_verdicts(self, model: str | None, verdicts: list[Verdict]) -> None:
        """The scores reward models gave one answer (errors and unscored verdicts left out)."""
        for verdict in verdicts:
            if verdict.evaluator in self.evaluators and verdict.error is None and verdict.score is not None:
                self.observe(verdict.evaluator, model, verdict.score)

    def start(self, emit: Emit) -> None:
        self._sender.start(emit, periodic=bool(self.evaluators))

    def flush(self) -> dict[str, Any] | None:
        return self._sender.flush()

    def stop(self) -> None:
        self._sender.stop()

    def _collect(self) -> dict[str, Any] | None:
        if not self._counts:
            return None
        counts = [{"evaluator": e, "model": m, "bucket": b, "n": n, "sum": round(self._sums[(e, m, b)], 6)}
                  for (e, m, b), n in sorted(self._counts.items())]
        self._counts.clear()
        self._sums.clear()
        return {"edges": list(SCORE_BUCKETS), "counts": counts}


class AfterStream:
    """Scores streamed answers with the whole-answer evaluators once their stream has ended."""

    def __init__(self, settings: Settings, guard: Any, recorder: Any) -> None:
        self.settings = settings
        self.guard = guard
        self.recorder = recorder
        self.inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._wanted = {name: any(n in guard.whole_answers for n in policy.output.evaluators)
                        for name, policy in settings.policies.items()}

    def wanted(self, policy: str) -> bool:
        return self._wanted.get(policy, False)

    def start(self, ctx: Any, policy: ResolvedPolicy, route: Any, conversations: list[list[dict[str, str]]], n: int,
              answers: Mapping[int, tuple[str, bool]], stream_mode: str) -> None:
        """Score each choice that was not cut, in the background. Never raises and never waits."""
        from proxy.routes import conversation_of

        for index, (text, cut) in answers.items():
            if cut:
                continue
            if self.inflight >= self.settings.quality.max_inflight:
                QUALITY_RUNS.labels("skipped_busy").inc()
                continue
            conversation = conversation_of(conversations, n, index)
            self.inflight += 1
            task = asyncio.create_task(self._judge(ctx, policy, route, conversation, text, index, stream_mode),
                                       name="after-stream")
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight -= 1
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            QUALITY_RUNS.labels("error").inc()
            log.error("after_stream_failed", error=type(task.exception()).__name__)

    async def _judge(self, ctx: Any, policy: ResolvedPolicy, route: Any, conversation: list[dict[str, str]], text: str,
                     index: int, stream_mode: str) -> None:
        decision: Decision = await self.guard.check_whole(policy, route.output_item(conversation, text))
        QUALITY_RUNS.labels("scored").inc()
        self.recorder.record(ctx, decision, conversation, text, choice_index=index, stream_mode=stream_mode)

    async def close(self, drain_s: float) -> None:
        await drain(self._tasks, drain_s)


async def drain(tasks: set[asyncio.Task[Any]], drain_s: float) -> None:
    """Give running background tasks `drain_s`, then cancel the rest."""
    if not tasks:
        return
    _, pending = await asyncio.wait(set(tasks), timeout=drain_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=1.0)
