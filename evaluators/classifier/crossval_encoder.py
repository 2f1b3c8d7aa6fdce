"""Leave one source out, for the encoder recipe and for cheaper stand-ins (backbone comparison).

    python -m evaluators.classifier.crossval_encoder --data build/classifier/default_train.jsonl \
        --mode frozen-e5 --json build/classifier/loso_frozen_e5.json
    python -m evaluators.classifier.crossval_encoder --data ... --mode finetune --sources advbench,cold_offensive

Modes (the same grouped split as the build; source S is removed from train and val, then all of S
is scored):
* `finetune`: the shipped recipe (top layers + heads, `encoder_train.fit`), fewer epochs allowed;
* `frozen-e5`: logistic regression on mean-pooled frozen multilingual-e5-small states (layer 10);
* `frozen-minilm`: logistic regression on all-MiniLM-L6-v2 sentence embeddings of the judged text
  (the previous default's recipe).
An unsafe source reports recall, a safe source the false-positive rate, at a threshold chosen on
val (5% false positives), plus a threshold-free AUC of S against the other class of the dev split.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluators.classifier.crossval import auc
from evaluators.evaluation.datasets import LabelledRow, load_rows

if TYPE_CHECKING:  # scikit-learn and the encoder stack are imported by the modes that use them
    from sklearn.linear_model import LogisticRegression

    from evaluators.classifier.encoding import Judged


def _threshold_at_fpr(scores: np.ndarray, y: np.ndarray, fpr: float = 0.05) -> float:
    neg = np.sort(scores[~y])[::-1]
    k = int(np.floor(fpr * len(neg)))
    return float(np.nextafter(neg[k], np.inf)) if k < len(neg) else 0.0


def _logreg(x: np.ndarray, y: np.ndarray, w: np.ndarray, seed: int) -> LogisticRegression:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=4.0, max_iter=2000, random_state=seed)
    clf.fit(x, y, sample_weight=w)
    return clf


def _features(mode: str, rows: Sequence[LabelledRow], cache_dir: Path) -> np.ndarray:
    if mode == "frozen-minilm":
        from evaluators.classifier.embedding import shared_embedder

        return shared_embedder().embed([r.text for r in rows])
    import json as _json

    from tokenizers import Tokenizer

    from evaluators.classifier import backbone
    from evaluators.classifier.encoder_train import compute_states
    from evaluators.classifier.encoding import Encoder
    from evaluators.classifier.state_cache import StateCache

    encoder = Encoder(Tokenizer.from_str(_json.dumps(_json.loads(backbone.tokenizer_file().read_text()))))
    cache = StateCache(cache_dir, (10,), "e5q4")
    missing = cache.missing(encoder.ids([_judged(r) for r in rows]))
    states = compute_states(backbone.load_bert() if missing else None, encoder, rows, 10, cache)
    x = np.stack([s.astype(np.float32).mean(0) for s in states])
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def _judged(row: LabelledRow) -> Judged:
    from evaluators.classifier.encoder_train import judged

    return judged(row)


def run(rows: list[LabelledRow], splits: list[str], mode: str, names: Sequence[str], seed: int, cache_dir: Path,
        epochs: int = 1) -> list[dict[str, Any]]:
    from evaluators.classifier.encoder_train import sample_weights

    y = np.array([r.unsafe for r in rows])
    src = np.array([r.source or "" for r in rows])
    split = np.array(splits)
    x = None if mode == "finetune" else _features(mode, rows, cache_dir)
    results = []
    for name in names:
        keep = src != name
        tr, va = np.where(keep & (split == "train"))[0], np.where(keep & (split == "val"))[0]
        held, ref = np.where(~keep)[0], None
        if x is None:  # finetune mode: no fixed features, a model per held-out source
            scores_all = _finetune_scores(rows, split, keep, seed, cache_dir, epochs)
        else:
            w = sample_weights([rows[i] for i in tr], 0.5)
            clf = _logreg(x[tr], y[tr], w, seed)
            scores_all = clf.decision_function(x)
        t = _threshold_at_fpr(scores_all[va], y[va])
        unsafe = bool(y[held].mean() >= 0.5)
        ref = np.where(keep & (split == "dev") & (y != unsafe))[0]
        results.append({"source": name, "label": "unsafe" if unsafe else "safe", "n": int(len(held)),
                        "stage": rows[held[0]].stage(), "flagged": float((scores_all[held] >= t).mean()),
                        "auc": auc(scores_all[held], scores_all[ref]) if unsafe else auc(scores_all[ref], scores_all[held])})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def _finetune_scores(rows: list[LabelledRow], split: np.ndarray, keep: np.ndarray, seed: int, cache_dir: Path,
                     epochs: int) -> np.ndarray:
    import json as _json

    from tokenizers import Tokenizer

    from evaluators.classifier import backbone
    from evaluators.classifier.encoder_train import EncoderConfig, Prepared, compute_states, fit, split_model, top_logits
    from evaluators.classifier.encoding import Encoder
    from evaluators.classifier.state_cache import StateCache

    encoder = Encoder(Tokenizer.from_str(_json.dumps(_json.loads(backbone.tokenizer_file().read_text()))))
    cache = StateCache(cache_dir, (10,), "e5q4")
    config = EncoderConfig(seed=seed, epochs=epochs)
    masked = [s if k else "heldout" for s, k in zip(split.tolist(), keep.tolist())]
    bert = backbone.load_bert()
    fitted = fit(Prepared(rows, masked, {}, 0), bert, encoder, config, cache, log=lambda m: print(m, file=sys.stderr))
    states = compute_states(fitted.model.bert, encoder, rows, 12 - config.trainable_layers, cache)
    top = split_model(fitted.model.bert, config.trainable_layers, fitted.model.heads)
    return top_logits(top, states)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="training rows with a source field")
    parser.add_argument("--mode", choices=("finetune", "frozen-e5", "frozen-minilm"), default="frozen-e5")
    parser.add_argument("--sources", default=None, help="comma-separated sources to hold out (default: all)")
    parser.add_argument("--epochs", type=int, default=1, help="finetune mode: epochs per fold (1)")
    # not the build's cache: states computed in this tool's batch order differ from the build's in the last bits,
    # and a shared cache would move the shipped model's version (docs/classifier.md, Reproducibility)
    parser.add_argument("--cache", type=Path, default=Path("build/classifier/crossval-state-cache"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from evaluators.classifier.encoder_train import EncoderConfig, prepare

    torch.set_num_threads(2)
    prepared = prepare(load_rows(args.data), EncoderConfig(seed=args.seed))
    names = args.sources.split(",") if args.sources else sorted({r.source or "" for r in prepared.rows})
    results = run(prepared.rows, prepared.splits, args.mode, names, args.seed, args.cache, args.epochs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for r in results:
        print(f"{r['source']:32s} {r['label']:6s} {r['stage']:6s} {r['n']:6d} {r['flagged']:.3f} {r['auc']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
