"""`guardstream train --data KTO.jsonl --out DIR`: train the CPU safety classifier.

Rows are KTO (`prompt`, `completion`, `label`: true = desirable = safe) or moderation
rows (`text`, `label`); see evaluators/evaluation/datasets.py. A row with a completion
trains the answer stage (the answer read after its prompt), else the prompt stage. The
artifact directory is what the `classifier` evaluator loads (`options: {path: DIR}`).

`--kind encoder`: the shipped model's recipe (multilingual-e5-small, top layers fine-tuned, int8
ONNX; needs the `hf` extra to train, only the base install to serve; tens of minutes per 10k rows on a CPU).
`--kind embedding-head` (default, minutes): frozen MiniLM embeddings + a logistic head.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, action="append", type=Path, metavar="FILE",
                        help="training rows, JSONL or CSV (repeatable)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="artifact directory to write")
    parser.add_argument("--name", default="classifier", help="model name recorded in the artifact")
    parser.add_argument("--seed", type=int, default=0, help="seed for the split and the head (0)")
    parser.add_argument("--kind", choices=("encoder", "embedding-head"), default="embedding-head",
                        help="embedding-head: frozen MiniLM + logistic head (default, minutes); encoder: the shipped "
                             "model's recipe, fine-tuned multilingual-e5-small served by ONNX (slow on CPU)")
    parser.add_argument("--epochs", type=int, default=3, help="encoder: training epochs (3)")
    parser.add_argument("--trainable-layers", type=int, default=2, help="encoder: top layers fine-tuned (2)")
    parser.add_argument("--pool", action="append", type=Path, default=[], metavar="FILE",
                        help="encoder: held-out benign prompts (repeatable) whose false alarms set the prompt "
                             "threshold (<= 2%% on each); default: the val split's safe prompts")
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


def run_encoder(args: argparse.Namespace) -> int:
    """Fine-tune the encoder on the rows and write an ONNX artifact (the shipped model's recipe)."""
    import json
    from dataclasses import replace

    from rich.console import Console

    from evaluators.classifier.encoder_train import EncoderConfig, describe, fit, prepare
    from evaluators.classifier.finalize import package
    from evaluators.classifier.progress import rich_progress
    from evaluators.evaluation.datasets import DataError, load_rows

    err = Console(stderr=True)
    try:
        rows = [r for path in args.data for r in load_rows(path, label_true=args.label_true)]
        pools = [replace(r, source=f"pool{i}") for i, path in enumerate(args.pool)
                 for r in load_rows(path, label_true=args.label_true) if not r.unsafe]
    except DataError as exc:
        err.print(f"guardstream train: {exc}")
        return 2
    from tokenizers import Tokenizer

    from evaluators.classifier import backbone
    from evaluators.classifier.encoding import Encoder

    config = EncoderConfig(seed=args.seed, epochs=args.epochs, trainable_layers=args.trainable_layers,
                           val_fraction=args.val_fraction, dev_fraction=args.dev_fraction,
                           source_balance=args.source_balance)
    extra = json.loads(args.manifest_extra.read_text(encoding="utf-8")) if args.manifest_extra else {}
    try:
        tok_json = json.loads(backbone.tokenizer_file().read_text(encoding="utf-8"))
        with rich_progress() as (bar, log):
            prepared = prepare(rows, config)
            fitted = fit(prepared, backbone.load_bert(), Encoder(Tokenizer.from_str(json.dumps(tok_json))), config,
                         progress=bar, log=log)
            names = tuple(sorted({r.source or "" for r in pools})) or ("(val)",)
            metrics = package(args.out, args.out / "build", fitted.model, tok_json, None, prepared, pools,
                              {**describe(config), "history": fitted.history, "backbone": backbone.BACKBONE_ID},
                              {"files": [str(p) for p in args.data], **extra}, pools=names, name=args.name,
                              log=log, progress=bar)
    except (backbone.BackboneMissing, ValueError) as exc:
        err.print(f"guardstream train: {exc}")
        return 2
    dev = metrics["dev"]["default"]["slices"]
    for stage in ("input", "output"):
        if stage in dev:
            m = dev[stage]
            Console().print(f"dev {stage}: n={m['n']} precision={m['precision']:.3f} recall={m['recall']:.3f} "
                            f"f1={m['f1']:.3f} fpr={m['fpr']:.3f}")
    Console().print(f"artifact {metrics['version']} written to {args.out} (use options: {{path: {args.out}}})")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.kind == "encoder":
        return run_encoder(args)
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

        def bar(description: str, total: int) -> Callable[[int], None]:
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
