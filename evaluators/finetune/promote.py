"""`guardstream promote`'s gates: a candidate replaces a live evaluator only if it is no worse where it matters.

Two kinds of candidate: a `guardstream finetune` artifact that takes over the live evaluator's options
(`gate_artifact`), or another evaluator instance, a shadow, that takes its place (`gate_shadow`: the step
after shadowing).

Both evaluators judge the same rows twice: the export's test split (what reviewers labelled lately) and a
fixed canary set (clear unsafe and clear safe prompts and answers, `canary.jsonl`). On each, the candidate's
recall may drop by at most `max_recall_drop` and its false-positive rate rise by at most `max_fpr_rise`
against the live evaluator. The evaluators are given as `Instance`s; finding them in the proxy's config and
rewriting that file when every gate holds is the proxy's side (`proxy/promotion.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluators.evaluation.compare import compare
from evaluators.evaluation.datasets import LabelledRow, load_rows
from evaluators.evaluation.report import OnError
from evaluators.evaluation.runner import run_evaluator
from evaluators.finetune.candidate import candidate_options
from evaluators.finetune.data import FORMAT_OF, read_splits
from evaluators.finetune.manifest import read_manifest

CANARY = Path(__file__).with_name("canary.jsonl")


@dataclass(frozen=True, slots=True)
class Instance:
    """One evaluator as deployed: instance name, engine type, options, and how its error verdicts count."""

    name: str
    type: str
    options: Mapping[str, Any]
    on_error: OnError = "fail_open"


@dataclass(frozen=True, slots=True)
class Gate:
    dataset: str
    metric: str
    live: float
    candidate: float
    bound: float

    @property
    def ok(self) -> bool:
        if self.metric == "recall":
            return self.candidate >= self.live - self.bound - 1e-12
        return self.candidate <= self.live + self.bound + 1e-12


@dataclass(slots=True)
class PromoteResult:
    gates: list[Gate] = field(default_factory=list)
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    diff: str = ""
    backup: Path | None = None
    written: bool = False

    @property
    def accepted(self) -> bool:
        return bool(self.gates) and all(g.ok for g in self.gates)


def gates(dataset: str, result: Mapping[str, Any], max_recall_drop: float, max_fpr_rise: float) -> list[Gate]:
    live, cand = result["a"], result["b"]
    return [Gate(dataset, "recall", live["recall"], cand["recall"], max_recall_drop),
            Gate(dataset, "fpr", live["fpr"], cand["fpr"], max_fpr_rise)]


def test_rows(candidate: Path, data: Path | None) -> list[LabelledRow]:
    """The export's test split the candidate was measured on (or `data`: an export directory or a file)."""
    manifest = read_manifest(candidate)
    kind = manifest["kind"]
    source = data or Path(manifest["data"]["source"])
    if source.is_file() and data is not None:
        return load_rows(source)
    fraction = float(manifest.get("hyperparameters", {}).get("test_fraction", 0.1))
    splits = read_splits(source, kind if kind in FORMAT_OF else "classifier", fraction)
    return [row for record in splits.test for row in record.rows]


def judge_both(live: Any, candidate: Any, rows: Sequence[LabelledRow], on_error: Any) -> dict[str, Any]:
    async def go() -> tuple[Any, Any]:
        items = [r.to_item() for r in rows]
        return await run_evaluator(live, items), await run_evaluator(candidate, items)

    a, b = asyncio.run(go())
    return compare(rows, a.verdicts, b.verdicts, on_error)


def gate_artifact(candidate: Path, live: Instance, *, data: Path | None = None, canary: Path | None = None,
                  max_recall_drop: float = 0.0, max_fpr_rise: float = 0.0) -> PromoteResult:
    """An artifact against `live`, as the same type with `live`'s deployment options and the artifact's trained
    ones (`result.options`: what the config would get)."""
    options = candidate_options(candidate, live.type, live.options)
    result = PromoteResult(options=options)
    rows = {"test split": test_rows(candidate, data), "canary": load_rows(canary or CANARY)}
    _gate(result, live, Instance(f"{live.name}-candidate", live.type, options), rows, max_recall_drop, max_fpr_rise)
    return result


def gate_shadow(live: Instance, candidate: Instance, stages: Collection[str], *, data: Path,
                canary: Path | None = None, max_recall_drop: float = 0.0, max_fpr_rise: float = 0.0) -> PromoteResult:
    """Another evaluator instance against `live`, on the rows of `stages` only: the candidate takes the live
    evaluator's place in those stages (an evaluator never judges a stage it does not serve in)."""
    result = PromoteResult(options=dict(candidate.options))
    rows = {label: [r for r in found if r.stage() in stages]
            for label, found in (("test split", split_rows(data, candidate.type)),
                                 ("canary", load_rows(canary or CANARY)))}
    _gate(result, live, candidate, rows, max_recall_drop, max_fpr_rise)
    return result


def split_rows(data: Path, evaluator_type: str) -> list[LabelledRow]:
    """The test rows of an export directory (the format the evaluator type judges best), or a whole file."""
    if data.is_file():
        return load_rows(data)
    kind = "llama-guard" if evaluator_type == "llama_guard" else "classifier"
    return [row for record in read_splits(data, kind).test for row in record.rows]


def _gate(result: PromoteResult, live: Instance, cand: Instance, datasets: Mapping[str, Sequence[LabelledRow]],
          max_recall_drop: float, max_fpr_rise: float) -> None:
    """Both evaluators on each dataset (errors count as the live one's do): comparisons and gates go into
    `result`."""
    from evaluators import registry

    for label, rows in datasets.items():
        if not rows:
            raise ValueError(f"the {label} has no rows (of the stages compared): nothing to compare on")
        live_ev = registry.create(live.type, live.name, live.options)
        cand_ev = registry.create(cand.type, cand.name, cand.options)
        try:
            comparison = judge_both(live_ev, cand_ev, rows, live.on_error)
        finally:
            asyncio.run(_close(live_ev, cand_ev))
        result.comparisons[label] = comparison
        result.gates += gates(label, comparison, max_recall_drop, max_fpr_rise)


async def _close(*evaluators: Any) -> None:
    for ev in evaluators:
        await ev.aclose()
