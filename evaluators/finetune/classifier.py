"""Kind `classifier`: the shipped classifier fine-tuned on the export's KTO rows, as a kind of `finetune`.

The command, the artifact directory (manifest, before/after metrics on the export's test split) and `promote`
treat it like the other kinds; the result is served by the `classifier` evaluator (`options: {path: DIR}`).

Warm start: from an encoder artifact (`--base`, default the shipped model) the torch model is rebuilt from its
ONNX weights (`classifier.warm_start`: frozen lower layers from the backbone, the fine-tuned top layers and
heads read back from the graph) and training goes on from there on the reviewers' rows, at a fine-tuning
learning rate; it then packages like `guardstream train --kind encoder` (int8 ONNX, calibration, operating
points). Needs the `hf` extra (the backbone's weights). A base in the older embedding-head format (frozen
MiniLM + a logistic head, e.g. `models/minilm-v1`) has no weights to start from: a fresh head is fitted
(`TRAIN`), and the "before" column still measures that base.
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


#: the embedding-head trainer (see the module docstring): (rows file, artifact dir, seed, log) -> manifest fields
TRAIN: Callable[[Path, Path, int, Callable[[str], None]], dict[str, Any]] = _train_current

#: fine-tuning from a trained model, small batches (exports are small). The encoder layers learn at twice the
#: build recipe's rate: at its 5e-5 the heads did most of the learning on a review export and every score drifted
#: up, so on one machine (AMD EPYC) a safe answer of the canary set crossed the shipped threshold; at 1e-4 the
#: layers learn the reviewers' rule and the canary held, seeds 0-2 (tests/test_finetune.py)
WARM_LR, WARM_HEAD_LR, WARM_BATCH = 1e-4, 1e-3, 16


def is_encoder_artifact(path: str | Path) -> bool:
    """An artifact in the encoder format (`runtime.FORMAT`), which a warm start can rebuild."""
    from evaluators.classifier.artifact import ArtifactError
    from evaluators.classifier.runtime import FORMAT, read_meta

    try:
        return read_meta(path).get("format") == FORMAT
    except ArtifactError:
        return False


def train_warm(data: Path, out: Path, build: Path, base: Path, opts: FinetuneOptions,
               log: Callable[[str], None]) -> dict[str, Any]:
    """Fine-tune the encoder artifact `base` on the rows in `data`; writes an artifact to `out`."""
    from tokenizers import Tokenizer

    from evaluators.classifier.encoder_train import EncoderConfig, describe, fit, prepare
    from evaluators.classifier.encoding import Encoder
    from evaluators.classifier.finalize import package
    from evaluators.classifier.runtime import TOKENIZER_FILE, read_meta
    from evaluators.classifier.warm_start import load_for_training
    from evaluators.evaluation.datasets import load_rows

    if opts.torch_threads:
        import torch

        torch.set_num_threads(opts.torch_threads)
    meta = read_meta(base)
    model, trainable = load_for_training(base)
    tok_json = json.loads((base / TOKENIZER_FILE).read_text(encoding="utf-8"))
    enc = meta["encoding"]
    encoder = Encoder(Tokenizer.from_str(json.dumps(tok_json)), int(enc["max_length"]), int(enc["prompt_in_pair"]))
    config = EncoderConfig(seed=opts.seed, epochs=max(1, round(opts.epochs)), trainable_layers=trainable,
                           lr=WARM_LR, head_lr=WARM_HEAD_LR, batch_size=WARM_BATCH,
                           val_fraction=0.2, dev_fraction=0.1)
    prepared = prepare(load_rows(data), config)
    fitted = fit(prepared, model.bert, encoder, config, init=model, log=log)
    training = {**describe(config), "history": fitted.history, "warm_start": meta["version"],
                "backbone": meta.get("training", {}).get("backbone"),
                "vocabulary": meta.get("training", {}).get("vocabulary")}
    package(out, build, fitted.model, tok_json, None, prepared, [], training, {"files": [str(data)]},
            pools=("(val)",), name=f"{meta.get('name', 'classifier')}+finetune", log=log,
            base_meta=meta)
    artifact = read_meta(out)
    return {"trainer": "evaluators.classifier.encoder_train (warm start)", "version": artifact["version"],
            "warm_start_from": meta["version"], "epochs": config.epochs, "lr": config.lr,
            "history": fitted.history}


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
    log: Callable[[str], None] = (lambda m: console.print(m)) if console is not None else (lambda _m: None)
    warm = is_encoder_artifact(base)
    if warm:
        trained = train_warm(train_file, opts.out / MODEL_DIR, opts.out / "build", Path(base), opts, log)
    else:
        trained = TRAIN(train_file, opts.out / MODEL_DIR, opts.seed, log)
    model_dir = (opts.out / MODEL_DIR).resolve()
    after = classifier_metrics(str(model_dir), test_rows) if test_rows else {}
    results: dict[str, Any] = (before_after(before, after) if after
                               else {"before": before, "after": None, "change": {}})
    results["test_rows"] = len(test_rows)
    write_metrics(opts.out, results)
    manifest = write_manifest(opts.out, "classifier", {
        "base_model": {"path": str(Path(base).resolve()), "id": "classifier", "warm_start": warm},
        "data": {**splits.manifest(), "source": str(opts.data)}, "seed": opts.seed,
        "hyperparameters": {"test_fraction": opts.test_fraction}, "run": trained,
        "artifact": {"model": MODEL_DIR},
        "evaluator": {"type": "classifier", "options": {"path": str(model_dir)}},
    })
    return FinetuneResult(out=opts.out, manifest=manifest, metrics=results)
