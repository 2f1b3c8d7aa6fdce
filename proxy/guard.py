"""Runs a stage's evaluators (concurrently, each behind the cache and its deadline) and decides.

Engines that can judge synchronously (`evaluate_sync`, e.g. the rule engines on
ordinary texts) are called inline: no task, no timer. A deadline cannot
interrupt CPU-bound work on the event loop anyway, so this changes no outcome;
it saves the task and timer bookkeeping that costs more than a rule scan. A
stage judged by inline engines only (the built-in policy's) runs them in one
loop, one clock read between two of them, with no coroutine per evaluator.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from evaluators.base import STAGES, EvalItem, Evaluator, IncrementalScanner, Stage, Verdict
from evaluators.rules._prefilter import StageTriggers
from proxy.cache import VerdictCache, cache_key
from proxy.config import ConfigError, PolicyConfig, Settings
from proxy.metrics import BLOCKS, EVALUATOR_ERRORS, EVALUATOR_LATENCY, FLAGS, SHADOW_WOULD_BLOCK, child
from proxy.policy import Decision, decide
from proxy.resolved_policy import ResolvedPolicy, StreamJudging
from proxy.shadow import Shadows
from proxy.streaming.modes import ModePlan

log = structlog.get_logger("guardstream.guard")

SyncEvaluate = Callable[[Sequence[EvalItem]], "list[Verdict] | None"]


class Guard:
    """The guard pipeline: evaluators by name, the verdict cache, and the policies that use them."""

    def __init__(self, settings: Settings, evaluators: Mapping[str, Evaluator], cache: VerdictCache, *,
                 strict: bool = True) -> None:
        self.settings = settings
        self.evaluators = dict(evaluators)
        self.cache = cache
        self._cached = {name: _wants_cache(settings.evaluators[name].cache, ev) for name, ev in self.evaluators.items()}
        #: inline judges: uncached engines offering `evaluate_sync`
        self._sync: dict[str, SyncEvaluate] = {
            name: fn for name, ev in self.evaluators.items()
            if not self._cached[name] and callable(fn := getattr(ev, "evaluate_sync", None))}
        self._shadow_hashes = {name: settings.evaluator_hash(name) for name in self.evaluators}
        self.shadows = Shadows(settings, self.background_verdict)
        #: evaluators that read whole answers only (reward models): the stream relay leaves them out of windows
        self.whole_answers = {n for n, ev in self.evaluators.items() if getattr(ev, "whole_answers", False)}
        #: evaluators that judge quality, not safety (a comparison's safety check leaves them out)
        self.quality = {n for n, ev in self.evaluators.items() if getattr(ev, "quality", False)}

        #: engines that judge streamed answers incrementally (`incremental()` gives a scanner)
        self._incremental = frozenset(name for name, ev in self.evaluators.items() if _scans(ev))
        #: every policy, resolved once (requests look theirs up with `policy`)
        self._policies = {name: self._resolve(name, policy, strict) for name, policy in settings.policies.items()}

    def policy(self, name: str) -> ResolvedPolicy:
        """The policy named `name`, resolved (KeyError for a policy that is not configured)."""
        return self._policies[name]

    def _resolve(self, name: str, policy: PolicyConfig, strict: bool) -> ResolvedPolicy:
        stages = {stage: tuple(_judges(name, stage, getattr(policy, stage).evaluators, self.evaluators, strict))
                  for stage in STAGES}
        #: stages whose evaluators all judge inline (a stage without evaluators too: nothing to wait for)
        inline = {stage: self._inline_stage(names, stage) for stage, names in stages.items()
                  if all(n in self._sync for n in names)}
        plan = ModePlan.of(policy, self.settings.audit.max_content_chars)
        output = stages["output"]
        if plan.incremental:
            scanning = tuple(n for n in output if n in self._incremental)
            windowed = tuple(n for n in output if n not in self._incremental)
        else:
            scanning, windowed = (), output
        if plan.windowed:  # evaluators that read whole answers judge after the stream (proxy/quality.py)
            windowed = tuple(n for n in windowed if n not in self.whole_answers)
        return ResolvedPolicy(name=name, config=policy, digest=self.settings.policy_hash(name), stages=stages,
                              inline=inline, shadowed=frozenset(s for s in STAGES if getattr(policy, s).shadow),
                              stream=StreamJudging(plan, scanning, windowed))

    def _inline_stage(self, names: Sequence[str], stage: Stage) -> InlineStage:
        judges = []
        triggers = []
        for name in names:
            evaluator = self.evaluators[name]
            offer = getattr(evaluator, "quiet_triggers", None)
            quiet = offer() if callable(offer) else None
            triggers.append(quiet[0] if quiet is not None else None)
            histogram = child(EVALUATOR_LATENCY, name, stage)
            judges.append(InlineJudge(name, self._sync[name], histogram, evaluator.version,
                                      quiet[1] if quiet is not None else None,
                                      getattr(evaluator, "inline_max_chars", math.inf)))
        shared = StageTriggers(triggers) if sum(t is not None for t in triggers) > 1 else None
        return InlineStage(tuple(judges), shared if shared is not None and shared.usable else None,
                           min((j.max_chars for j in judges), default=math.inf))

    def scanners(self, policy: ResolvedPolicy) -> list[tuple[str, str, IncrementalScanner, bool, bool]]:
        """(name, version, scanner, holds, beside) for one streamed answer, per incremental judge of the policy's
        streaming mode. `holds`: what the judge finds is blocked or redacted under the policy, so text waits
        for it; a judge whose findings are only flagged (or allowed) judges beside the stream. `beside`: it
        neither holds nor fails closed, so nothing it says can hold or stop the stream (judged in batches,
        `proxy/streaming/judges.py`)."""
        out = []
        actions = policy.config
        for name in policy.stream.scanning:
            evaluator = self.evaluators[name]
            scanner = evaluator.incremental()  # type: ignore[attr-defined]  # only engines that offer incremental judging are listed here
            if scanner is not None:
                category = getattr(evaluator, "category", None)
                holds = category is None or actions.action_for(category) in ("block", "redact")
                beside = not holds and self.settings.evaluators[name].on_error != "fail_closed"
                out.append((name, evaluator.version, scanner, holds, beside))
        return out

    def decide(self, policy: ResolvedPolicy, stage: Stage, verdicts: list[Verdict]) -> Decision:
        """The decision for verdicts found elsewhere (a stream's incremental judges), counted like `check`'s."""
        for verdict in verdicts:
            if verdict.error:
                log.warning("evaluator_failed", evaluator=verdict.evaluator, error=verdict.error.split(":")[0])
                EVALUATOR_ERRORS.labels(verdict.evaluator, "exception",
                                        self.settings.evaluators[verdict.evaluator].on_error).inc()
        decision = decide(stage, verdicts, policy.config, self.settings.evaluators)
        _count(decision)
        return decision

    def observe(self, name: str, stage: Stage, seconds: float) -> None:
        """Time an evaluator spent outside `check` (a stream's incremental judge, over one answer)."""
        child(EVALUATOR_LATENCY, name, stage).observe(seconds)

    async def check(self, policy: ResolvedPolicy, item: EvalItem, names: Sequence[str] | None = None) -> Decision:
        """Judge one item under a policy's stage (or only its evaluators `names`); record the outcome in
        metrics."""
        inline = policy.inline.get(item.stage) if names is None else None
        if inline is not None:
            found = self._decide_inline(policy, item, inline)
            decision = found if isinstance(found, Decision) else await self._decide(
                policy, item, policy.stages[item.stage], found)
        else:
            decision = await self._decide(policy, item, policy.stages[item.stage] if names is None else names)
        _count(decision)
        if item.stage in policy.shadowed:
            decision.shadow = self.shadows.start(policy.name, item, decision)
        return decision

    async def check_whole(self, policy: ResolvedPolicy, item: EvalItem) -> Decision:
        """A streamed answer, whole, after its stream: judged by the output evaluators its windows left out
        (whole-answer ones). Nothing can be stopped any more, so a block is recorded as not enforced."""
        names = [n for n in policy.stages["output"] if n in self.whole_answers]
        decision = await self._decide(policy, item, names)
        decision.enforced = False
        _count(decision)
        return decision

    async def assess(self, policy: ResolvedPolicy, item: EvalItem) -> Decision:
        """What the policy's safety evaluators of the item's stage (quality ones left out) make of an item that
        is not served (a candidate model's answer): counted nowhere, no shadows."""
        names = [n for n in policy.stages[item.stage] if n not in self.quality]
        return await self._decide(policy, item, names)

    async def _decide(self, policy: ResolvedPolicy, item: EvalItem, names: Sequence[str],
                      known: list[Verdict] | None = None) -> Decision:
        """`known`: the verdicts of the first evaluators, judged by `_decide_inline` until the next one asked for
        the async path (which it then gets)."""
        started = time.perf_counter()
        verdicts: list[Verdict | None]
        if known is None:
            verdicts = [self._verdict_now(n, item) if n in self._sync else None for n in names]
        else:
            first = len(known)
            verdicts = [*known, None, *(self._verdict_now(n, item) if n in self._sync else None
                                        for n in names[first + 1:])]
        waiting = [i for i, v in enumerate(verdicts) if v is None]
        if len(waiting) == 1:
            verdicts[waiting[0]] = await self._verdict(policy, names[waiting[0]], item)
        elif waiting:
            found = await asyncio.gather(*(self._verdict(policy, names[i], item) for i in waiting))
            for i, verdict in zip(waiting, found):
                verdicts[i] = verdict
        decision = decide(item.stage, verdicts,  # type: ignore[arg-type]  # every slot is filled by now
                          policy.config, self.settings.evaluators)
        decision.latency_ms = (time.perf_counter() - started) * 1000
        return decision

    def _decide_inline(self, policy: ResolvedPolicy, item: EvalItem, stage: InlineStage) -> Decision | list[Verdict]:
        """A stage whose evaluators all judge inline, judged in one loop (a clock read between two evaluators,
        no coroutine each). Rule engines whose triggers one shared Hyperscan pass did not find in the text
        cannot find anything there: their verdict is given without calling them. When an evaluator wants the
        async path for this item (a text over its `inline_max_chars`): the verdicts before it, for `_decide`
        to go on from."""
        items = [item]
        found: list[Verdict | Exception] = []
        times: list[float] = []
        started = before = time.perf_counter()
        quiet = None
        if stage.triggers is not None:
            text = item.scan_text
            if len(text) <= stage.max_chars:
                quiet = stage.triggers.quiet(text)
                if quiet and all(quiet):  # (a stage with no judges has nothing to time)
                    return self._all_quiet(policy, item, stage, started)
        handover = False
        for index, judge in enumerate(stage.judges):
            if quiet is not None and quiet[index]:
                found.append(Verdict(True, judge.name, judge.version, [], judge.quiet_score))  # (as `_all_quiet`)
            else:
                try:
                    verdicts = judge.evaluate(items)
                    if verdicts is None:
                        handover = True
                        break
                    found.append(verdicts[0])
                except Exception as exc:  # an engine failure must never fail the request: on_error decides
                    found.append(exc)
            now = time.perf_counter()
            times.append(now - before)
            before = now
        judged: list[Verdict] = []
        for judge, verdict, elapsed in zip(stage.judges, found, times):
            kind = None
            if isinstance(verdict, Exception):
                verdict, kind = self._failure(judge.name, verdict)
            elif verdict.error:
                kind = "error"
            verdict.evaluator = judge.name
            verdict.latency_ms = elapsed * 1000
            judge.histogram.observe(elapsed)
            if kind:
                EVALUATOR_ERRORS.labels(judge.name, kind, self.settings.evaluators[judge.name].on_error).inc()
            judged.append(verdict)
        if handover:
            return judged
        decision = decide(item.stage, judged, policy.config, self.settings.evaluators)
        decision.latency_ms = (time.perf_counter() - started) * 1000
        return decision

    def _all_quiet(self, policy: ResolvedPolicy, item: EvalItem, stage: InlineStage, started: float) -> Decision:
        """The usual text: the shared pass found no judge's triggers, so every verdict is safe without calling
        anyone. One clock read for the stage: the first judge is timed with the pass (as the loop above times
        it), the others with nothing (they did no work; the loop would time the building of their verdict,
        a fraction of a microsecond). Same verdicts, decision and histogram counts as the loop gives."""
        judges = stage.judges
        # positional: a dataclass built with keywords has them packed into a dict first (~1 µs a verdict here)
        judged = [Verdict(True, judge.name, judge.version, [], judge.quiet_score) for judge in judges]
        elapsed = time.perf_counter() - started
        judged[0].latency_ms = elapsed * 1000
        judges[0].histogram.observe(elapsed)
        for judge in judges[1:]:
            judge.histogram.observe(0.0)
        decision = decide(item.stage, judged, policy.config, self.settings.evaluators)
        decision.latency_ms = elapsed * 1000
        return decision

    async def background_verdict(self, policy: str, name: str, item: EvalItem) -> Verdict:
        """One evaluator's verdict off the request path (a shadow candidate, a comparison's judge): always the
        async path (an inline engine would hold the event loop), behind the cache under the evaluator's own
        configuration digest, within its deadline."""
        evaluator = self.evaluators[name]
        if not self._cached[name]:
            return await self._evaluate(name, evaluator, item)
        key = cache_key(evaluator, self._shadow_hashes[name], item)
        ttl = self._policies[policy].config.cache_ttl_s
        return await self.cache.get_or_compute(key, lambda: self._evaluate(name, evaluator, item), ttl)

    def _verdict_now(self, name: str, item: EvalItem) -> Verdict | None:
        """The verdict of an inline judge, or None when it wants the async path for this item."""
        started = time.perf_counter()
        try:
            verdicts = self._sync[name]([item])
            if verdicts is None:
                return None
            verdict, kind = verdicts[0], ("error" if verdicts[0].error else None)
        except Exception as exc:  # an engine failure must never fail the request: on_error decides
            verdict, kind = self._failure(name, exc)
        return self._finish(name, item.stage, verdict, kind, started)

    async def _verdict(self, policy: ResolvedPolicy, name: str, item: EvalItem) -> Verdict:
        evaluator = self.evaluators[name]
        if not self._cached[name]:
            return await self._evaluate(name, evaluator, item)
        key = cache_key(evaluator, policy.digest, item)
        ttl = policy.config.cache_ttl_s
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
            verdict, kind = self._failure(name, exc)
        return self._finish(name, item.stage, verdict, kind, started)

    def _failure(self, name: str, exc: Exception) -> tuple[Verdict, str]:
        log.warning("evaluator_failed", evaluator=name, error=type(exc).__name__)
        return Verdict.failure(self.evaluators[name], f"{type(exc).__name__}: {exc}"), "exception"

    def _finish(self, name: str, stage: Stage, verdict: Verdict, kind: str | None, started: float) -> Verdict:
        elapsed = time.perf_counter() - started
        verdict.evaluator = name
        verdict.latency_ms = elapsed * 1000
        child(EVALUATOR_LATENCY, name, stage).observe(elapsed)
        if kind:
            EVALUATOR_ERRORS.labels(name, kind, self.settings.evaluators[name].on_error).inc()
        return verdict


@dataclass(frozen=True, slots=True)
class InlineJudge:
    """One evaluator of a stage judged inline."""

    name: str
    evaluate: SyncEvaluate
    histogram: Any  # its latency histogram's child for the stage
    version: str
    quiet_score: float | None  # the score of its verdict when its triggers are absent
    max_chars: float  # its `inline_max_chars`


@dataclass(frozen=True, slots=True)
class InlineStage:
    """A policy stage whose evaluators all judge inline, and the one-pass triggers of its rule engines."""

    judges: tuple[InlineJudge, ...]
    triggers: StageTriggers | None
    max_chars: float  # texts longer than this skip the shared pass (some judge wants the async path for them)


def _scans(evaluator: Evaluator) -> bool:
    make = getattr(evaluator, "incremental", None)
    return callable(make) and make() is not None


def _judges(policy: str, stage: Stage, names: Sequence[str], evaluators: Mapping[str, Evaluator],
            strict: bool) -> list[str]:
    """The evaluators of a policy's stage that judge that stage; one that does not is a ConfigError (`strict`,
    the proxy's start-up) or, for evaluators built by hand, left out with a warning."""
    judging = []
    for name in names:
        stages = getattr(evaluators[name], "stages", STAGES)
        if stage in stages:
            judging.append(name)
            continue
        problem = (f"policies.{policy}.{stage}.evaluators: evaluator {name!r} does not judge the {stage} stage "
                   f"(its stages: {', '.join(sorted(stages))}); remove it there or change its options.stages")
        if strict:
            raise ConfigError(problem)
        log.warning("evaluator_stage_skipped", detail=problem)
    return judging


def _wants_cache(configured: bool | None, evaluator: Evaluator) -> bool:
    return configured if configured is not None else bool(getattr(evaluator, "cacheable", True))


def _count(decision: Decision) -> None:
    """Blocks count under the categories whose action blocked (a secret block that also saw PII is no PII
    block); flags and redactions under the categories flagged or redacted, for items that went through."""
    if decision.action == "block":
        if decision.enforced:
            for category in decision.categories_with("block"):
                child(BLOCKS, decision.stage, category).inc()
        else:
            SHADOW_WOULD_BLOCK.labels(decision.stage).inc()
    elif decision.action in ("flag", "redact"):
        for category in decision.categories_with("flag", "redact"):
            child(FLAGS, decision.stage, category).inc()
