"""`guardstream promote`: a candidate replaces a live evaluator only if it is no worse where it matters.

Both evaluators judge the same rows twice: the export's test split (what reviewers labelled lately) and a
fixed canary set (clear unsafe and clear safe prompts and answers, `canary.jsonl`). On each, the candidate's
recall may drop by at most `max_recall_drop` and its false-positive rate rise by at most `max_fpr_rise`
against the live evaluator. If every gate holds, the config file gets the candidate's options (the old
file is kept as a backup) and the diff is printed; if one fails, nothing is written.
"""

from __future__ import annotations

import asyncio
import difflib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from evaluators.evaluation.compare import compare
from evaluators.evaluation.datasets import LabelledRow, load_rows
from evaluators.evaluation.runner import run_evaluator
from evaluators.finetune.candidate import candidate_options
from evaluators.finetune.data import FORMAT_OF, read_splits
from evaluators.finetune.manifest import read_manifest

CANARY = Path(__file__).with_name("canary.jsonl")


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


def promote(candidate: Path, config: Path, name: str, *, data: Path | None = None, canary: Path | None = None,
            max_recall_drop: float = 0.0, max_fpr_rise: float = 0.0, write: bool = True) -> PromoteResult:
    from evaluators import registry
    from proxy.config import load_settings

    settings = load_settings(config)
    if name not in settings.evaluators:
        raise ValueError(f"{config} has no evaluator {name!r} (it has: {', '.join(sorted(settings.evaluators))})")
    live_cfg = settings.evaluators[name]
    result = PromoteResult(options=candidate_options(candidate, live_cfg.type, live_cfg.options))
    datasets = {"test split": test_rows(candidate, data), "canary": load_rows(canary or CANARY)}
    for label, rows in datasets.items():
        if not rows:
            raise ValueError(f"the {label} has no rows: nothing to compare on")
        live = registry.create(live_cfg.type, name, live_cfg.options)
        cand = registry.create(live_cfg.type, f"{name}-candidate", result.options)
        try:
            comparison = judge_both(live, cand, rows, live_cfg.on_error)
        finally:
            asyncio.run(_close(live, cand))
        result.comparisons[label] = comparison
        result.gates += gates(label, comparison, max_recall_drop, max_fpr_rise)
    if result.accepted:
        result.diff, result.backup = rewrite_config(config, name, result.options, write=write)
        result.written = write
    return result


async def _close(*evaluators: Any) -> None:
    for ev in evaluators:
        await ev.aclose()


def rewrite_config(config: Path, name: str, options: Mapping[str, Any], write: bool = True) -> tuple[str, Path | None]:
    """Point `evaluators.NAME.options` at the candidate; keep a timestamped backup; return the diff.

    The file is re-dumped by PyYAML (key order kept; comments are not, which is why the backup is kept).
    """
    old_text = config.read_text(encoding="utf-8")
    raw = yaml.safe_load(old_text)
    raw["evaluators"][name]["options"] = dict(options)
    new_text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    diff = "".join(difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        fromfile=str(config), tofile=f"{config} (promoted)"))
    backup = None
    if write:
        backup = config.with_name(f"{config.name}.bak-{time.strftime('%Y%m%dT%H%M%S')}")
        shutil.copy2(config, backup)
        config.write_text(new_text, encoding="utf-8")
    return diff, backup
