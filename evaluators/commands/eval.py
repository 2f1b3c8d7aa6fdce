"""`guardstream eval DATA --evaluator NAME`: measure any evaluator on labelled data.

NAME is, in order of lookup:
  classifier:PATH   the classifier evaluator with the artifact at PATH
  artifact:DIR      the evaluator that serves a `guardstream finetune` artifact (as it was measured)
  an evaluator instance of the config file (--config, else the built-in default policy)
  a registered evaluator type, built with its default options

DATA is JSONL or CSV (see evaluators/evaluation/datasets.py for the format).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evaluators.evaluation.report import OnError

EXAMPLES = """examples:
  guardstream eval data/test.jsonl --evaluator classifier --report out/report.json --plot out/pr.png
  guardstream eval data/test.csv --evaluator classifier:path/to/artifact --stage input
  guardstream eval data/test.jsonl --evaluator guard --config guardstream.yaml --compare-second
  guardstream eval export/llamaguard/test.jsonl --compare llama_guard artifact:runs/lg-v2 --config guardstream.yaml
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("data", metavar="DATA", help="labelled JSONL or CSV (text | prompt[/completion], label)")
    parser.add_argument("--evaluator", metavar="NAME",
                        help="config instance name, registered type, classifier:PATH or artifact:DIR")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                        help="judge the data with two evaluators: both metrics, their disagreements, McNemar's test")
    parser.add_argument("--stage", choices=("input", "output"), default=None,
                        help="judge every row as this stage (default: output when a row has a completion)")
    parser.add_argument("--config", metavar="FILE", default=None, help="guardstream config file defining NAME")
    parser.add_argument("--report", metavar="OUT.json", default=None, help="write the JSON report here")
    parser.add_argument("--plot", metavar="OUT.png", default=None, help="write the precision-recall curve here")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="items per evaluate() call (32)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="read only the first N rows")
    parser.add_argument("--label-true", choices=("safe", "unsafe"), default=None,
                        help="what a boolean/0/1 label means (default: KTO rows true=safe, others true=unsafe)")
    parser.add_argument("--on-error", choices=("fail_open", "fail_closed"), default=None,
                        help="how error verdicts count (default: the config's on_error, else fail_open)")
    parser.add_argument("--compare-second", action="store_true",
                        help="cascade only: also run the second evaluator on every item and report the recall cost")


def resolve_evaluator(spec: str, config: str | None) -> tuple[Any, OnError]:
    """Build the evaluator NAME names; returns (evaluator, on_error from the config or fail_open)."""
    from evaluators import registry

    if spec.startswith("classifier:"):
        return registry.create("classifier", "classifier", {"path": spec.split(":", 1)[1]}), "fail_open"
    if spec.startswith("artifact:"):
        from evaluators.finetune.candidate import artifact_evaluator

        kind, options = artifact_evaluator(spec.split(":", 1)[1])
        return registry.create(kind, spec, options), "fail_open"
    from proxy.config import load_settings

    settings = load_settings(config)
    if spec in settings.evaluators:
        cfg = settings.evaluators[spec]
        return registry.create(cfg.type, spec, cfg.options), cfg.on_error
    if spec in registry.EVALUATOR_TYPES:
        return registry.create(spec, spec, {}), "fail_open"
    where = config or "the built-in default policy"
    raise SystemExit(f"guardstream eval: {spec!r} is neither an evaluator in {where} nor a registered type "
                     f"({', '.join(sorted(registry.EVALUATOR_TYPES))}), nor classifier:PATH")


def run(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from evaluators.evaluation import report as rep
    from evaluators.evaluation.datasets import DataError, load_rows
    from evaluators.evaluation.runner import run_evaluator
    from proxy.config import ConfigError

    console = Console()
    err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
    if args.batch_size < 1:
        err.print("guardstream eval: --batch-size must be >= 1")
        return 2
    if (args.evaluator is None) == (args.compare is None):
        err.print("guardstream eval: name one evaluator (--evaluator NAME) or two (--compare A B)")
        return 2
    try:
        rows = load_rows(args.data, label_true=args.label_true, limit=args.limit)
    except DataError as exc:
        err.print(f"guardstream eval: {exc}")
        return 2
    if not rows:
        err.print(f"guardstream eval: {args.data} has no rows")
        return 2
    if args.compare:
        return run_compare(args, rows, console, err)
    try:
        evaluator, config_on_error = resolve_evaluator(args.evaluator, args.config)
    except (ConfigError, ValueError, ImportError) as exc:
        err.print(f"guardstream eval: cannot build evaluator {args.evaluator!r}: {exc}")
        return 2
    on_error: OnError = args.on_error or config_on_error
    items = [r.to_item(args.stage) for r in rows]
    second_evaluator = getattr(evaluator, "second", None) if args.compare_second else None
    if args.compare_second and second_evaluator is None:
        err.print("guardstream eval: --compare-second needs a cascade evaluator; ignored")

    async def go() -> tuple[Any, Any]:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=err, transient=False) as progress:
            task = progress.add_task(f"evaluating with {evaluator.name}", total=len(items))
            main = await run_evaluator(evaluator, items, args.batch_size, lambda n: progress.advance(task, n))
            second = None
            if second_evaluator is not None:
                task2 = progress.add_task(f"second stage alone ({second_evaluator.name})", total=len(items))
                second = await run_evaluator(second_evaluator, items, args.batch_size,
                                             lambda n: progress.advance(task2, n))
        await evaluator.aclose()
        return main, second

    main_run, second_run = asyncio.run(go())
    report = rep.build_report(rows, main_run, evaluator=evaluator, spec=args.evaluator, data=str(args.data),
                              stage=args.stage, on_error=on_error, second=second_run)
    rep.print_report(report, console)
    if args.report:
        rep.write_json(report, args.report)
        console.print(f"report: {args.report}")
    if args.plot:
        y = [r.unsafe for r in rows]
        curves = [(evaluator.name, y, rep.scores_of(main_run.verdicts), rep.predictions(main_run.verdicts, on_error))]
        if main_run.first is not None:
            curves.append((f"first stage ({evaluator.first.name})", y, rep.scores_of(main_run.first),
                           rep.predictions(main_run.first, on_error)))
        if second_run is not None and second_evaluator is not None:
            curves.append((f"second alone ({second_evaluator.name})", y, rep.scores_of(second_run.verdicts),
                           rep.predictions(second_run.verdicts, on_error)))
        rep.plot_pr(args.plot, curves, f"{args.evaluator} on {Path(args.data).name}")
        console.print(f"plot: {args.plot}")
    return 0



def run_compare(args: argparse.Namespace, rows: Any, console: Any, err: Any) -> int:
    """`--compare A B`: both evaluators on the same items, then metrics side by side, disagreements, McNemar."""
    import asyncio
    import functools
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from evaluators.evaluation.compare import compare, print_comparison
    from evaluators.evaluation.runner import run_evaluator
    from proxy.config import ConfigError

    built = []
    for spec in args.compare:
        try:
            built.append(resolve_evaluator(spec, args.config))
        except (ConfigError, ValueError, ImportError) as exc:
            err.print(f"guardstream eval: cannot build evaluator {spec!r}: {exc}")
            return 2
    on_error: OnError = args.on_error or built[0][1]
    items = [r.to_item(args.stage) for r in rows]

    async def go() -> list[Any]:
        runs = []
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err) as progress:
            for spec, (evaluator, _) in zip(args.compare, built):
                task = progress.add_task(f"evaluating with {spec}", total=len(items))
                runs.append(await run_evaluator(evaluator, items, args.batch_size,
                                                functools.partial(progress.advance, task)))
                await evaluator.aclose()
        return runs

    run_a, run_b = asyncio.run(go())
    result = compare(rows, run_a.verdicts, run_b.verdicts, on_error)
    result.update({"schema": "guardstream.compare.v1", "data": str(args.data), "on_error": on_error,
                   "evaluators": {"a": {"spec": args.compare[0], "version": built[0][0].version},
                                  "b": {"spec": args.compare[1], "version": built[1][0].version}}})
    print_comparison(result, (args.compare[0], args.compare[1]), console)
    if args.report:
        from pathlib import Path

        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        console.print(f"report: {args.report}")
    return 0
