"""`guardstream eval DATA --evaluator NAME`: measure any evaluator on labelled data.

NAME is, in order of lookup:
  classifier:PATH   the classifier evaluator with the artifact at PATH
  artifact:DIR      the evaluator that serves a `guardstream finetune` artifact (as it was measured)
  an evaluator instance of the config file (--config, else the built-in default policy)
  a registered evaluator type, built with its default options

DATA is JSONL or CSV (see evaluators/evaluation/datasets.py for the format).

The measuring is the evaluators' (`evaluators.evaluation.measure`, `.named`); this command adds the one thing
they do not know, the proxy's config file, where NAME may be an evaluator instance.
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
    from evaluators.evaluation.named import from_path, registered
    from proxy.config import load_settings

    built = from_path(spec)
    if built is not None:
        return built
    settings = load_settings(config)
    if spec in settings.evaluators:
        cfg = settings.evaluators[spec]
        return registry.create(cfg.type, spec, cfg.options), cfg.on_error
    return registered(spec, config or "the built-in default policy")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from evaluators.evaluation.datasets import DataError, load_rows
    from evaluators.evaluation.measure import error_console, measure, measure_pair
    from proxy.config import ConfigError

    console, err = Console(), error_console()
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
    built = []
    for spec in args.compare or [args.evaluator]:
        try:
            built.append(resolve_evaluator(spec, args.config))
        except (ConfigError, ValueError, ImportError) as exc:
            err.print(f"guardstream eval: cannot build evaluator {spec!r}: {exc}")
            return 2
    on_error: OnError = args.on_error or built[0][1]
    if args.compare:
        measure_pair([(spec, evaluator) for spec, (evaluator, _) in zip(args.compare, built)], rows,
                     data=str(args.data), on_error=on_error, stage=args.stage, batch_size=args.batch_size,
                     report=args.report, console=console, err=err)
        return 0
    measure(built[0][0], rows, spec=args.evaluator, data=str(args.data), on_error=on_error, stage=args.stage,
            batch_size=args.batch_size, report=args.report, plot=args.plot, compare_second=args.compare_second,
            console=console, err=err)
    return 0
