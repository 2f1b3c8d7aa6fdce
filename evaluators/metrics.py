"""The evaluators' Prometheus metrics, on a registry of their own: evaluators know nothing of the proxy.

Engines define their collectors with `registry=REGISTRY`. A host that serves metrics hands its registry to
`expose_on` (the proxy does, so they appear at its GET /metrics); elsewhere (`guardstream eval`, tests) they
count without being served.
"""

from __future__ import annotations

from weakref import WeakSet

from prometheus_client import CollectorRegistry

REGISTRY = CollectorRegistry(auto_describe=True)
_exposed_on: WeakSet[CollectorRegistry] = WeakSet()


def expose_on(registry: CollectorRegistry) -> None:
    """Serve every evaluator metric on `registry` too, now and as engines add them (once per registry)."""
    if registry is REGISTRY or registry in _exposed_on:
        return
    registry.register(REGISTRY)
    _exposed_on.add(registry)
