"""Measuring evaluators on labelled data: loading, metrics, running, reporting."""
