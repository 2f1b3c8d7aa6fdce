"""What the ops dashboard shows about answer quality: candidate vs baseline win rates, reward score histograms.

Win rate: a candidate's share of comparisons it did not lose, ties counting half, `(wins + ties / 2) / n`, with
a 95% Wilson score interval. The candidate is called better when the interval lies above 1/2, worse when it
lies below, and not yet distinguishable otherwise.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from consumers.store import tables as t
from proxy.schemas.events import SCORE_BUCKETS

Z95 = 1.959963984540054


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (successes may be fractional: ties count half)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n)), min(1.0, (centre + spread) / (1 + z * z / n))


def verdict(low: float, high: float) -> str:
    return "better" if low > 0.5 else "worse" if high < 0.5 else "not yet distinguishable"


def comparisons(conn: Connection, since: datetime) -> list[dict[str, Any]]:
    """Win / tie / loss per (baseline, candidate, tenant) since `since`, with the win rate and its interval."""
    M = t.metric_comparisons
    by: dict[tuple[str, str, str], dict[str, int]] = {}
    for baseline, candidate, tenant, outcome, n in conn.execute(
            select(M.c.baseline, M.c.candidate, M.c.tenant, M.c.outcome, func.sum(M.c.count))
            .where(M.c.minute >= since).group_by(M.c.baseline, M.c.candidate, M.c.tenant, M.c.outcome)):
        by.setdefault((baseline, candidate, tenant), {})[outcome] = int(n)
    rows = []
    for (baseline, candidate, tenant), counts in sorted(by.items()):
        win, tie, loss = counts.get("win", 0), counts.get("tie", 0), counts.get("loss", 0)
        n = win + tie + loss
        rate = (win + tie / 2) / n if n else 0.0
        low, high = wilson(win + tie / 2, n)
        rows.append({"baseline": baseline, "candidate": candidate, "tenant": tenant, "n": n, "win": win, "tie": tie,
                     "loss": loss, "win_rate": rate, "low": low, "high": high, "verdict": verdict(low, high)})
    return rows


def score_histograms(conn: Connection, since: datetime) -> list[dict[str, Any]]:
    """Reward scores per (evaluator, model) since `since`: answers per bucket, their count and mean."""
    S = t.metric_scores
    hist: dict[tuple[str, str], dict[float, list[float]]] = {}
    for evaluator, model, le, n, total in conn.execute(
            select(S.c.evaluator, S.c.model, S.c.le, func.sum(S.c.count), func.sum(S.c.score_sum))
            .where(S.c.minute >= since).group_by(S.c.evaluator, S.c.model, S.c.le)):
        hist.setdefault((evaluator, model), {})[float(le)] = [int(n), float(total or 0.0)]
    out = []
    for (evaluator, model), buckets in sorted(hist.items()):
        n = sum(int(v[0]) for v in buckets.values())
        out.append({"evaluator": evaluator, "model": model, "n": n, "bars": _bars(buckets),
                    "mean": sum(v[1] for v in buckets.values()) / n if n else None})
    return out


def _bars(buckets: dict[float, list[float]]) -> list[tuple[str, int]]:
    """(label, answers) per bucket from the lowest to the highest one holding answers, empty ones included, so the
    bars draw the histogram's shape. Bounds are the proxy's (SCORE_BUCKETS) plus any others a tally carried."""
    finite = sorted(set(SCORE_BUCKETS) | {le for le in buckets if le < t.OVERFLOW_LE})
    bounds = finite + [t.OVERFLOW_LE]
    present = [i for i, le in enumerate(bounds) if le in buckets]
    bars = []
    for i in range(present[0], present[-1] + 1):
        le = bounds[i]
        lower = bounds[i - 1] if i else None
        label = (f"> {lower:g}" if le >= t.OVERFLOW_LE else f"<= {le:g}" if lower is None else f"{lower:g} .. {le:g}")
        bars.append((label, int(buckets.get(le, [0])[0])))
    return bars
