"""Two evaluators on the same rows: both sets of metrics, the items they disagree on, McNemar's test.

McNemar's test asks whether the two make *different* mistakes more often than chance would: only the
discordant items count, b = A right and B wrong, c = A wrong and B right. For b + c < 25 the p-value is the
exact two-sided binomial test (b ~ Binomial(b + c, 1/2)); above that, the chi-square statistic with
continuity correction, (|b - c| - 1)^2 / (b + c), one degree of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evaluators.base import Verdict
from evaluators.evaluation import metrics
from evaluators.evaluation.datasets import LabelledRow
from evaluators.evaluation.report import OnError, predictions, scores_of

EXACT_BELOW = 25


@dataclass(frozen=True, slots=True)
class McNemar:
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    statistic: float | None
    p_value: float
    method: str

    def as_dict(self) -> dict[str, Any]:
        return {"a_right_b_wrong": self.b, "a_wrong_b_right": self.c, "statistic": self.statistic,
                "p_value": self.p_value, "method": self.method}


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n trials with p = 1/2 (doubled smaller tail, capped at 1)."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2**n
    return min(1.0, 2.0 * float(tail))


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> McNemar:
    if len(a_correct) != len(b_correct):
        raise ValueError(f"length mismatch: {len(a_correct)} vs {len(b_correct)}")
    b = sum(1 for x, y in zip(a_correct, b_correct) if x and not y)
    c = sum(1 for x, y in zip(a_correct, b_correct) if y and not x)
    if b + c < EXACT_BELOW:
        return McNemar(b, c, None, binomial_two_sided(b, b + c), "exact binomial")
    stat = (abs(b - c) - 1) ** 2 / (b + c)
    return McNemar(b, c, stat, math.erfc(math.sqrt(stat / 2)), "chi-square, continuity corrected")


def disagreements(rows: Sequence[LabelledRow], a: Sequence[Verdict], b: Sequence[Verdict], on_error: OnError,
                  limit: int | None = None, preview: int = 120) -> list[dict[str, Any]]:
    """The items whose verdicts differ: index, label, both calls and scores, a preview of the judged text."""
    pa, pb = predictions(a, on_error), predictions(b, on_error)
    out = []
    for i, (row, x, y) in enumerate(zip(rows, pa, pb)):
        if x == y:
            continue
        text = row.text.replace("\n", " ")
        out.append({"index": i, "id": row.id, "stage": row.stage(), "label": "unsafe" if row.unsafe else "safe",
                    "a": "unsafe" if x else "safe", "b": "unsafe" if y else "safe",
                    "a_score": a[i].score, "b_score": b[i].score, "right": "a" if x == row.unsafe else "b",
                    "text": text if len(text) <= preview else text[:preview] + "..."})
    return out[:limit] if limit is not None else out


def compare(rows: Sequence[LabelledRow], a: Sequence[Verdict], b: Sequence[Verdict],
            on_error: OnError) -> dict[str, Any]:
    """Both evaluators' headline metrics, McNemar's test and every disagreement."""
    y = [r.unsafe for r in rows]
    pa, pb = predictions(a, on_error), predictions(b, on_error)
    test = mcnemar([p == t for p, t in zip(pa, y)], [p == t for p, t in zip(pb, y)])
    return {
        "items": len(rows),
        "a": {**metrics.summarize(y, pa, scores_of(a)), "errors": sum(v.error is not None for v in a)},
        "b": {**metrics.summarize(y, pb, scores_of(b)), "errors": sum(v.error is not None for v in b)},
        "agreement": sum(x == z for x, z in zip(pa, pb)) / len(rows) if rows else 0.0,
        "mcnemar": test.as_dict(),
        "disagreements": disagreements(rows, a, b, on_error),
    }


def print_comparison(result: dict[str, Any], names: tuple[str, str], console: Any, show: int = 20) -> None:
    from rich.table import Table

    a, b = result["a"], result["b"]
    table = Table(title=f"{names[0]} (A) vs {names[1]} (B) on {result['items']} items")
    for col in ("metric", "A", "B", "B - A"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key in ("accuracy", "precision", "recall", "fpr", "f1", "auprc", "errors"):
        x, y = a.get(key), b.get(key)
        both = isinstance(x, (int, float)) and isinstance(y, (int, float))
        fmt = str if key == "errors" else _score_text
        table.add_row(key, fmt(x), fmt(y), (f"{y - x:+.4f}" if key != "errors" else f"{y - x:+d}") if both else "-")
    console.print(table)
    m = result["mcnemar"]
    console.print(f"agreement {result['agreement']:.4f}; McNemar ({m['method']}): A right/B wrong {m['a_right_b_wrong']}, "
                  f"A wrong/B right {m['a_wrong_b_right']}, p = {m['p_value']:.4g}")
    rows = result["disagreements"]
    if rows:
        dis = Table(title=f"Disagreements ({len(rows)}; first {min(show, len(rows))})")
        for col in ("#", "label", "A", "B", "A score", "B score", "text"):
            dis.add_column(col)
        for d in rows[:show]:
            dis.add_row(str(d["index"]), d["label"], d["a"], d["b"], _score_text(d["a_score"], 3),
                        _score_text(d["b_score"], 3),
                        d["text"])
        console.print(dis)


def _score_text(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
