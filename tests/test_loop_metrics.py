"""The lock-free request-path metrics expose exactly what prometheus_client's own classes would."""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest

from proxy import loop_metrics

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def _exposition(module) -> bytes:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    hist = module.Histogram("h_seconds", "h", ["route"], buckets=BUCKETS, registry=registry)
    count = module.Counter("c_total", "c", ["status"], registry=registry)
    gauge = module.Gauge("g", "g", registry=registry)
    for value in (0.0, 0.001, 0.0015, 0.01, 0.5, 1.0, 3.0, 100.0):
        hist.labels("chat").observe(value)
    hist.labels("completion").observe(0.2)
    count.labels("200").inc()
    count.labels("200").inc(2)
    count.labels("400").inc()
    gauge.inc()
    gauge.inc()
    gauge.dec()
    first = generate_latest(registry)
    hist.labels("chat").observe(0.05)  # read twice: what was moved over is not counted again
    count.labels("200").inc()
    gauge.dec()
    return first + generate_latest(registry)


def _without_created(text: bytes) -> list[bytes]:
    return [line for line in text.splitlines() if b"_created" not in line]


def test_same_exposition_as_prometheus_client() -> None:
    assert _without_created(_exposition(loop_metrics)) == _without_created(_exposition(prometheus_client))


def test_gauge_set_discards_pending_moves() -> None:
    registry = CollectorRegistry()
    gauge = loop_metrics.Gauge("g", "g", registry=registry)
    gauge.inc(5)
    gauge.set(2)
    gauge.inc()
    assert registry.get_sample_value("g") == 3
