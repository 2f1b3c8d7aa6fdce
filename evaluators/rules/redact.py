"""Masking located findings, for the rule engines: the functions live in `evaluators/spans.py` (neutral ground
the proxy imports too); re-exported here."""

from evaluators.spans import mask, merge_sorted, merge_spans, placeholder, placeholder_spans, redact

__all__ = ["mask", "merge_sorted", "merge_spans", "placeholder", "placeholder_spans", "redact"]
