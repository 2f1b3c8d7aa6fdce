"""Train the CPU safety classifier: MiniLM embeddings -> small head -> calibrated P(unsafe).

Pipeline (seeded, reproducible):
1. read KTO / moderation rows (`evaluators.evaluation.datasets`), drop exact duplicates;
2. embed every judged text with all-MiniLM-L6-v2;
3. group near-duplicates and split the groups into train / val / dev per source and label;
4. fit the head on train (class-balanced, sources tempered by `source_balance`),
   choosing its regularisation on val;
5. calibrate on val (Platt or isotonic) and pick the threshold on val for a target
   false-positive rate;
6. fit the category head (which unsafe category) when rows carry categories;
7. save the artifact, reload it, and measure val and dev with the saved weights.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluators.classifier import measure
from evaluators.classifier.artifact import Artifact, load_artifact, save_artifact
from evaluators.classifier.embedding import MODEL_ID, Embedder, Truncation, shared_embedder
from evaluators.classifier.fit import DEFAULT_CATEGORY, Recipe, fit, grid_size
from evaluators.classifier.head import CalibrationKind, HeadKind
from evaluators.classifier.progress import Bar, no_progress
from evaluators.classifier.splits import dedupe, group_split, near_duplicate_groups
from evaluators.digests import sha256_file
from evaluators.evaluation import metrics
from evaluators.evaluation.datasets import LabelledRow, LabelTrue, load_rows


@dataclass(slots=True)
class TrainOptions:
    data: list[Path]
    out: Path
    name: str = "classifier"
    seed: int = 0
    head: HeadKind = "logreg"
    c: float | None = None  # None: chosen on val (see fit.C_GRID / fit.ALPHA_GRID)
    hidden: int = 64
    calibration: CalibrationKind = "platt"
    target_fpr: float = 0.05
    val_fraction: float = 0.15
    dev_fraction: float = 0.15
    near_dup: float = 0.9
    source_balance: float = 0.5
    max_length: int = 256
    truncation: Truncation = "head_tail"
    batch_size: int = 32
    label_true: LabelTrue | None = None
    export_splits: bool = False
    licenses: dict[str, str] = field(default_factory=dict)
    manifest_extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TrainResult:
    artifact: Artifact
    metrics: dict[str, Any]
    rows: list[LabelledRow]
    splits: list[str]
    scores: np.ndarray




def evaluate_split(rows: Sequence[LabelledRow], scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Headline metrics and per-source rates of one split at a threshold."""
    y = [r.unsafe for r in rows]
    pred = [bool(s >= threshold) for s in scores]
    out = metrics.summarize(y, pred, [float(s) for s in scores])
    out["per_source"] = metrics.per_group_rates(y, pred, [[r.source or "(none)"] for r in rows])
    majority = max(sum(y), len(y) - sum(y)) / len(y) if y else 0.0
    out["majority_baseline_accuracy"] = majority
    return out


def operating_points(rows: Sequence[LabelledRow], scores: np.ndarray,
                     thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)) -> list[dict[str, float]]:
    """Precision / recall / FPR at several thresholds: what a `threshold` override would do."""
    return measure.operating_table(rows, scores, thresholds)


def cascade_zones(rows: Sequence[LabelledRow], scores: np.ndarray,
                  pairs: Sequence[tuple[float, float]] = ((0.05, 0.95), (0.1, 0.9), (0.2, 0.8), (0.3, 0.7))
                  ) -> list[dict[str, float]]:
    """For cascade (low, high) pairs: share of items the classifier decides alone, and its mistakes there
    (`measure.cascade_zones` in this format's field names)."""
    return [{"low": z["low"], "high": z["high"], "decided_alone": z["decided_alone"],
             "unsafe_cleared": z["unsafe_cleared"], "safe_flagged": z["safe_flagged"],
             "unsafe_cleared_share_of_unsafe": z["recall_lost"]} for z in measure.cascade_zones(rows, scores, pairs)]


def _manifest(opts: TrainOptions, rows_in: list[LabelledRow], rows: list[LabelledRow], splits: list[str],
              files: list[dict[str, Any]], dedup: dict[str, int], n_groups: int) -> dict[str, Any]:
    sources: dict[str, dict[str, Any]] = defaultdict(lambda: {"safe": 0, "unsafe": 0})
    per_split: dict[str, dict[str, int]] = defaultdict(lambda: {"safe": 0, "unsafe": 0})
    for row, split in zip(rows, splits):
        key = "unsafe" if row.unsafe else "safe"
        entry = sources[row.source or "(none)"]
        entry[key] += 1
        entry.setdefault(f"{split}_{key}", 0)
        entry[f"{split}_{key}"] += 1
        lic = opts.licenses.get(row.source or "") or row.license
        if lic:
            entry["license"] = lic
        per_split[split][key] += 1
    return {
        "files": files,
        "rows_read": len(rows_in),
        "dedupe": dedup,
        "near_duplicate_threshold": opts.near_dup,
        "groups": n_groups,
        "labels": {"unsafe": sum(r.unsafe for r in rows), "safe": sum(not r.unsafe for r in rows)},
        "splits": dict(sorted(per_split.items())),
        "sources": dict(sorted(sources.items())),
        **opts.manifest_extra,
    }


def train(opts: TrainOptions, embedder: Embedder | None = None, progress: Bar = no_progress,
          log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> TrainResult:
    """Run the whole pipeline and write the artifact to `opts.out`."""
    t0 = time.perf_counter()
    rows_in: list[LabelledRow] = []
    files = []
    for path in opts.data:
        loaded = load_rows(path, label_true=opts.label_true)
        rows_in.extend(loaded)
        files.append({"path": str(path), "sha256": sha256_file(path), "rows": len(loaded)})
    rows, dedup = dedupe(rows_in)
    if sum(r.unsafe for r in rows) < 4 or sum(not r.unsafe for r in rows) < 4:
        raise ValueError("need at least 4 safe and 4 unsafe rows to train")
    log(f"{len(rows)} rows after removing {dedup['duplicates']} duplicates and {dedup['conflicting']} conflicting")

    embedder = embedder or shared_embedder(max_length=opts.max_length, truncation=opts.truncation)
    x = embedder.embed([r.text for r in rows], batch_size=opts.batch_size,
                       on_batch=progress("embedding", len(rows)))
    y = np.array([r.unsafe for r in rows])

    groups = near_duplicate_groups(rows, x, opts.near_dup)
    splits = group_split(rows, groups, {"dev": opts.dev_fraction, "val": opts.val_fraction}, opts.seed)
    idx = {name: np.array([i for i, s in enumerate(splits) if s == name], dtype=int) for name in ("train", "val", "dev")}
    for name in ("train", "val"):
        if len(idx[name]) == 0 or y[idx[name]].all() or not y[idx[name]].any():
            raise ValueError(f"the {name} split lacks one class: add data or change the split fractions")
    log(f"{len(set(groups))} groups; train {len(idx['train'])}, val {len(idx['val'])}, dev {len(idx['dev'])}")

    recipe = Recipe(head=opts.head, reg=opts.c, hidden=opts.hidden, calibration=opts.calibration,
                    target_fpr=opts.target_fpr, source_balance=opts.source_balance, seed=opts.seed)
    fitted = fit(x, rows, idx["train"], idx["val"], recipe, progress(f"fitting {opts.head} head", grid_size(recipe)))
    model, threshold, reg, search = fitted.model, fitted.threshold, fitted.reg, fitted.search

    meta = {
        "name": opts.name,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "embedding": embedder.describe(),
        "threshold": float(threshold),
        "target_fpr": opts.target_fpr,
        "default_category": DEFAULT_CATEGORY,
        "judged_text": "completion if present, else prompt",
        "training": {
            "seed": opts.seed, "head": opts.head, "regularisation": reg, "search": search,
            "hidden": opts.hidden if opts.head == "mlp" else None, "calibration": opts.calibration,
            "val_fraction": opts.val_fraction, "dev_fraction": opts.dev_fraction,
            "near_duplicate_threshold": opts.near_dup, "source_balance": opts.source_balance,
            "threshold_rule": f"lowest threshold with source-balanced val FPR <= {opts.target_fpr}",
        },
    }
    manifest = _manifest(opts, rows_in, rows, splits, files, dedup, len(set(groups)))
    artifact = save_artifact(opts.out, model, meta, manifest, {})

    # Measure with the weights as saved (float32), exactly what serving loads.
    artifact = load_artifact(opts.out)
    scores = artifact.model.predict_proba(x)
    result_metrics: dict[str, Any] = {"threshold": artifact.threshold, "model_id": MODEL_ID,
                                      "version": artifact.version}
    for name in ("train", "val", "dev"):
        if len(idx[name]):
            result_metrics[name] = evaluate_split([rows[i] for i in idx[name]], scores[idx[name]], artifact.threshold)
    if len(idx["dev"]):
        dev_rows, dev_scores = [rows[i] for i in idx["dev"]], scores[idx["dev"]]
        result_metrics["dev_operating_points"] = operating_points(dev_rows, dev_scores)
        result_metrics["dev_cascade_zones"] = cascade_zones(dev_rows, dev_scores)
    result_metrics["seconds"] = round(time.perf_counter() - t0, 1)
    (Path(opts.out) / "metrics.json").write_text(json.dumps(result_metrics, indent=2, sort_keys=True) + "\n")
    if opts.export_splits:
        export_splits(Path(opts.out) / "splits", rows, splits, scores)
    return TrainResult(artifact, result_metrics, rows, splits, scores)


def export_splits(folder: Path, rows: Sequence[LabelledRow], splits: Sequence[str], scores: np.ndarray) -> None:
    """Write train/val/dev JSONL in the moderation format (label "safe"/"unsafe"), with the model's score."""
    folder.mkdir(parents=True, exist_ok=True)
    handles = {name: (folder / f"{name}.jsonl").open("w", encoding="utf-8") for name in ("train", "val", "dev")}
    try:
        for row, split, score in zip(rows, splits, scores):
            record: dict[str, object] = {"prompt": row.prompt, "label": "unsafe" if row.unsafe else "safe"}
            if row.completion:
                record["completion"] = row.completion
            record.update({"source": row.source, "categories": list(row.categories), "train_score": round(float(score), 6)})
            handles[split].write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        for fh in handles.values():
            fh.close()


def options_dict(opts: TrainOptions) -> dict[str, Any]:
    """JSON-able view of the options (for logs and the build script)."""
    d = asdict(opts)
    d["data"] = [str(p) for p in opts.data]
    d["out"] = str(opts.out)
    return d
