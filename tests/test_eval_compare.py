"""Comparing two evaluators: McNemar's test (exact and chi-square), disagreements, and the metrics side by side."""

from __future__ import annotations

import math

import pytest

from evaluators.base import Verdict
from evaluators.evaluation.compare import binomial_two_sided, compare, mcnemar
from evaluators.evaluation.datasets import LabelledRow


def test_exact_binomial_by_hand() -> None:
    # 1 discordant of 1: p = 1; 0 of 5 one way: 2 * (1/32) = 0.0625; 2 of 10: 2 * (1 + 10 + 45)/1024
    assert binomial_two_sided(1, 1) == 1.0 and binomial_two_sided(0, 5) == pytest.approx(0.0625)
    assert binomial_two_sided(2, 10) == pytest.approx(2 * 56 / 1024)
    assert binomial_two_sided(5, 10) == 1.0 and binomial_two_sided(0, 0) == 1.0


def test_mcnemar_exact_for_small_counts_and_chi_square_above() -> None:
    small = mcnemar([True] * 3 + [False] * 7, [False] * 3 + [True] * 7)
    assert (small.b, small.c, small.method) == (3, 7, "exact binomial")
    assert small.p_value == pytest.approx(2 * (1 + 10 + 45 + 120) / 1024)
    # b = 30, c = 10: statistic (|30 - 10| - 1)^2 / 40 = 9.025, p = erfc(sqrt(9.025 / 2))
    a = [True] * 30 + [False] * 10 + [True] * 50
    b = [False] * 30 + [True] * 10 + [True] * 50
    big = mcnemar(a, b)
    assert big.method.startswith("chi-square") and big.statistic == pytest.approx(9.025)
    assert big.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2))) and big.p_value == pytest.approx(0.00266, rel=0.01)
    assert mcnemar([True, True], [True, True]).p_value == 1.0  # no discordant pairs: no evidence either way


def _verdict(unsafe: bool, score: float | None = None, error: str | None = None) -> Verdict:
    return Verdict(safe=not unsafe, evaluator="e", version="1", score=score, error=error)


def test_compare_lists_the_disagreements_and_both_metrics() -> None:
    rows = [LabelledRow(prompt=f"p{i}", completion=None, unsafe=i < 2, id=str(i)) for i in range(4)]
    a = [_verdict(True), _verdict(False), _verdict(False), _verdict(True)]          # right, wrong, right, wrong
    b = [_verdict(True), _verdict(True), _verdict(False), _verdict(False, error="boom")]  # all right (error = safe)
    result = compare(rows, a, b, "fail_open")
    assert result["a"]["recall"] == 0.5 and result["a"]["fpr"] == 0.5 and result["b"]["accuracy"] == 1.0
    assert result["b"]["errors"] == 1 and result["agreement"] == 0.5
    assert [(d["index"], d["right"]) for d in result["disagreements"]] == [(1, "b"), (3, "b")]
    assert result["mcnemar"]["a_wrong_b_right"] == 2 and result["mcnemar"]["a_right_b_wrong"] == 0
    closed = compare(rows, a, b, "fail_closed")  # an error verdict counted as unsafe: now B is wrong on row 3
    assert [d["index"] for d in closed["disagreements"]] == [1]
