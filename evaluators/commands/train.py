"""`guardstream train --data KTO.jsonl --out DIR`: train the CPU safety classifier.

Rows are KTO (`prompt`, `completion`, `label`: true = desirable = safe) or moderation
rows (`text`, `label`); see evaluators/evaluation/datasets.py. The judged text is the
completion when present, else the prompt. The artifact directory is what the
`classifier` evaluator loads (`options: {path: DIR}`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, action="append", type=Path, metavar="FILE",
                        help="training rows, JSONL or CSV (repeatable)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="artifact directory to write")
    parser.add_argument("--name", default="classifier", help="model name recorded in the artifact")
    parser.add_argument("--seed", type=int, default=0, help="seed for the split and the head (0)")
    parser.add_argument("--head", choices=("logreg", "mlp"), default="logreg", help="head on the embeddings (logreg)")
    parser.add_argument("--reg", type=float, default=None,
                        help="logreg C or MLP alpha (default: chosen on the validation split)")
    parser.add_argument("--hidden", type=int, default=64, help="MLP hidden units (64)")
    parser.add_argument("--calibration", choices=("platt", "isotonic", "none"), default="platt",
                        help="probability calibration fitted on the validation split (platt)")
    parser.add_argument("--target-fpr", type=float, default=0.05,
                        help="threshold = lowest with validation FPR at most this (0.05)")
    parser.add_argument("--val-fraction", type=float, default=0.15, help="share of rows for validation (0.15)")
    parser.add_argument("--dev-fraction", type=float, default=0.15, help="share of rows for the dev report (0.15)")
    parser.add_argument("--near-dup", type=float, default=0.9,
                        help="cosine similarity at which rows are grouped as near-duplicates (0.9)")
    parser.add_argument("--source-balance", type=float, default=0.5,
                        help="0 = every source weighs the same, 1 = weight by row count (0.5)")
    parser.add_argument("--max-length", type=int, default=256, help="tokens the embedding model reads (256)")
    parser.add_argument("--truncation", choices=("head", "head_tail"), default="head_tail",
                        help="long texts: keep the start, or the start and the end (head_tail)")
    parser.add_argument("--batch-size", type=int, default=32, help="embedding batch size (32)")
    parser.add_argument("--label-true", choices=("safe", "unsafe"), default=None,
                        help="what a boolean/0/1 label means (default: KTO rows true=safe, others true=unsafe)")
    parser.add_argument("--export-splits", action="store_true", help="also write DIR/splits/{train,val,dev}.jsonl")
    parser.add_argument("--manifest-extra", type=Path, default=None, metavar="FILE",
                        help="JSON object merged into the data manifest (sources, licences, exclusions)")


def run(args: argparse.Namespace) -> int:
    import json
    from contextlib import ExitStack

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from evaluators.classifier.train import TrainOptions, train
    from evaluators.evaluation.datasets import DataError
    from evaluators.evaluation.report import print_split_table

    console = Console()
    err = Console(stderr=True)
    extra = json.loads(args.manifest_extra.read_text(encoding="utf-8")) if args.manifest_extra else {}
    opts = TrainOptions(
        data=list(args.data), out=args.out, name=args.name, seed=args.seed, head=args.head, c=args.reg,
        hidden=args.hidden, calibration=args.calibration, target_fpr=args.target_fpr,
        val_fraction=args.val_fraction, dev_fraction=args.dev_fraction, near_dup=args.near_dup,
        source_balance=args.source_balance, max_length=args.max_length, truncation=args.truncation,
        batch_size=args.batch_size, label_true=args.label_true, export_splits=args.export_splits,
        manifest_extra=extra,
    )
    with ExitStack() as stack:
        progress = stack.enter_context(Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                                TimeElapsedColumn(), console=err))

        def bar(description: str, total: int):
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        try:
            result = train(opts, progress=bar, log=lambda m: progress.console.print(m))
        except (DataError, ValueError) as exc:
            err.print(f"guardstream train: {exc}")
            return 2
    print_split_table(result.metrics, console)
    console.print(f"artifact {result.artifact.version} written to {args.out} "
                  f"(threshold {result.artifact.threshold:.4f}; use options: {{path: {args.out}}})")
    return 0
