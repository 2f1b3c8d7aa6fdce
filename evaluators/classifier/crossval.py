"""Leave one source out: how the training recipe does on a kind of data it has never seen.

    python -m evaluators.classifier.crossval --data build/classifier/default_train.jsonl

For each chosen source S: fit the recipe (same code as `guardstream train`) on the train
and val splits without S, then score all of S. An unsafe source reports recall (share
flagged) and a safe source the false-positive rate, both at the threshold chosen on val,
plus a threshold-free AUC of S against the other class in the dev split. The dev split is
the same grouped split as training, so the numbers compare with docs/classifier.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from evaluators.classifier.embedding import shared_embedder
from evaluators.classifier.fit import Recipe, fit
from evaluators.classifier.splits import dedupe, group_split, near_duplicate_groups
from evaluators.evaluation.datasets import load_rows


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counted half (Mann-Whitney U)."""
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="training rows (JSONL/CSV) with a source field")
    parser.add_argument("--sources", default=None, help="comma-separated sources to hold out (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    rows, _ = dedupe(load_rows(args.data))
    x = shared_embedder().embed([r.text for r in rows])
    y = np.array([r.unsafe for r in rows])
    src = np.array([r.source or "" for r in rows])
    split = np.array(group_split(rows, near_duplicate_groups(rows, x, 0.9), {"dev": 0.15, "val": 0.15}, args.seed))
    names = args.sources.split(",") if args.sources else sorted(set(src))
    results = []
    for name in track(names, description="leave one source out", console=Console(stderr=True)):
        keep = src != name
        fitted = fit(x, rows, np.where(keep & (split == "train"))[0], np.where(keep & (split == "val"))[0],
                     Recipe(seed=args.seed))
        held = np.where(~keep)[0]
        scores = fitted.model.predict_proba(x[held])
        unsafe = bool(y[held].mean() >= 0.5)
        ref = np.where(keep & (split == "dev") & (y != unsafe))[0]
        ref_scores = fitted.model.predict_proba(x[ref])
        results.append({
            "source": name, "label": "unsafe" if unsafe else "safe", "n": int(len(held)),
            "flagged": float((scores >= fitted.threshold).mean()), "threshold": fitted.threshold,
            "auc": auc(scores, ref_scores) if unsafe else auc(ref_scores, scores),
        })
    table = Table(title="leave one source out (flagged = recall for unsafe sources, FPR for safe ones)")
    for col in ("source", "label", "n", "flagged", "AUC vs dev"):
        table.add_column(col, justify="left" if col in ("source", "label") else "right")
    for r in results:
        table.add_row(r["source"], r["label"], str(r["n"]), f"{r['flagged']:.3f}", f"{r['auc']:.3f}")
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
