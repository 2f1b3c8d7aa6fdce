"""Llama Guard counters, on the proxy's registry (served at GET /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

from proxy.metrics import REGISTRY

PARSE_ERRORS = Counter("guardstream_llama_guard_parse_errors_total",
                       "Llama Guard answers that were not 'safe' / 'unsafe' + category codes", ["evaluator"],
                       registry=REGISTRY)
CATEGORY_DECODES = Counter("guardstream_llama_guard_category_decodes_total",
                           "Extra greedy decodes run to read the category line of an unsafe verdict", ["evaluator"],
                           registry=REGISTRY)
