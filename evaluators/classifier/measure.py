"""Numbers for an encoder artifact: calibration, thresholds, and the tables docs/classifier.md shows.

Everything here works on calibrated scores from the served model (ONNX, int8), so what is
measured is what ships. Language is read from the text (a row with a fair share of CJK
characters is Chinese), stage from the row (an answer row is stage output).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluators.evaluation import metrics
from evaluators.evaluation.datasets import LabelledRow

_CJK = re.compile(r"[\u4e00-\u9fff]")


def language(text: str) -> str:
    cjk = len(_CJK.findall(text))
    return "zh" if cjk and cjk >= 0.2 * len(text.replace(" ", "")) else "en/other"


def rates(rows: Sequence[LabelledRow], scores: np.ndarray, threshold: float | np.ndarray) -> dict[str, Any]:
    y = [r.unsafe for r in rows]
    pred = [bool(s) for s in (np.asarray(scores) >= threshold)]
    out: dict[str, Any] = metrics.summarize(y, pred, [float(s) for s in scores]) if rows else {"n": 0}
    return out


def per_source(rows: Sequence[LabelledRow], scores: np.ndarray, thresholds: np.ndarray) -> list[dict[str, Any]]:
    """Per (source, label): n and the share flagged (recall for unsafe, FPR for safe), plus the stage."""
    cells: dict[tuple[str, bool], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        cells[(r.source or "(none)", r.unsafe)].append(i)
    out = []
    for (source, unsafe), idx in sorted(cells.items()):
        flagged = float((scores[idx] >= thresholds[idx]).mean())
        out.append({"source": source, "label": "unsafe" if unsafe else "safe", "n": len(idx),
                    "stage": rows[idx[0]].stage(), "flagged": flagged})
    return out


def slices(rows: Sequence[LabelledRow], scores: np.ndarray, thresholds: np.ndarray) -> dict[str, Any]:
    """Headline metrics per stage and per language (and both)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        lang = language(r.text)
        groups[f"{r.stage()}"].append(i)
        groups[f"lang:{lang}"].append(i)
        groups[f"{r.stage()} / {lang}"].append(i)
    out = {}
    for name, idx in sorted(groups.items()):
        sub = [rows[i] for i in idx]
        y = [r.unsafe for r in sub]
        pred = [bool(s >= t) for s, t in zip(scores[idx], thresholds[idx])]
        out[name] = metrics.summarize(y, pred, [float(s) for s in scores[idx]])
    return out


def threshold_for_fpr(pool_scores: Sequence[np.ndarray], target: float) -> float:
    """The lowest threshold at which every pool's false-alarm rate is at most `target`."""
    need = 0.0
    for s in pool_scores:
        s = np.sort(np.asarray(s))[::-1]
        allowed = int(np.floor(target * len(s)))  # this many may reach the threshold
        if allowed < len(s):
            need = max(need, float(np.nextafter(s[allowed], np.inf)))
    return min(need, 1.0)


def threshold_for_recall(unsafe_scores: np.ndarray, recall: float) -> float:
    """The highest threshold that still flags `recall` of the unsafe scores."""
    s = np.sort(np.asarray(unsafe_scores))[::-1]
    if not len(s):
        return 0.5
    k = max(int(np.ceil(recall * len(s))) - 1, 0)
    return float(s[k])


def operating_table(rows: Sequence[LabelledRow], scores: np.ndarray,
                    thresholds: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)) -> list[dict[str, float]]:
    y = [r.unsafe for r in rows]
    out = []
    for t in thresholds:
        c = metrics.confusion(y, [bool(s >= t) for s in scores])
        out.append({"threshold": t, "precision": c.precision, "recall": c.recall, "f1": c.f1, "fpr": c.fpr})
    return out


def cascade_zones(rows: Sequence[LabelledRow], scores: np.ndarray,
                  pairs: Sequence[tuple[float, float]] = ((0.02, 0.98), (0.05, 0.95), (0.1, 0.9), (0.2, 0.8))
                  ) -> list[dict[str, float]]:
    """For cascade (low, high) pairs: share decided by the classifier alone and its uncorrectable mistakes."""
    y = np.array([r.unsafe for r in rows])
    out = []
    for low, high in pairs:
        cleared, flagged = scores < low, scores > high
        out.append({"low": low, "high": high, "decided_alone": float((cleared | flagged).mean()) if len(y) else 0.0,
                    "unsafe_cleared": int((cleared & y).sum()), "safe_flagged": int((flagged & ~y).sum()),
                    "recall_lost": float((cleared & y).sum() / max(y.sum(), 1)),
                    "fpr_added": float((flagged & ~y).sum() / max((~y).sum(), 1))})
    return out
