"""Llama Guard counters, on the evaluators' registry (`evaluators/metrics.py`; the proxy serves it at
GET /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

from evaluators.metrics import REGISTRY

PARSE_ERRORS = Counter("guardstream_llama_guard_parse_errors_total",
                       "Llama Guard answers that were not 'safe' / 'unsafe' + category codes", ["evaluator"],
                       registry=REGISTRY)
CATEGORY_DECODES = Counter("guardstream_llama_guard_category_decodes_total",
                           "Extra greedy decodes run to read the category line of an unsafe verdict", ["evaluator"],
                           registry=REGISTRY)
