"""Before/after numbers on the test split, measured the way the product serves: through the evaluator."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from evaluators.base import Evaluator
from evaluators.evaluation import metrics
from evaluators.evaluation.datasets import LabelledRow
from evaluators.evaluation.report import predictions, scores_of
from evaluators.evaluation.runner import run_evaluator


def evaluator_metrics(evaluator: Evaluator, rows: Sequence[LabelledRow], batch_size: int = 16) -> dict[str, Any]:
    """Confusion-matrix metrics (positive = unsafe) of one evaluator on labelled rows; errors count as safe."""
    async def go() -> Any:
        try:
            return await run_evaluator(evaluator, [r.to_item() for r in rows], batch_size)
        finally:
            await evaluator.aclose()

    run = asyncio.run(go())
    y = [r.unsafe for r in rows]
    out = dict(metrics.summarize(y, predictions(run.verdicts, "fail_open"), scores_of(run.verdicts)))
    out["errors"] = sum(v.error is not None for v in run.verdicts)
    out["version"] = evaluator.version
    return out


def llama_guard_metrics(options: Mapping[str, Any], rows: Sequence[LabelledRow]) -> dict[str, Any]:
    """The `llama_guard` evaluator built from these options (an adapter or not) on the rows."""
    from evaluators.llama_guard import LlamaGuardEvaluator

    return evaluator_metrics(LlamaGuardEvaluator("finetune-measure", dict(options)), rows)


def before_after(before: Mapping[str, Any] | None, after: Mapping[str, Any],
                 keys: Sequence[str] = ("accuracy", "precision", "recall", "fpr", "f1", "auprc")) -> dict[str, Any]:
    """The metrics file: both sides and the change of each headline number."""
    change = {k: (after[k] - before[k]) if before and isinstance(before.get(k), (int, float))
              and isinstance(after.get(k), (int, float)) else None for k in keys}
    return {"before": dict(before) if before else None, "after": dict(after), "change": change}


def print_before_after(result: Mapping[str, Any], console: Any, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("metric", "before", "after", "change"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    before, after, change = result.get("before") or {}, result["after"], result["change"]
    for key in change:
        table.add_row(key, _number_text(before.get(key)), _number_text(after.get(key)),
                      "-" if change[key] is None else f"{change[key]:+.4f}")
    console.print(table)


def _number_text(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"
