"""Pairwise comparison of a candidate model with the upstream on shadow traffic (see runner.py)."""

from proxy.comparison.runner import Comparisons, PendingComparison

__all__ = ["Comparisons", "PendingComparison"]
