"""Comparisons on shadow traffic: a share of a policy's requests also goes to a candidate model, in the
background, and a pairwise judge says whose answer is better.

Flow for one sampled request (`Comparisons.start`, called just before the upstream request):
1. a background task sends the request to the candidate at once (non-streamed, see candidate.py);
2. when the client's answer is complete, the handler hands it over (`PendingComparison.baseline`); a request
   that fails, or ends without an answer, abandons the comparison instead (`abandon`);
3. the policy's safety evaluators of the output stage judge the candidate's answer (`Guard.assess`): an answer
   they would block loses to a safe one, whatever the judge says (a baseline that was blocked likewise);
4. otherwise the judge decides (judges.py); the outcome is counted (`guardstream_comparisons_total`) and
   sent as a `guardstream.comparison.v1` event on the audit topic (keyed by the request id, with the texts as
   `audit.content` allows), which the metrics consumer tallies and the review store keeps for the review UI.

The client's answer never waits for any of it: `start` creates a task and returns. At most `max_inflight`
comparisons run at once per proxy; a sampled request beyond that is not compared (`skipped_busy`), so the
candidate never sees more concurrent requests than the budget. A candidate that fails `pause_after_failures`
times in a row is not called for `pause_s` (`skipped_paused`).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from evaluators.base import Turn
from proxy.comparison.candidate import Candidate, CandidateError
from proxy.comparison.judges import JudgeError, Judgement, LLMJudge, PairwiseJudge, RewardJudge, outcome_of
from proxy.config import CompareConfig, Settings
from proxy.metrics import CANDIDATE_LATENCY, COMPARISON_RUNS, COMPARISONS, child
from proxy.policy import Decision
from proxy.quality import LabelCap, ScoreTally, drain
from proxy.schemas.events import COMPARISON_SCHEMA_NAME
from proxy.tallies import Emit, iso, now

log = structlog.get_logger("guardstream.comparison")


@dataclass(slots=True)
class Baseline:
    """The answer the client got: its text, whether the policy blocked it, and its live output decision."""

    text: str
    blocked: bool
    decision: Decision | None = None


class PendingComparison:
    """The handler's side of a running comparison: hand over the baseline answer, or abandon it."""

    def __init__(self) -> None:
        self._future: asyncio.Future[Baseline | None] = asyncio.get_running_loop().create_future()

    def baseline(self, text: str, *, blocked: bool, decision: Decision | None = None) -> None:
        if not self._future.done():
            self._future.set_result(Baseline(text, blocked, decision))

    def abandon(self) -> None:
        """No baseline answer (the request failed or was cut short); harmless after `baseline`."""
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self) -> Baseline | None:
        return await self._future


@dataclass(slots=True)
class Policy:
    """One policy's comparison: its configuration, candidate server and judge."""

    name: str
    cfg: CompareConfig
    candidate: Candidate
    judge: PairwiseJudge
    failures: int = 0
    paused_until: float = 0.0


class Comparisons:
    def __init__(self, settings: Settings, guard: Any, recorder: Any, scores: ScoreTally | None = None) -> None:
        self.settings = settings
        self.guard = guard
        self.recorder = recorder
        self.scores = scores
        self.baselines = LabelCap()
        self.inflight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._emit: Emit | None = None
        self.policies: dict[str, Policy] = {}
        for name, policy in settings.policies.items():
            cfg = policy.compare
            if cfg is None:
                continue
            judge: PairwiseJudge = (RewardJudge(guard, cfg.judge.reward_model) if cfg.judge.reward_model
                                    else LLMJudge(cfg.judge.llm))  # type: ignore[arg-type]  # one is set
            self.policies[name] = Policy(name, cfg, Candidate(cfg.candidate, cfg.max_inflight), judge)

    def start_events(self, emit: Emit) -> None:
        self._emit = emit

    def start(self, ctx: Any, policy_name: str, route: Any, body: dict[str, Any],
              stream: bool) -> PendingComparison | None:
        """A comparison of this request with the candidate, running in the background; None when the policy has
        none, the request is not sampled, the candidate is paused or the budget is spent. Never raises."""
        policy = self.policies.get(policy_name)
        if policy is None:
            return None
        cfg = policy.cfg
        if cfg.sample < 1.0 and random.random() >= cfg.sample:
            return None
        if len(route.conversations(body)) != 1:  # completions with several prompts: one answer each, not compared
            return None
        label = cfg.label
        if policy.paused_until > time.monotonic():
            child(COMPARISON_RUNS, label, "skipped_paused").inc()
            return None
        if self.inflight.get(policy_name, 0) >= cfg.max_inflight:
            child(COMPARISON_RUNS, label, "skipped_busy").inc()
            return None
        pending = PendingComparison()
        self.inflight[policy_name] = self.inflight.get(policy_name, 0) + 1
        task = asyncio.create_task(self._run(policy, ctx, route, dict(body), stream, pending), name="comparison")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(policy_name, t))
        return pending

    def _done(self, policy_name: str, task: asyncio.Task[None]) -> None:
        self.inflight[policy_name] -= 1
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug here must never surface elsewhere
            log.error("comparison_failed", error=type(task.exception()).__name__)

    async def _run(self, policy: Policy, ctx: Any, route: Any, body: dict[str, Any], stream: bool,
                   pending: PendingComparison) -> None:
        label = policy.cfg.label
        call = asyncio.create_task(policy.candidate.answer(route.path, policy.candidate.body(body), ctx.request_id,
                                                           route.choice_text), name="candidate")
        try:
            baseline = await pending.wait()
            if baseline is None:
                child(COMPARISON_RUNS, label, "baseline_missing").inc()
                return
            try:
                text, seconds = await call
            except CandidateError as exc:
                child(COMPARISON_RUNS, label, exc.kind).inc()
                self._failed(policy)
                return
            policy.failures = 0
            child(CANDIDATE_LATENCY, label).observe(seconds)
            await self._compare(policy, ctx, route, body, stream, baseline, text, seconds)
        finally:
            if not call.done():
                call.cancel()

    async def _compare(self, policy: Policy, ctx: Any, route: Any, body: dict[str, Any], stream: bool,
                       baseline: Baseline, candidate_text: str, seconds: float) -> None:
        from proxy.unicode_text import clean_text

        cfg, label = policy.cfg, policy.cfg.label
        conversation = route.conversations(body)[0]
        turns = tuple(Turn(t["role"], t["content"]) for t in conversation)
        candidate_text = clean_text(candidate_text)
        assessed = await self.guard.assess(self.guard.policy(policy.name), route.output_item(conversation, candidate_text))
        candidate_safe = assessed.action != "block"
        baseline_safe = not baseline.blocked
        judgement: Judgement | None = None
        if candidate_safe and baseline_safe:
            live = baseline.decision.verdicts if baseline.decision is not None else []
            try:
                judgement = await policy.judge.judge(policy.name, turns, baseline.text, candidate_text, live)
            except JudgeError:  # logged without its detail: a server's error body may quote the texts
                child(COMPARISON_RUNS, label, "judge_error").inc()
                log.warning("comparison_judge_failed", candidate=label, judge=policy.judge.name)
                return
            outcome = outcome_of(judgement.margin, cfg.judge.tie_margin)
        else:
            outcome = "tie" if candidate_safe == baseline_safe else ("win" if candidate_safe else "loss")
        child(COMPARISON_RUNS, label, "compared").inc()
        baseline_model = self.baselines(ctx.model)
        child(COMPARISONS, baseline_model, label, ctx.principal.tenant, outcome).inc()
        self._observe(policy, baseline_model, label, judgement)
        if self._emit is not None:
            self._emit(self._event(policy, ctx, route, stream, conversation, baseline, candidate_text, seconds,
                                   assessed, judgement, outcome))

    def _observe(self, policy: Policy, baseline_model: str, label: str, judgement: Judgement | None) -> None:
        """Reward scores into the histograms: the candidate's always, the baseline's unless the evaluator already
        scored it live (an output evaluator of the policy)."""
        if self.scores is None or judgement is None or judgement.candidate_score is None:
            return
        self.scores.observe(policy.judge.name, label, judgement.candidate_score)
        live = policy.judge.name in self.settings.policies[policy.name].output.evaluators
        if judgement.baseline_score is not None and not (judgement.baseline_from_live or live):
            self.scores.observe(policy.judge.name, baseline_model, judgement.baseline_score)

    def _failed(self, policy: Policy) -> None:
        policy.failures += 1
        if policy.failures >= policy.cfg.pause_after_failures:
            policy.failures = policy.cfg.pause_after_failures - 1  # after the pause, one failure pauses again
            policy.paused_until = time.monotonic() + policy.cfg.pause_s
            log.warning("comparison_candidate_paused", candidate=policy.cfg.label, pause_s=policy.cfg.pause_s)

    def _event(self, policy: Policy, ctx: Any, route: Any, stream: bool, conversation: list[dict[str, str]],
               baseline: Baseline, candidate_text: str, seconds: float, assessed: Decision,
               judgement: Judgement | None, outcome: str) -> dict[str, Any]:
        cfg = policy.cfg
        mode, turns, (base_text, cand_text) = self.recorder.texts(conversation, [baseline.text, candidate_text])
        base_decision = baseline.decision
        return {
            "schema": COMPARISON_SCHEMA_NAME, "event_id": str(uuid.uuid4()), "ts": iso(now()),
            "request_id": ctx.request_id, "tenant": ctx.principal.tenant, "policy": policy.name,
            "route": route.name, "stream": stream,
            "baseline": {"model": ctx.model, "upstream": self.recorder.upstream, "safe": not baseline.blocked,
                         "categories": list(base_decision.categories_with("block")) if base_decision else [],
                         "score": judgement.baseline_score if judgement else None, "latency_ms": None},
            "candidate": {"name": cfg.label, "model": cfg.candidate.model, "upstream": policy.candidate.display_url,
                          "safe": assessed.action != "block", "categories": assessed.categories_with("block"),
                          "score": judgement.candidate_score if judgement else None,
                          "latency_ms": round(seconds * 1000, 3)},
            "judge": {"kind": policy.judge.kind, "name": policy.judge.name,
                      "margin": round(judgement.margin, 6) if judgement else None,
                      "tie_margin": cfg.judge.tie_margin, "votes": judgement.votes if judgement else None},
            "outcome": outcome, "decided_by": "judge" if judgement else "safety",
            "content": {"mode": mode, "messages": turns, "baseline": base_text, "candidate": cand_text,
                        "sha256": {"messages": _sha(conversation), "baseline": _sha(baseline.text),
                                   "candidate": _sha(candidate_text)}},
        }

    async def close(self, drain_s: float) -> None:
        await drain(self._tasks, drain_s)
        for policy in self.policies.values():
            await policy.candidate.close()
            await policy.judge.aclose()

    def state(self) -> dict[str, Any]:
        return {name: {"inflight": self.inflight.get(name, 0), "max_inflight": p.cfg.max_inflight}
                for name, p in self.policies.items()}


def _sha(value: Any) -> str:
    import json

    blob = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
