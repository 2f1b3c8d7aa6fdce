"""Options shared by every `guardstream finetune` kind (the command line maps onto these)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

Kind = Literal["llama-guard", "judge", "reward", "classifier"]
KINDS: tuple[Kind, ...] = ("llama-guard", "judge", "reward", "classifier")


@dataclass(slots=True)
class FinetuneOptions:
    """What to train on, from which base, into which directory, and how."""

    data: Path
    out: Path
    #: base model directory (llama-guard, judge, reward), or the classifier artifact to start from
    base: str | None = None
    epochs: float = 2.0
    #: stop after this many optimisation steps (-1: run the epochs)
    max_steps: int = -1
    learning_rate: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    #: rows longer than this (tokens, prompt and answer) are left out and counted
    max_length: int = 4096
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    seed: int = 0
    #: share of conversations held out when the data has no test split of its own
    test_fraction: float = 0.1
    resume: bool = False
    save_steps: int = 200
    logging_steps: int = 10
    device: str = "auto"
    #: llama-guard (optional) and judge (required): the categories the prompt lists
    categories: list[dict[str, str]] | None = None
    model_size: Literal["1b", "8b"] | None = None
    #: more `llama_guard` evaluator options used to render and to serve (threshold, max_prompt_tokens, ...)
    evaluator_options: dict[str, Any] = field(default_factory=dict)
    #: measure the base model on the test split too (the "before" column)
    before: bool = True
    torch_threads: int | None = None
    #: reward: how a conversation becomes the model's input ("plain" text turns, or the tokenizer's chat template)
    input_format: Literal["plain", "chat_template"] = "plain"
    console: Console | None = None

    def hyperparameters(self) -> dict[str, Any]:
        """What the manifest records (everything that changes the trained weights)."""
        keep = ("epochs", "max_steps", "learning_rate", "batch_size", "grad_accum", "max_length", "lora_r",
                "lora_alpha", "lora_dropout", "target_modules", "test_fraction", "input_format")
        return {k: getattr(self, k) for k in keep}


@dataclass(slots=True)
class FinetuneResult:
    """What a run wrote: the artifact directory, its manifest and its before/after metrics."""

    out: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]


#: what a configured llama_guard evaluator contributes to the rendering of training prompts
RENDER_OPTIONS = ("categories", "exclude", "model_size", "prompt_format", "max_chars", "max_prompt_tokens")


def render_options(evaluator_options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a llama_guard evaluator that shape its prompts (training renders its rows the same)."""
    return {k: v for k, v in evaluator_options.items() if k in RENDER_OPTIONS}


def read_categories(path: Path) -> list[dict[str, str]]:
    """A YAML or JSON list of categories: `- {code: Q1, name: Off-topic, description: ...}`."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "categories" in data:
        data = data["categories"]
    if not isinstance(data, list) or not all(isinstance(c, dict) and "code" in c and "name" in c for c in data):
        raise ValueError(f"{path}: expected a list of {{code, name, description}} mappings")
    return [{"code": str(c["code"]), "name": str(c["name"]), "description": str(c.get("description") or "")}
            for c in data]
