"""Metric functions against cases worked out by hand (and scikit-learn where it has the same definition)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from evaluators.evaluation import metrics


def test_confusion_and_ratios_by_hand() -> None:
    y = [True, True, True, False, False, False, False, True]
    p = [True, False, True, True, False, False, False, True]
    c = metrics.confusion(y, p)
    assert (c.tp, c.fp, c.tn, c.fn) == (3, 1, 3, 1)
    assert c.precision == pytest.approx(3 / 4)
    assert c.recall == pytest.approx(3 / 4)
    assert c.f1 == pytest.approx(0.75)
    assert c.fpr == pytest.approx(1 / 4)
    assert c.accuracy == pytest.approx(6 / 8)


def test_zero_denominators_are_zero() -> None:
    c = metrics.confusion([False, False], [False, False])
    assert (c.precision, c.recall, c.f1, c.fpr) == (0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        metrics.confusion([True], [True, False])


def test_average_precision_by_hand() -> None:
    # ranks: unsafe (P 1, R .5), safe, unsafe (P 2/3, R 1) -> .5*1 + .5*2/3
    assert metrics.average_precision([True, False, True, False], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6)
    # tied scores enter together: (P .5, R .5) then (P 2/3, R 1)
    assert metrics.average_precision([True, False, True], [0.5, 0.5, 0.2]) == pytest.approx(0.25 + 1 / 3)
    assert metrics.average_precision([False, False], [0.3, 0.2]) == 0.0


def test_average_precision_matches_sklearn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(3)
    y = [rng.random() < 0.3 for _ in range(300)]
    scores = [round(rng.random(), 2) for _ in range(300)]  # rounding makes ties
    assert metrics.average_precision(y, scores) == pytest.approx(sklearn_metrics.average_precision_score(y, scores))


def test_pr_curve_points() -> None:
    precision, recall, thresholds = metrics.pr_curve([True, False, True, False], [0.9, 0.8, 0.7, 0.1])
    assert thresholds == [0.9, 0.8, 0.7, 0.1]
    assert precision == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert recall == pytest.approx([0.5, 0.5, 1.0, 1.0])


def test_threshold_for_fpr_by_hand() -> None:
    y = [False, False, False, False, True, True]
    s = [0.1, 0.2, 0.3, 0.9, 0.8, 0.7]
    # .9 (1 false alarm of 4 = .25 ok), .8, .7 ok; at .3 the FPR would be .5: midpoint of .7 and .3
    assert metrics.threshold_for_fpr(y, s, 0.25) == pytest.approx(0.5)
    assert metrics.threshold_for_fpr(y, s, 1.0) == 0.1  # everything qualifies: the lowest score
    t = metrics.threshold_for_fpr(y, s, 0.0)
    assert t > 0.9 and not any(v >= t for v in s)
    # weights: the false alarm at .9 weighs 3 of 6 -> .5 > .25, so nothing qualifies
    assert metrics.threshold_for_fpr(y, s, 0.25, weights=[1, 1, 1, 3, 1, 1]) > 0.9


def test_percentiles_match_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert metrics.percentile(values, 50) == 2.5
    assert metrics.percentile(values, 90) == pytest.approx(3.7)
    rng = random.Random(1)
    data = [rng.expovariate(1.0) for _ in range(101)]
    for q in (50, 90, 95, 99):
        assert metrics.percentile(data, q) == pytest.approx(float(np.percentile(data, q)))
    summary = metrics.latency_summary(values)
    assert summary["p50_ms"] == 2.5 and summary["max_ms"] == 4.0 and summary["mean_ms"] == 2.5


def test_per_group_rates_and_summary() -> None:
    y = [True, True, False, False, True]
    p = [True, False, True, False, True]
    groups = [["S1"], ["S1", "S2"], ["x"], ["x"], ["S2"]]
    rates = metrics.per_group_rates(y, p, groups)
    assert rates["S1"] == {"n_unsafe": 2, "recall": 0.5, "n_safe": 0, "fpr": 0.0}
    assert rates["S2"]["recall"] == 0.5
    assert rates["x"] == {"n_unsafe": 0, "recall": 0.0, "n_safe": 2, "fpr": 0.5}
    s = metrics.summarize(y, p, [0.9, 0.4, 0.6, 0.1, 0.8])
    assert s["tp"] == 2 and s["prevalence"] == pytest.approx(0.6)
    assert s["auprc"] == pytest.approx(metrics.average_precision(y, [0.9, 0.4, 0.6, 0.1, 0.8]))
    assert metrics.summarize(y, p, [0.9, None, 0.6, 0.1, 0.8])["auprc"] is None
