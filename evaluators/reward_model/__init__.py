"""The `reward_model` evaluator: how good an answer is, as a sequence-classification reward model scores it.

A Bradley-Terry reward model (one logit; what TRL's RewardTrainer and `guardstream finetune reward` produce)
reads the conversation ending in the answer and gives one number, higher = better. The verdict carries it as
`score`; below the evaluator's `threshold` the answer is `low_quality` (flagged by default). Backends: the model
in process (transformers, micro-batched) or a vLLM server's classification / pooling endpoint.

`create` is the registry factory (type `reward_model`); torch and transformers are imported when a
transformers-backed evaluator is built, not when this package is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["create"]


def create(name: str, options: Mapping[str, Any]) -> Any:  # -> RewardModelEvaluator
    from evaluators.reward_model.evaluator import create as _create

    return _create(name, options)
