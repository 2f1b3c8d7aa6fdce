"""Kind `classifier`: today's `guardstream train` as a kind of `guardstream finetune`, on the export's KTO rows.

An adapter around the classifier's training API, so the command, the artifact directory (manifest,
before/after metrics on the export's test split) and `promote` treat it like the other kinds. `TRAIN` is
the one seam: point it at the replacement classifier's training function when that lands (an ONNX-served
fine-tuned encoder), with the same contract: rows file(s) in, artifact directory out, `classifier`
evaluator options `{path: DIR}` to serve it.

Warm start: the current API fits a fresh head on frozen MiniLM embeddings and cannot start from the shipped
head; `--base` names the artifact the "before" column measures (default: the shipped model) and is recorded,
so the comparison is always against what is live.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evaluators.finetune.data import read_splits
from evaluators.finetune.manifest import write_manifest, write_metrics
from evaluators.finetune.measure import before_after, evaluator_metrics
from evaluators.finetune.options import FinetuneOptions, FinetuneResult

MODEL_DIR = "model"


def _train_current(data: Path, out: Path, seed: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The current classifier trainer: returns the manifest fields worth recording.

    Its validation split keeps near-duplicate groups whole; in a small export (a handful of requests asked many
    ways) every group is too big for it and validation lacks a class. Then it trains once more without
    near-duplicate grouping (validation only calibrates and sets the threshold: the export's own test split,
    split by conversation, is what the run is measured on) and says so in the manifest.
    """
    from evaluators.classifier.train import TrainOptions, train

    grouping = True
    try:
        result = train(TrainOptions(data=[data], out=out, seed=seed), log=log)
    except ValueError as exc:
        if "lacks one class" not in str(exc):
            raise
        log(f"{exc}; training again without near-duplicate grouping (small export)")
        grouping = False
        result = train(TrainOptions(data=[data], out=out, seed=seed, near_dup=1.01), log=log)
    return {"trainer": "evaluators.classifier.train", "version": result.artifact.version,
            "threshold": result.artifact.threshold, "near_duplicate_grouping": grouping}


#: the training function (see the module docstring): (rows file, artifact dir, seed, log) -> manifest fields
TRAIN: Callable[[Path, Path, int, Callable[[str], None]], dict[str, Any]] = _train_current


def classifier_metrics(path: str | None, rows: Any) -> dict[str, Any]:
    from evaluators import registry

    options = {"path": path} if path else {}
    return evaluator_metrics(registry.create("classifier", "finetune-measure", options), rows)


def run(opts: FinetuneOptions) -> FinetuneResult:
    from evaluators.classifier import DEFAULT_MODEL_DIR

    splits = read_splits(opts.data, "classifier", opts.test_fraction)
    train_file = opts.out / "data" / "train.jsonl"
    train_file.parent.mkdir(parents=True, exist_ok=True)
    train_file.write_text("".join(json.dumps(r.raw, ensure_ascii=False) + "\n" for r in splits.train),
                          encoding="utf-8")
    test_rows = [row for record in splits.test for row in record.rows]
    base = opts.base or str(DEFAULT_MODEL_DIR)
    before = classifier_metrics(base, test_rows) if opts.before and test_rows else None
    console = opts.console
    trained = TRAIN(train_file, opts.out / MODEL_DIR, opts.seed,
                    (lambda m: console.print(m)) if console is not None else (lambda _m: None))
    model_dir = (opts.out / MODEL_DIR).resolve()
    after = classifier_metrics(str(model_dir), test_rows) if test_rows else {}
    results = before_after(before, after) if after else {"before": before, "after": None, "change": {}}
    results["test_rows"] = len(test_rows)
    write_metrics(opts.out, results)
    manifest = write_manifest(opts.out, "classifier", {
        "base_model": {"path": str(Path(base).resolve()), "id": "classifier", "warm_start": False},
        "data": {**splits.manifest(), "source": str(opts.data)}, "seed": opts.seed,
        "hyperparameters": {"test_fraction": opts.test_fraction}, "run": trained,
        "artifact": {"model": MODEL_DIR},
        "evaluator": {"type": "classifier", "options": {"path": str(model_dir)}},
    })
    return FinetuneResult(out=opts.out, manifest=manifest, metrics=results)
