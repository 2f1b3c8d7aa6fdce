"""Evaluators: the evaluation experts behind guardstream (rules, Llama Guard, classifiers, data quality)."""

from evaluators.base import EvalItem, Evaluator, Finding, Turn, Verdict

__all__ = ["EvalItem", "Evaluator", "Finding", "Turn", "Verdict"]
