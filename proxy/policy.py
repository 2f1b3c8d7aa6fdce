"""Turning verdicts into one decision per stage, under a policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

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
    """

    stage: Stage
    action: Outcome
    categories: list[str]
    verdicts: list[Verdict]
    enforced: bool
    failed_open: list[str] = field(default_factory=list)
    latency_ms: float = 0.0

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

    @property
    def worth_auditing(self) -> bool:
        return self.action != "allow" or bool(self.failed_open)


def decide(stage: Stage, verdicts: list[Verdict], policy: PolicyConfig,
           evaluator_configs: Mapping[str, EvaluatorConfig]) -> Decision:
    """Combine verdicts: the strongest action of any unsafe category wins; errors follow `on_error`."""
    action: Outcome = "allow"
    categories: list[str] = []
    failed_open: list[str] = []
    for verdict in verdicts:
        if verdict.error:
            cfg = evaluator_configs.get(verdict.evaluator)
            if cfg is not None and cfg.on_error == "fail_closed":
                action = "block"
                if EVALUATOR_ERROR not in categories:
                    categories.append(EVALUATOR_ERROR)
            else:
                failed_open.append(verdict.evaluator)
            continue
        if verdict.safe:
            continue
        for category in verdict.categories or ["unsafe"]:
            wanted = policy.action_for(category)
            if wanted == "allow":
                continue
            if category not in categories:
                categories.append(category)
            if _RANK[wanted] > _RANK[action]:
                action = wanted
    return Decision(stage=stage, action=action, categories=categories, verdicts=verdicts,
                    enforced=policy.mode == "enforce", failed_open=failed_open)


def redacted_findings(decision: Decision, policy: PolicyConfig) -> list[Finding]:
    """The findings `redact` masks: those of categories the policy redacts (a flagged injection phrase beside a
    redacted e-mail address stays as written)."""
    return [f for v in decision.verdicts if not v.error for f in v.findings
            if policy.action_for(f.category) == "redact"]
