"""Prometheus metrics for the request path: counted in plain Python numbers, without a lock per update.

prometheus_client takes a lock for every `inc` and `observe` (a histogram observation: the sum, then a linear
walk to its bucket, two locked updates), ~1.5-2 µs each; a request with the built-in rules makes about a dozen
(`bench.hotpath`, cProfile). These subclasses count into lists and floats and move the counts into
prometheus_client's values when the registry is read, so `/metrics` shows exactly what the stock classes
would. They must only be updated from one thread (the event loop's): two threads adding at once could lose a
count. Metrics updated from worker threads keep the stock classes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

import prometheus_client
from prometheus_client.samples import Sample


class Histogram(prometheus_client.Histogram):
    """A histogram observed from the event loop only: a bisect and two additions an observation."""

    def _metric_init(self) -> None:
        super()._metric_init()
        self._pending = [0] * len(self._upper_bounds)
        self._pending_sum = 0.0

    def observe(self, amount: float, exemplar: Any = None) -> None:
        self._pending[bisect_left(self._upper_bounds, amount)] += 1  # the first bucket with amount <= bound
        self._pending_sum += amount

    def _child_samples(self) -> Iterable[Sample]:
        pending, self._pending = self._pending, [0] * len(self._upper_bounds)
        total, self._pending_sum = self._pending_sum, 0.0
        for bucket, count in zip(self._buckets, pending):
            if count:
                bucket.inc(count)
        if total:
            self._sum.inc(total)
        return super()._child_samples()


class Counter(prometheus_client.Counter):
    """A counter incremented from the event loop only."""

    def _metric_init(self) -> None:
        super()._metric_init()
        self._pending = 0.0

    def inc(self, amount: float = 1, exemplar: Any = None) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._pending += amount

    def _child_samples(self) -> Iterable[Sample]:
        pending, self._pending = self._pending, 0.0
        if pending:
            self._value.inc(pending)
        return super()._child_samples()


class Gauge(prometheus_client.Gauge):
    """A gauge moved up and down from the event loop only (`set` still works, and discards pending moves)."""

    def _metric_init(self) -> None:
        super()._metric_init()
        self._pending = 0.0

    def inc(self, amount: float = 1) -> None:
        self._pending += amount

    def dec(self, amount: float = 1) -> None:
        self._pending -= amount

    def set(self, value: float) -> None:
        self._pending = 0.0
        super().set(value)

    def _child_samples(self) -> Iterable[Sample]:
        pending, self._pending = self._pending, 0.0
        if pending:
            self._value.inc(pending)
        return super()._child_samples()
