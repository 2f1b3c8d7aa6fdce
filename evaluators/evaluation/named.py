"""Evaluators named on the command line without a config file: `classifier:PATH`, `artifact:DIR`, a type.

`guardstream eval --evaluator NAME` looks NAME up in this order: `classifier:PATH` and `artifact:DIR`
(`from_path`), an evaluator instance of the proxy's config (the command's own business), then a registered
type built with its default options (`registered`). Each returns the evaluator and how its error verdicts
count (`fail_open`: only a config instance says otherwise).
"""

from __future__ import annotations

from evaluators import registry
from evaluators.base import Evaluator
from evaluators.evaluation.report import OnError


def from_path(spec: str) -> tuple[Evaluator, OnError] | None:
    """The evaluator `classifier:PATH` or `artifact:DIR` names (None: NAME is neither form)."""
    if spec.startswith("classifier:"):
        return registry.create("classifier", "classifier", {"path": spec.split(":", 1)[1]}), "fail_open"
    if spec.startswith("artifact:"):
        from evaluators.finetune.candidate import artifact_evaluator

        kind, options = artifact_evaluator(spec.split(":", 1)[1])
        return registry.create(kind, spec, options), "fail_open"
    return None


def registered(spec: str, where: str) -> tuple[Evaluator, OnError]:
    """A registered evaluator type with its default options; `where` names what else was searched (the
    config file), for the message that ends the command when NAME is nothing known."""
    if spec in registry.EVALUATOR_TYPES:
        return registry.create(spec, spec, {}), "fail_open"
    raise SystemExit(f"guardstream eval: {spec!r} is neither an evaluator in {where} nor a registered type "
                     f"({', '.join(sorted(registry.EVALUATOR_TYPES))}), nor classifier:PATH")
