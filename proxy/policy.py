"""Turning verdicts into one decision per stage, under a policy."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from evaluators.base import Finding, Stage, Verdict
from proxy.config import EvaluatorConfig, PolicyConfig

Outcome = Literal["block", "redact", "flag", "allow"]
_RANK: dict[str, int] = {"allow": 0, "flag": 1, "redact": 2, "block": 3}

#: category recorded when a fail_closed evaluator errors
EVALUATOR_ERROR = "evaluator_error"


@dataclass(slots=True)
class Decision:
    """What the policy says about one judged item.

    `action` is what the policy calls for; `enforced` is False in shadow mode,
    where a block is only recorded. `failed_open` lists evaluators whose error
    was ignored by `on_error: fail_open` (audited, counted, visible).
    `category_actions` says what the policy wants for each of `categories` (the
    strongest of them is `action`).
    """

    stage: Stage
    action: Outcome
    categories: list[str]
    verdicts: list[Verdict]
    enforced: bool
    failed_open: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    category_actions: dict[str, Outcome] = field(default_factory=dict)
    #: the shadow evaluators' judgement of the same item, running in the background (proxy/shadow.py)
    shadow: asyncio.Task[Any] | None = None

    @property
    def blocks(self) -> bool:
        """True when the request/answer must actually be stopped."""
        return self.action == "block" and self.enforced

    @property
    def redacts(self) -> bool:
        return self.action == "redact" and self.enforced

    @property
    def evaluators(self) -> list[str]:
        return [v.evaluator for v in self.verdicts if v.error or not v.safe]

    def categories_with(self, *actions: Outcome) -> list[str]:
        """The categories whose own action is one of `actions` (e.g. the ones that blocked)."""
        return [c for c in self.categories if self.category_actions.get(c, self.action) in actions]

    @property
    def worth_auditing(self) -> bool:
        return self.action != "allow" or bool(self.failed_open)


def decide(stage: Stage, verdicts: list[Verdict], policy: PolicyConfig,
           evaluator_configs: Mapping[str, EvaluatorConfig]) -> Decision:
    """Combine verdicts: the strongest action of any unsafe category wins; errors follow `on_error`."""
    action: Outcome = "allow"
    wanted_for: dict[str, Outcome] = {}  # category -> its action, in the order met
    failed_open: list[str] = []
    for verdict in verdicts:
        if verdict.error:
            cfg = evaluator_configs.get(verdict.evaluator)
            if cfg is not None and cfg.on_error == "fail_closed":
                action = "block"
                wanted_for[EVALUATOR_ERROR] = "block"
            else:
                failed_open.append(verdict.evaluator)
            continue
        if verdict.safe:
            continue
        for category in verdict.categories or ["unsafe"]:
            wanted = policy.action_for(category)
            if wanted == "allow":
                continue
            wanted_for.setdefault(category, wanted)
            if _RANK[wanted] > _RANK[action]:
                action = wanted
    # positional (stage, action, categories, verdicts, enforced, failed_open, latency_ms, category_actions): built
    # with keywords, a dataclass has them packed into a dict first, on every judged item
    return Decision(stage, action, list(wanted_for), verdicts, policy.mode == "enforce", failed_open, 0.0, wanted_for)


def redacted_findings(decision: Decision, policy: PolicyConfig) -> list[Finding]:
    """The findings `redact` masks: those of categories the policy redacts (a flagged injection phrase beside a
    redacted e-mail address stays as written)."""
    return [f for v in decision.verdicts if not v.error for f in v.findings
            if policy.action_for(f.category) == "redact"]
