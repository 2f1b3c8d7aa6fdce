"""Shadow evaluators: candidates judged beside the live ones, compared with them, never acting.

A policy stage names its candidates (`shadow: {candidate: live_evaluator_or_null}`, see proxy/config.py).
After the live evaluators have decided, the guard hands the item to `Shadows.start`, which judges it with
every candidate in ONE background task and returns that task at once: the response never waits for a shadow
(the request path pays for creating one task). A candidate that raises or runs past its `timeout_ms` ends as
an error verdict, counted; while `shadow.max_inflight` evaluations are running, further items are not
shadowed (counted as `skipped_busy`), so a slow candidate cannot pile up work or memory; a candidate that
failed `pause_after_failures` times in a row is left out for `pause_s` (`skipped_paused`), so a stuck engine is
not handed one more call per item.

Each candidate's verdict is compared with its live counterpart (a live evaluator's verdict, or the stage's
decision) per category: `both`, `shadow_only`, `live_only`, and for the overall verdict (category `any`)
also `neither`. The counts go to Prometheus (`guardstream_shadow_comparisons_total`) and, every
`shadow.tally_interval_s`, to the audit topic as a `guardstream.shadow_tally.v1` message (the ops dashboard
reads those). The recorder waits for the task to put the shadow verdicts into the item's audit event, and
audits disagreements even where the live decision alone would not be audited (the review queue gets them).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from evaluators.base import EvalItem, Stage, Verdict
from proxy.config import PolicyConfig, Settings
from proxy.metrics import SHADOW_COMPARISONS, SHADOW_RUNS, child
from proxy.policy import EVALUATOR_ERROR, Decision
from proxy.schemas.events import TALLY_SCHEMA_NAME
from proxy.tallies import Emit, PeriodicTally

log = structlog.get_logger("guardstream.shadow")

#: the overall verdict (unsafe or not), compared beside the categories
ANY = "any"
#: what a verdict that is unsafe without naming a category counts as
GENERIC = "unsafe"
#: the counterpart name when a candidate is compared with the stage's decision
DECISION = "decision"

Judge = Callable[[str, str, EvalItem], Awaitable[Verdict]]  # (policy, evaluator, item) -> verdict or error verdict


@dataclass(slots=True)
class ShadowVerdict:
    """One candidate's verdict, what it was compared with, and the categories on which they differ."""

    verdict: Verdict
    compared_with: str | None  # a live evaluator, or None for the stage's decision
    differs: list[str] = field(default_factory=list)  # ANY first when the overall verdicts differ
    compared: bool = True  # False when the candidate or its counterpart errored


@dataclass(slots=True)
class ShadowResult:
    verdicts: list[ShadowVerdict]

    @property
    def disagreement(self) -> bool:
        return any(v.differs for v in self.verdicts)

    @property
    def categories(self) -> list[str]:
        """Every category some candidate and its counterpart differ on."""
        seen: dict[str, None] = {}
        for v in self.verdicts:
            seen.update(dict.fromkeys(v.differs))
        return list(seen)


def flags(verdict: Verdict) -> set[str]:
    """The categories an unsafe verdict names (GENERIC when it names none); empty when safe."""
    return set() if verdict.safe else set(verdict.categories or [GENERIC])


def compare(shadow: set[str], live: set[str]) -> dict[str, str]:
    """category -> outcome, for the overall verdict (ANY) and every category either side names."""
    out = {ANY: ("both" if live else "shadow_only") if shadow else ("live_only" if live else "neither")}
    for category in sorted(shadow | live):
        out[category] = "both" if category in shadow and category in live else (
            "shadow_only" if category in shadow else "live_only")
    return out


def _acting(categories: Iterable[str], policy: PolicyConfig) -> set[str]:
    """The categories the policy acts on (its action is not `allow`)."""
    return {c for c in categories if policy.action_for(c) != "allow"}


class Shadows:
    """Runs the policies' shadow evaluators in the background and tallies their agreement."""

    def __init__(self, settings: Settings, judge: Judge) -> None:
        self.settings = settings
        self.cfg = settings.shadow
        self.judge = judge
        self.inflight = 0
        self._tasks: set[asyncio.Task[ShadowResult | None]] = set()
        self._tally: Tally[tuple[str, str, str, str, str]] = Tally()
        self._runs: Tally[tuple[str, str, str]] = Tally()
        self._failures: dict[str, int] = {}  # consecutive failures per candidate
        self._paused_until: dict[str, float] = {}  # monotonic time a failing candidate is left out until
        self._sender = PeriodicTally(TALLY_SCHEMA_NAME, "shadow", self.cfg.tally_interval_s, self._collect)

    def start(self, policy: str, item: EvalItem, decision: Decision) -> asyncio.Task[ShadowResult | None] | None:
        """The item's shadow judgement as a task (None when the stage has no shadow, or it is not sampled or
        too busy). Never raises and never waits."""
        configured = getattr(self.settings.policies[policy], item.stage).shadow
        if not configured or (self.cfg.sample < 1.0 and random.random() >= self.cfg.sample):
            return None
        now = time.monotonic()
        candidates = {name: live for name, live in configured.items() if self._paused_until.get(name, 0.0) <= now}
        for name in configured.keys() - candidates.keys():
            self._count_run(item.stage, name, "skipped_paused")
        if not candidates:
            return None
        if self.inflight >= self.cfg.max_inflight:
            for name in candidates:
                self._count_run(item.stage, name, "skipped_busy")
            return None
        self.inflight += 1
        task = asyncio.create_task(self._run(policy, item, decision, candidates), name="shadow")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[ShadowResult | None]) -> None:
        self.inflight -= 1
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug here must never surface elsewhere
            log.error("shadow_failed", error=type(task.exception()).__name__)

    async def _run(self, policy: str, item: EvalItem, decision: Decision,
                   candidates: Mapping[str, str | None]) -> ShadowResult:
        names = list(candidates)
        judged = await asyncio.gather(*(self.judge(policy, name, item) for name in names))
        live = {v.evaluator: v for v in decision.verdicts}
        return ShadowResult([self._compared(policy, item.stage, name, candidates[name], verdict, live, decision)
                             for name, verdict in zip(names, judged)])

    def _compared(self, policy: str, stage: Stage, name: str, counterpart: str | None, verdict: Verdict,
                  live: Mapping[str, Verdict], decision: Decision) -> ShadowVerdict:
        reference = live.get(counterpart) if counterpart else None
        live_name = counterpart or DECISION
        if verdict.error:
            failure = "timeout" if verdict.error.startswith("timeout") else "error"
            self._failed(name)
            return self._ran(stage, name, ShadowVerdict(verdict, counterpart, compared=False), failure)
        self._failures.pop(name, None)
        if counterpart is None:
            live_failed = bool(decision.failed_open) or EVALUATOR_ERROR in decision.categories
        else:
            live_failed = reference is None or bool(reference.error)
        if live_failed:  # nothing sound to compare with
            return self._ran(stage, name, ShadowVerdict(verdict, counterpart, compared=False), "skipped_live_error")
        if reference is None:
            outcomes = compare(_acting(flags(verdict), self.settings.policies[policy]), set(decision.categories))
        else:
            outcomes = compare(flags(verdict), flags(reference))
        for category, outcome in outcomes.items():
            child(SHADOW_COMPARISONS, stage, name, live_name, category, outcome).inc()
            self._tally[(stage, name, live_name, category, outcome)] += 1
        differs = [c for c, o in outcomes.items() if o in ("shadow_only", "live_only")]
        return self._ran(stage, name, ShadowVerdict(verdict, counterpart, differs), "compared")

    def _ran(self, stage: Stage, name: str, result: ShadowVerdict, how: str) -> ShadowVerdict:
        self._count_run(stage, name, how)
        return result

    def _count_run(self, stage: Stage, name: str, how: str) -> None:
        child(SHADOW_RUNS, stage, name, how).inc()
        self._runs[(stage, name, how)] += 1

    def _failed(self, name: str) -> None:
        """One more failure in a row: at `pause_after_failures` the candidate is left out for `pause_s` (work
        handed to a stuck engine would otherwise pile up behind it, one timed-out call per item)."""
        self._failures[name] = self._failures.get(name, 0) + 1
        if self._failures[name] >= self.cfg.pause_after_failures:
            self._failures[name] = self.cfg.pause_after_failures - 1  # after the pause, one failure pauses again
            self._paused_until[name] = time.monotonic() + self.cfg.pause_s
            log.warning("shadow_paused", evaluator=name, pause_s=self.cfg.pause_s)

    # -- the tally on the audit topic, and shutdown ---------------------------------------------------
    def start_tally(self, emit: Emit) -> None:
        """Send the agreement counts through `emit` every `tally_interval_s` (and at `close`)."""
        self._sender.start(emit, periodic=any(p.input.shadow or p.output.shadow
                                              for p in self.settings.policies.values()))

    def flush_tally(self) -> dict[str, Any] | None:
        """Emit (and return) the counts gathered since the last flush; nothing when there are none."""
        return self._sender.flush()

    def _collect(self) -> dict[str, Any] | None:
        if not (self._tally or self._runs):
            return None
        fields = {
            "counts": [{"stage": s, "shadow": sh, "live": lv, "category": c, "outcome": o, "n": n}
                       for (s, sh, lv, c, o), n in sorted(self._tally.items())],
            "runs": [{"stage": s, "shadow": sh, "result": r, "n": n} for (s, sh, r), n in sorted(self._runs.items())],
        }
        self._tally.clear()
        self._runs.clear()
        return fields

    async def close(self) -> None:
        """Give running shadow evaluations `drain_s`, cancel the rest, then send the last tally."""
        self._sender.stop()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.cfg.drain_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await asyncio.sleep(0)  # done callbacks (the recorder's deferred events) run before the sink closes
        self.flush_tally()

    def state(self) -> dict[str, Any]:
        return {"inflight": self.inflight, "max_inflight": self.cfg.max_inflight}

