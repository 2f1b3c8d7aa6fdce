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

import hashlib
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from evaluators.classifier.artifact import Artifact, load_artifact, save_artifact
from evaluators.classifier.embedding import MODEL_ID, Embedder, Truncation, shared_embedder
from evaluators.classifier.head import Calibrator, CalibrationKind, CategoryHead, Head, HeadKind, Model
from evaluators.classifier.splits import dedupe, group_split, near_duplicate_groups
from evaluators.evaluation import metrics
from evaluators.evaluation.datasets import LabelledRow, LabelTrue, load_rows

DEFAULT_CATEGORY = "unsafe"
C_GRID = (0.25, 1.0, 4.0, 16.0, 64.0)
ALPHA_GRID = (1e-4, 1e-3, 1e-2)


@dataclass(slots=True)
class TrainOptions:
    data: list[Path]
    out: Path
    name: str = "classifier"
    seed: int = 0
    head: HeadKind = "logreg"
    c: float | None = None  # None: chosen on val from C_GRID (logreg) / ALPHA_GRID (mlp)
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


Progress = Callable[[str, int], Callable[[int], None]]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sample_weights(rows: Sequence[LabelledRow], source_balance: float) -> np.ndarray:
    """Class-balanced weights; within a class a source of n rows weighs n**source_balance in total.

    source_balance = 1 keeps sources as they come, 0 gives every source the same say.
    Each class sums to half the number of rows.
    """
    per_source = Counter((r.unsafe, r.source or "") for r in rows)
    raw = np.array([per_source[(r.unsafe, r.source or "")] ** (source_balance - 1.0) for r in rows], dtype=np.float64)
    y = np.array([r.unsafe for r in rows])
    out = np.zeros(len(rows))
    for cls in (True, False):
        mask = y == cls
        if mask.any():
            out[mask] = raw[mask] / raw[mask].sum() * (len(rows) / 2)
    return out


def _fit_head(kind: HeadKind, x: np.ndarray, y: np.ndarray, w: np.ndarray, reg: float, seed: int,
              hidden: int) -> Head:
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=reg, max_iter=5000, tol=1e-6)
        clf.fit(x, y, sample_weight=w)
        return Head("logreg", {"W": clf.coef_[0].astype(np.float64), "b": clf.intercept_.astype(np.float64)})
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=reg, max_iter=400, early_stopping=False,
                        random_state=seed, tol=1e-5)
    with warnings.catch_warnings():  # a fixed budget of epochs is the regulariser here, not a failure
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y, sample_weight=w)
    return Head("mlp", {"W1": clf.coefs_[0], "b1": clf.intercepts_[0],
                        "W2": clf.coefs_[1][:, 0], "b2": clf.intercepts_[1]})


def _weighted_log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / w.sum())


def platt(z: np.ndarray, y: np.ndarray, w: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Platt scaling: fit p = sigmoid(a*z + b) by Newton's method on weighted cross-entropy.

    Targets are Platt's smoothed ones, (n+ + 1) / (n+ + 2) and 1 / (n- + 2), so a
    perfectly separated validation set does not drive the slope to infinity.
    """
    n_pos, n_neg = float(y.sum()), float((~y).sum())
    t = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(a * z + b, -60, 60)))
        g = w * (p - t)
        h = w * p * (1 - p) + 1e-12
        grad = np.array([(g * z).sum(), g.sum()])
        hess = np.array([[(h * z * z).sum(), (h * z).sum()], [(h * z).sum(), h.sum()]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


def _calibrate(kind: CalibrationKind, z: np.ndarray, y: np.ndarray) -> Calibrator:
    """Fit on val logits with balanced classes, so P(unsafe) assumes equal priors."""
    w = np.where(y, 0.5 / max(y.sum(), 1), 0.5 / max((~y).sum(), 1)) * len(y)
    if kind == "platt":
        a, b = platt(z, y, w)
        return Calibrator("platt", {"a": np.array(a), "b": np.array(b)})
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        iso.fit(z, y.astype(float), sample_weight=w)
        return Calibrator("isotonic", {"x": iso.X_thresholds_, "y": iso.y_thresholds_})
    return Calibrator("none")


def _fit_categories(x: np.ndarray, rows: Sequence[LabelledRow]) -> CategoryHead:
    labels = [r.categories[0] if r.categories else DEFAULT_CATEGORY for r in rows if r.unsafe]
    xs = x[[i for i, r in enumerate(rows) if r.unsafe]]
    classes = sorted(set(labels)) or [DEFAULT_CATEGORY]
    if len(classes) == 1:
        return CategoryHead(classes)
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=4.0, max_iter=5000, class_weight="balanced")
    clf.fit(xs, labels)
    coef, intercept = clf.coef_, clf.intercept_
    if len(classes) == 2:  # binary sklearn stores one row for classes[1]
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return CategoryHead(list(clf.classes_), {"W": coef, "b": intercept})


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
    y = [r.unsafe for r in rows]
    out = []
    for t in thresholds:
        c = metrics.confusion(y, [bool(s >= t) for s in scores])
        out.append({"threshold": t, "precision": c.precision, "recall": c.recall, "f1": c.f1, "fpr": c.fpr})
    return out


def cascade_zones(rows: Sequence[LabelledRow], scores: np.ndarray,
                  pairs: Sequence[tuple[float, float]] = ((0.05, 0.95), (0.1, 0.9), (0.2, 0.8), (0.3, 0.7))
                  ) -> list[dict[str, float]]:
    """For cascade (low, high) pairs: share of items the classifier decides alone, and its mistakes there."""
    y = np.array([r.unsafe for r in rows])
    out = []
    for low, high in pairs:
        cleared, flagged = scores < low, scores > high
        out.append({"low": low, "high": high, "decided_alone": float((cleared | flagged).mean()) if len(y) else 0.0,
                    "unsafe_cleared": int((cleared & y).sum()), "safe_flagged": int((flagged & ~y).sum()),
                    "unsafe_cleared_share_of_unsafe": float((cleared & y).sum() / max(y.sum(), 1))})
    return out


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


def _no_progress(_: str, __: int) -> Callable[[int], None]:
    return lambda _n: None


def train(opts: TrainOptions, embedder: Embedder | None = None, progress: Progress = _no_progress,
          log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> TrainResult:
    """Run the whole pipeline and write the artifact to `opts.out`."""
    t0 = time.perf_counter()
    rows_in: list[LabelledRow] = []
    files = []
    for path in opts.data:
        loaded = load_rows(path, label_true=opts.label_true)
        rows_in.extend(loaded)
        files.append({"path": str(path), "sha256": _file_sha256(Path(path)), "rows": len(loaded)})
    rows, dedup = dedupe(rows_in)
    if sum(r.unsafe for r in rows) < 4 or sum(not r.unsafe for r in rows) < 4:
        raise ValueError("need at least 4 safe and 4 unsafe rows to train")
    log(f"{len(rows)} rows after removing {dedup['duplicates']} duplicates and {dedup['conflicting']} conflicting")

    embedder = embedder or shared_embedder(max_length=opts.max_length, truncation=opts.truncation)
    x = embedder.embed([r.text for r in rows], batch_size=opts.batch_size,
                       on_batch=progress("embedding", len(rows)))
    x64 = x.astype(np.float64)
    y = np.array([r.unsafe for r in rows])

    groups = near_duplicate_groups(rows, x, opts.near_dup)
    splits = group_split(rows, groups, {"dev": opts.dev_fraction, "val": opts.val_fraction}, opts.seed)
    idx = {name: np.array([i for i, s in enumerate(splits) if s == name], dtype=int) for name in ("train", "val", "dev")}
    for name in ("train", "val"):
        if len(idx[name]) == 0 or y[idx[name]].all() or not y[idx[name]].any():
            raise ValueError(f"the {name} split lacks one class: add data or change the split fractions")
    log(f"{len(set(groups))} groups; train {len(idx['train'])}, val {len(idx['val'])}, dev {len(idx['dev'])}")

    tr_rows = [rows[i] for i in idx["train"]]
    va_rows = [rows[i] for i in idx["val"]]
    w_tr = sample_weights(tr_rows, opts.source_balance)
    w_va = sample_weights(va_rows, opts.source_balance)
    grid = [opts.c] if opts.c is not None else list(C_GRID if opts.head == "logreg" else ALPHA_GRID)
    tick = progress(f"fitting {opts.head} head", len(grid))
    best: tuple[float, float, Head] | None = None
    search = []
    for reg in grid:
        head = _fit_head(opts.head, x64[idx["train"]], y[idx["train"]], w_tr, reg, opts.seed, opts.hidden)
        z = head.logits(x64[idx["val"]])
        loss = _weighted_log_loss(y[idx["val"]], 1 / (1 + np.exp(-z)), w_va)
        search.append({"reg": reg, "val_weighted_log_loss": loss})
        if best is None or loss < best[0]:
            best = (loss, reg, head)
        tick(1)
    assert best is not None
    _, reg, head = best

    calibrator = _calibrate(opts.calibration, head.logits(x64[idx["val"]]), y[idx["val"]])
    categories = _fit_categories(x64[idx["train"]], tr_rows)
    model = Model(head, calibrator, categories)
    p_val = model.predict_proba(x64[idx["val"]])
    threshold = metrics.threshold_for_fpr(y[idx["val"]].tolist(), p_val.tolist(), opts.target_fpr, w_va.tolist())

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
            record = {"prompt": row.prompt, "label": "unsafe" if row.unsafe else "safe"}
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
