"""Llama Guard 3 evaluator: prompt builder, answer parser, P(unsafe) scoring and three backends.

Registered as evaluator type `llama_guard` (see evaluators/registry.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluators.llama_guard.evaluator import LlamaGuardEvaluator
from evaluators.llama_guard.options import LlamaGuardOptions

__all__ = ["LlamaGuardEvaluator", "LlamaGuardOptions", "create"]


def create(name: str, options: Mapping[str, Any]) -> LlamaGuardEvaluator:
    """Factory for the registry: `evaluators: {NAME: {type: llama_guard, options: {...}}}`."""
    return LlamaGuardEvaluator(name, options)
