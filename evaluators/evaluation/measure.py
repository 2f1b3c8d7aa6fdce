"""Measure evaluators on labelled rows as `guardstream eval` shows it: progress bars on stderr, tables on
stdout, then the JSON report and the precision-recall plot where asked.

`measure` judges the rows with one evaluator; `measure_pair` with two (`--compare A B`): metrics side by
side, disagreements, McNemar's test. Both close the evaluators they were given.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from evaluators.base import Stage
from evaluators.evaluation import report as rep
from evaluators.evaluation.compare import compare, print_comparison
from evaluators.evaluation.datasets import LabelledRow
from evaluators.evaluation.runner import RunOutput, run_evaluator


def error_console() -> Console:
    """Where progress bars and one-line errors go: stderr, text printed as it is."""
    return Console(stderr=True, soft_wrap=True, markup=False, highlight=False)


def measure(evaluator: Any, rows: Sequence[LabelledRow], *, spec: str, data: str, on_error: rep.OnError,
            stage: Stage | None = None, batch_size: int = 32, report: str | None = None, plot: str | None = None,
            compare_second: bool = False, console: Console | None = None, err: Console | None = None) -> None:
    """One evaluator (named `spec`) on the rows of `data`; `compare_second`: a cascade's second stage also
    judges every item alone, and the report says what skipping it costs."""
    console = console or Console()
    err = err or error_console()
    items = [r.to_item(stage) for r in rows]
    second_evaluator = getattr(evaluator, "second", None) if compare_second else None
    if compare_second and second_evaluator is None:
        err.print("guardstream eval: --compare-second needs a cascade evaluator; ignored")

    async def go() -> tuple[RunOutput, RunOutput | None]:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=err, transient=False) as progress:
            task = progress.add_task(f"evaluating with {evaluator.name}", total=len(items))
            main = await run_evaluator(evaluator, items, batch_size, lambda n: progress.advance(task, n))
            second = None
            if second_evaluator is not None:
                task2 = progress.add_task(f"second stage alone ({second_evaluator.name})", total=len(items))
                second = await run_evaluator(second_evaluator, items, batch_size,
                                             lambda n: progress.advance(task2, n))
        await evaluator.aclose()
        return main, second

    main_run, second_run = asyncio.run(go())
    result = rep.build_report(rows, main_run, evaluator=evaluator, spec=spec, data=data, stage=stage,
                              on_error=on_error, second=second_run)
    rep.print_report(result, console)
    if report:
        rep.write_json(result, report)
        console.print(f"report: {report}")
    if plot:
        y = [r.unsafe for r in rows]
        curves = [(evaluator.name, y, rep.scores_of(main_run.verdicts), rep.predictions(main_run.verdicts, on_error))]
        if main_run.first is not None:
            curves.append((f"first stage ({evaluator.first.name})", y, rep.scores_of(main_run.first),
                           rep.predictions(main_run.first, on_error)))
        if second_run is not None and second_evaluator is not None:
            curves.append((f"second alone ({second_evaluator.name})", y, rep.scores_of(second_run.verdicts),
                           rep.predictions(second_run.verdicts, on_error)))
        rep.plot_pr(plot, curves, f"{spec} on {Path(data).name}")
        console.print(f"plot: {plot}")


def measure_pair(evaluators: Sequence[tuple[str, Any]], rows: Sequence[LabelledRow], *, data: str,
                 on_error: rep.OnError, stage: Stage | None = None, batch_size: int = 32, report: str | None = None,
                 console: Console | None = None, err: Console | None = None) -> None:
    """Two (spec, evaluator) pairs on the same items, then metrics side by side, disagreements, McNemar."""
    console = console or Console()
    err = err or error_console()
    items = [r.to_item(stage) for r in rows]

    async def go() -> list[RunOutput]:
        runs = []
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err) as progress:
            for spec, evaluator in evaluators:
                task = progress.add_task(f"evaluating with {spec}", total=len(items))
                runs.append(await run_evaluator(evaluator, items, batch_size,
                                                functools.partial(progress.advance, task)))
                await evaluator.aclose()
        return runs

    (spec_a, ev_a), (spec_b, ev_b) = evaluators
    run_a, run_b = asyncio.run(go())
    result = compare(rows, run_a.verdicts, run_b.verdicts, on_error)
    result.update({"schema": "guardstream.compare.v1", "data": data, "on_error": on_error,
                   "evaluators": {"a": {"spec": spec_a, "version": ev_a.version},
                                  "b": {"spec": spec_b, "version": ev_b.version}}})
    print_comparison(result, (spec_a, spec_b), console)
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        console.print(f"report: {report}")
