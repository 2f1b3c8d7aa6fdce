"""`guardstream promote`: a candidate replaces a live evaluator only if it is no worse where it matters.

Two ways to name the candidate: a `guardstream finetune` artifact that takes over evaluator NAME's options
(`promote`), or a shadow evaluator of the config that takes its live counterpart's place in the policy
(`promote_shadow`: the step after shadowing).

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """An artifact replaces the options of evaluator `name` (same type, same deployment options)."""
    from proxy.config import load_settings

    settings = load_settings(config)
    if name not in settings.evaluators:
        raise ValueError(f"{config} has no evaluator {name!r} (it has: {', '.join(sorted(settings.evaluators))})")
    live_cfg = settings.evaluators[name]
    options = candidate_options(candidate, live_cfg.type, live_cfg.options)
    result = PromoteResult(options=options)
    rows = {"test split": test_rows(candidate, data), "canary": load_rows(canary or CANARY)}
    _gate(result, (name, live_cfg.type, live_cfg.options), (f"{name}-candidate", live_cfg.type, options),
          live_cfg.on_error, rows, max_recall_drop, max_fpr_rise)
    if result.accepted:
        result.diff, result.backup = rewrite_config(config, lambda raw: _set_options(raw, name, options), write)
        result.written = write
    return result


def promote_shadow(config: Path, candidate: str, *, policy: str | None = None, stage: str | None = None,
                   data: Path, canary: Path | None = None, max_recall_drop: float = 0.0,
                   max_fpr_rise: float = 0.0, write: bool = True) -> PromoteResult:
    """A shadow candidate of the config takes its live counterpart's place in the stages it shadows.

    The candidate must shadow a named live evaluator (`shadow: {CANDIDATE: LIVE}`); both judge the test
    split of `data` and the canary set, on the rows of those stages only (prompts for an input-stage
    candidate: an evaluator never judges a stage it does not serve in); if the gates hold, LIVE is replaced
    by CANDIDATE in those stages' `evaluators` and the `shadow` entry goes.
    """
    from proxy.config import load_settings

    settings = load_settings(config)
    places = [(pname, sname, stage_cfg.shadow[candidate])
              for pname, pol in settings.policies.items() for sname, stage_cfg in (("input", pol.input),
                                                                                   ("output", pol.output))
              if candidate in stage_cfg.shadow and policy in (None, pname) and stage in (None, sname)]
    if not places:
        raise ValueError(f"{candidate!r} shadows no evaluator in {config}"
                         + (f" (policy {policy}, stage {stage or 'any'})" if policy or stage else ""))
    lives = {live for _, _, live in places}
    if None in lives:
        raise ValueError(f"{candidate!r} is compared with the stage's decision: name the evaluator it would "
                         f"replace (shadow: {{{candidate}: LIVE}})")
    if len(lives) > 1:
        raise ValueError(f"{candidate!r} shadows different evaluators ({', '.join(sorted(map(str, lives)))}): "
                         "choose one with --policy/--stage")
    live = str(lives.pop())
    live_cfg, cand_cfg = settings.evaluators[live], settings.evaluators[candidate]
    result = PromoteResult(options=dict(cand_cfg.options))
    # the candidate takes the live evaluator's place only in these stages: it is measured on their rows
    stages = {sname for _, sname, _ in places}
    rows = {label: [r for r in found if r.stage() in stages]
            for label, found in (("test split", split_rows(data, cand_cfg.type)),
                                 ("canary", load_rows(canary or CANARY)))}
    _gate(result, (live, live_cfg.type, live_cfg.options), (candidate, cand_cfg.type, cand_cfg.options),
          live_cfg.on_error, rows, max_recall_drop, max_fpr_rise)
    if result.accepted:
        result.diff, result.backup = rewrite_config(
            config, lambda raw: _swap_in(raw, candidate, live, [(p, s) for p, s, _ in places]), write)
        result.written = write
    return result


def split_rows(data: Path, evaluator_type: str) -> list[LabelledRow]:
    """The test rows of an export directory (the format the evaluator type judges best), or a whole file."""
    if data.is_file():
        return load_rows(data)
    kind = "llama-guard" if evaluator_type == "llama_guard" else "classifier"
    return [row for record in read_splits(data, kind).test for row in record.rows]


def _gate(result: PromoteResult, live: tuple[str, str, Mapping[str, Any]], cand: tuple[str, str, Mapping[str, Any]],
          on_error: Any, datasets: Mapping[str, Sequence[LabelledRow]], max_recall_drop: float,
          max_fpr_rise: float) -> None:
    """Both evaluators on each dataset: comparisons and gates go into `result`."""
    from evaluators import registry

    for label, rows in datasets.items():
        if not rows:
            raise ValueError(f"the {label} has no rows (of the stages compared): nothing to compare on")
        live_ev = registry.create(live[1], live[0], live[2])
        cand_ev = registry.create(cand[1], cand[0], cand[2])
        try:
            comparison = judge_both(live_ev, cand_ev, rows, on_error)
        finally:
            asyncio.run(_close(live_ev, cand_ev))
        result.comparisons[label] = comparison
        result.gates += gates(label, comparison, max_recall_drop, max_fpr_rise)


def _set_options(raw: dict[str, Any], name: str, options: Mapping[str, Any]) -> None:
    raw["evaluators"][name]["options"] = dict(options)


def _swap_in(raw: dict[str, Any], candidate: str, live: str, places: Sequence[tuple[str, str]]) -> None:
    for policy, stage in places:
        stage_cfg = raw["policies"][policy][stage]
        stage_cfg["evaluators"] = [candidate if e == live else e for e in stage_cfg["evaluators"]]
        shadow = stage_cfg.get("shadow")
        if isinstance(shadow, dict):
            shadow.pop(candidate, None)
        elif isinstance(shadow, list) and candidate in shadow:
            shadow.remove(candidate)
        if not shadow:
            stage_cfg.pop("shadow", None)


async def _close(*evaluators: Any) -> None:
    for ev in evaluators:
        await ev.aclose()


def rewrite_config(config: Path, change: Callable[[dict[str, Any]], None],
                   write: bool = True) -> tuple[str, Path | None]:
    """Apply `change` to the parsed config; keep a timestamped backup; return the diff.

    The file is re-dumped by PyYAML (key order kept; comments are not, which is why the backup is kept).
    """
    old_text = config.read_text(encoding="utf-8")
    raw = yaml.safe_load(old_text)
    change(raw)
    new_text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    diff = "".join(difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        fromfile=str(config), tofile=f"{config} (promoted)"))
    backup = None
    if write:
        backup = config.with_name(f"{config.name}.bak-{time.strftime('%Y%m%dT%H%M%S')}")
        shutil.copy2(config, backup)
        config.write_text(new_text, encoding="utf-8")
    return diff, backup
