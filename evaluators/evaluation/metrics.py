"""Binary-classification metrics as pure functions, small enough to check by hand.

Convention: the positive class is *unsafe*. `y_true[i]` is True when item i is
unsafe; `y_pred[i]` is True when the evaluator called it unsafe; `scores[i]` is
P(unsafe) (higher means more unsafe). Ratios whose denominator is zero are 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Confusion:
    """Counts of a binary confusion matrix (positive = unsafe)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def fpr(self) -> float:
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.n)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def summary(self) -> dict[str, float | int]:
        return {**asdict(self), "n": self.n, "precision": self.precision, "recall": self.recall,
                "f1": self.f1, "fpr": self.fpr, "accuracy": self.accuracy}


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def confusion(y_true: Sequence[bool], y_pred: Sequence[bool]) -> Confusion:
    """Count true/false positives/negatives."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"length mismatch: {len(y_true)} labels, {len(y_pred)} predictions")
    tp = fp = tn = fn = 0
    for t, p in zip(y_true, y_pred):
        if t and p:
            tp += 1
        elif p:
            fp += 1
        elif t:
            fn += 1
        else:
            tn += 1
    return Confusion(tp, fp, tn, fn)


def pr_curve(y_true: Sequence[bool], scores: Sequence[float]) -> tuple[list[float], list[float], list[float]]:
    """Precision and recall at every distinct score threshold, highest threshold first.

    Point k predicts unsafe for every item with score >= thresholds[k]. Tied
    scores enter together. Returns (precision, recall, thresholds).
    """
    if len(y_true) != len(scores):
        raise ValueError("length mismatch between labels and scores")
    positives = sum(1 for t in y_true if t)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    precision: list[float] = []
    recall: list[float] = []
    thresholds: list[float] = []
    tp = fp = 0
    for rank, i in enumerate(order):
        if y_true[i]:
            tp += 1
        else:
            fp += 1
        last_of_tie = rank + 1 == len(order) or scores[order[rank + 1]] != scores[i]
        if last_of_tie:
            precision.append(_ratio(tp, tp + fp))
            recall.append(_ratio(tp, positives))
            thresholds.append(float(scores[i]))
    return precision, recall, thresholds


def average_precision(y_true: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the precision-recall curve as average precision (step-wise, no interpolation).

    AP = sum_k (R_k - R_{k-1}) * P_k over thresholds from high to low: the same
    definition as scikit-learn's `average_precision_score`. 0.0 when there are no positives.
    """
    precision, recall, _ = pr_curve(y_true, scores)
    ap, prev_recall = 0.0, 0.0
    for p, r in zip(precision, recall):
        ap += (r - prev_recall) * p
        prev_recall = r
    return ap


def threshold_for_fpr(y_true: Sequence[bool], scores: Sequence[float], target_fpr: float,
                      weights: Sequence[float] | None = None) -> float:
    """A threshold t (predict unsafe when score >= t) with the highest recall whose FPR <= target.

    Candidates are the distinct scores, from high to low; the lowest candidate whose
    false-positive rate stays within the target wins. Every t between that score and the
    next lower one gives the same predictions, so the midpoint of the two is returned
    (the widest margin on both sides). With no qualifying candidate it returns just above
    the highest score. With `weights`, the FPR counts each safe item by its weight
    (e.g. to give every source its say).
    """
    w = [1.0] * len(y_true) if weights is None else [float(x) for x in weights]
    negatives = sum(wi for t, wi in zip(y_true, w) if not t)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    best: float | None = None
    below: float | None = None
    fp = 0.0
    for rank, i in enumerate(order):
        if not y_true[i]:
            fp += w[i]
        last_of_tie = rank + 1 == len(order) or scores[order[rank + 1]] != scores[i]
        if last_of_tie:
            if _ratio(fp, negatives) <= target_fpr + 1e-12:
                best = float(scores[i])
            else:
                below = float(scores[i])
                break
    if best is None:
        return math.nextafter(max(scores), math.inf) if scores else 1.0
    return best if below is None else (best + below) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p95/p99, mean and max of a list of latencies in milliseconds."""
    return {
        "n": len(values_ms),
        "mean_ms": sum(values_ms) / len(values_ms) if values_ms else 0.0,
        "p50_ms": percentile(values_ms, 50),
        "p90_ms": percentile(values_ms, 90),
        "p95_ms": percentile(values_ms, 95),
        "p99_ms": percentile(values_ms, 99),
        "max_ms": max(values_ms, default=0.0),
    }


def per_group_rates(y_true: Sequence[bool], y_pred: Sequence[bool],
                    groups: Sequence[Iterable[str]]) -> dict[str, dict[str, float | int]]:
    """Per group (category or source): recall over its unsafe items and FPR over its safe items.

    An item may belong to several groups. Keys are sorted; `recall` is None-free:
    a group without unsafe items reports `n_unsafe = 0` and recall 0.0 (read `n_unsafe`).
    """
    counts: dict[str, list[int]] = {}
    for t, p, gs in zip(y_true, y_pred, groups):
        for g in set(gs):
            c = counts.setdefault(g, [0, 0, 0, 0])  # unsafe, caught, safe, false alarms
            if t:
                c[0] += 1
                c[1] += int(bool(p))
            else:
                c[2] += 1
                c[3] += int(bool(p))
    return {
        g: {"n_unsafe": c[0], "recall": _ratio(c[1], c[0]), "n_safe": c[2], "fpr": _ratio(c[3], c[2])}
        for g, c in sorted(counts.items())
    }


def summarize(y_true: Sequence[bool], y_pred: Sequence[bool],
              scores: Sequence[float | None] | None = None) -> dict[str, object]:
    """Headline metrics; AUPRC only when every item has a score."""
    out: dict[str, object] = dict(confusion(y_true, y_pred).summary())
    out["auprc"] = None
    if scores is not None and len(scores) == len(y_true) and all(s is not None for s in scores):
        out["auprc"] = average_precision(y_true, [float(s) for s in scores])  # type: ignore[arg-type]  # no None left: checked above
    out["prevalence"] = _ratio(sum(1 for t in y_true if t), len(y_true))
    return out

