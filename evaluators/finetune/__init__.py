"""`guardstream finetune KIND`: teach the evaluation experts from reviewed traffic.

Each kind reads what `guardstream export` writes and writes an artifact directory (see manifest.py):

- `llama-guard`: LoRA on a Llama Guard 3 model from the `llamaguard/` rows (guard_sft.py);
- `judge`: a binary accept/reject expert in the Llama Guard format from the `kto/` rows (guard_sft.py);
- `reward`: a Bradley-Terry reward model from the `dpo/` pairs (reward.py);
- `classifier`: the CPU classifier from the `kto/` rows (classifier.py).

Heavy libraries (torch, transformers, trl, peft) are imported only when a kind runs.
"""

from __future__ import annotations

from collections.abc import Callable

from evaluators.finetune.options import KINDS, FinetuneOptions, FinetuneResult

__all__ = ["KINDS", "FinetuneOptions", "FinetuneResult", "run"]


def runner(kind: str) -> Callable[[FinetuneOptions], FinetuneResult]:
    if kind == "llama-guard":
        from evaluators.finetune.guard_sft import run_llama_guard

        return run_llama_guard
    if kind == "judge":
        from evaluators.finetune.guard_sft import run_judge

        return run_judge
    if kind == "reward":
        from evaluators.finetune.reward import run as run_reward

        return run_reward
    if kind == "classifier":
        from evaluators.finetune.classifier import run as run_classifier

        return run_classifier
    raise ValueError(f"unknown finetune kind {kind!r} (known: {', '.join(KINDS)})")


def run(kind: str, opts: FinetuneOptions) -> FinetuneResult:
    """Train one kind; see each module for what it reads and writes."""
    return runner(kind)(opts)
