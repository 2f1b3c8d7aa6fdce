"""Fitting the classifier's head on embeddings: weights, regularisation search, calibration, threshold.

Shared by `train.py` (one grouped train / val split) and `crossval.py` (leave one source out),
so both measure exactly the same recipe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from evaluators.classifier.head import CalibrationKind, Calibrator, CategoryHead, Head, HeadKind, Model
from evaluators.evaluation import metrics
from evaluators.evaluation.datasets import LabelledRow

DEFAULT_CATEGORY = "unsafe"
C_GRID = (0.25, 1.0, 4.0, 16.0, 64.0)
ALPHA_GRID = (1e-4, 1e-3, 1e-2)


@dataclass(slots=True)
class Recipe:
    """How a head is fitted (the subset of the training options that matters here)."""

    head: HeadKind = "logreg"
    reg: float | None = None  # None: chosen on val from C_GRID (logreg) / ALPHA_GRID (mlp)
    hidden: int = 64
    calibration: CalibrationKind = "platt"
    target_fpr: float = 0.05
    source_balance: float = 0.5
    seed: int = 0


@dataclass(slots=True)
class Fitted:
    model: Model
    threshold: float
    reg: float
    search: list[dict[str, float]]


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


def fit(x: np.ndarray, rows: Sequence[LabelledRow], train_idx: np.ndarray, val_idx: np.ndarray, recipe: Recipe,
        tick: Callable[[int], None] = lambda _n: None) -> Fitted:
    """Head on train (regularisation chosen on val), calibration and threshold on val, category head on train."""
    x64 = x.astype(np.float64)
    y = np.array([r.unsafe for r in rows])
    tr_rows = [rows[i] for i in train_idx]
    va_rows = [rows[i] for i in val_idx]
    w_tr = sample_weights(tr_rows, recipe.source_balance)
    w_va = sample_weights(va_rows, recipe.source_balance)
    grid = [recipe.reg] if recipe.reg is not None else list(C_GRID if recipe.head == "logreg" else ALPHA_GRID)
    best: tuple[float, float, Head] | None = None
    search = []
    for reg in grid:
        head = _fit_head(recipe.head, x64[train_idx], y[train_idx], w_tr, reg, recipe.seed, recipe.hidden)
        z = head.logits(x64[val_idx])
        loss = _weighted_log_loss(y[val_idx], 1 / (1 + np.exp(-z)), w_va)
        search.append({"reg": reg, "val_weighted_log_loss": loss})
        if best is None or loss < best[0]:
            best = (loss, reg, head)
        tick(1)
    assert best is not None
    _, reg, head = best
    calibrator = _calibrate(recipe.calibration, head.logits(x64[val_idx]), y[val_idx])
    model = Model(head, calibrator, _fit_categories(x64[train_idx], tr_rows))
    p_val = model.predict_proba(x64[val_idx])
    threshold = metrics.threshold_for_fpr(y[val_idx].tolist(), p_val.tolist(), recipe.target_fpr, w_va.tolist())
    return Fitted(model, float(threshold), float(reg), search)


def grid_size(recipe: Recipe) -> int:
    return 1 if recipe.reg is not None else len(C_GRID if recipe.head == "logreg" else ALPHA_GRID)
