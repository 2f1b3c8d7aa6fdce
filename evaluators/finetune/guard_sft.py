"""Kinds `llama-guard` and `judge`: LoRA fine-tuning in the Llama Guard format, loss on the answer only.

- `llama-guard` learns from the export's `llamaguard/` rows: a team's corrections, or its own categories
  (`--categories`), on a Llama Guard 3 base.
- `judge` learns a binary accept/reject policy that is not safety (data quality, a domain's rules) from the
  export's KTO rows, on any small causal model: rows judged unacceptable are answered `unsafe` with the
  policy's category code, so the `llama_guard` evaluator and its P(unsafe) scorer serve the result.

Prompts are rendered by the `llama_guard` evaluator that will serve the adapter (same options, same
tokenizer): `served_prompt` is exactly what the backend receives, so training text and served text are
byte-identical, whatever the export's rendering was (rows are read back into conversations first). The
completion is what the model writes after the prompt (`\\n\\nsafe`, `\\n\\nunsafe\\nS1`) and the tokenizer's
EOS; TRL's SFTTrainer gets the rows tokenised with a completion mask, so the loss covers the verdict tokens
only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evaluators.evaluation.datasets import LabelledRow
from evaluators.finetune import lora
from evaluators.finetune.data import Record, Splits, read_splits
from evaluators.finetune.manifest import base_model_entry, write_manifest, write_metrics
from evaluators.finetune.measure import before_after, llama_guard_metrics
from evaluators.finetune.options import FinetuneOptions, FinetuneResult
from evaluators.finetune.progress import RichProgress
from evaluators.llama_guard.backends.base import BackendError
from evaluators.llama_guard.prompt import answer_text
from evaluators.llama_guard.scoring import Generation

ADAPTER_DIR = "adapter"
TOKENIZER_DIR = "tokenizer"


class RenderOnly:
    """A backend that never runs: the evaluator is built only to render prompts."""

    name = "render-only"

    async def score(self, prompts: Sequence[str]) -> list[Generation]:
        raise BackendError("render-only backend")

    async def complete(self, prompts: Sequence[str], max_tokens: int) -> list[str]:
        raise BackendError("render-only backend")

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class SftExample:
    prompt: str
    completion: str
    row: LabelledRow


def serving_options(opts: FinetuneOptions, kind: str) -> dict[str, Any]:
    """The `llama_guard` evaluator options that render the training prompts and serve the adapter."""
    options: dict[str, Any] = {"backend": "transformers", "model": str(opts.base), **opts.evaluator_options}
    if opts.categories:
        options["categories"] = opts.categories
    if opts.model_size:
        options["model_size"] = opts.model_size
    if kind == "judge":
        options.setdefault("prompt_format", "builder")  # the base model's own chat template is no Llama Guard one
    if opts.device != "auto":
        options.setdefault("device", opts.device)
    return options


def examples(records: Iterable[Record], renderer: Any, kind: str, skipped: Counter[str]) -> Iterator[SftExample]:
    """Prompt and target for every row the prompt's categories can express (the rest are counted)."""
    known = [c.code for c in renderer.categories]
    for record in records:
        for row in record.rows:
            codes = [c for c in row.categories if c in known]
            if row.unsafe and not codes:
                if kind != "judge":
                    skipped["unsafe without a category the prompt lists"] += 1
                    continue
                codes = known[:1]  # a judge's rejection: the policy's (first) category
            yield SftExample(renderer.served_prompt(row.to_item()), answer_text(row.unsafe, codes), row)


def encode(tokenizer: Any, example: SftExample, max_length: int) -> dict[str, list[int]] | None:
    """Token ids of prompt + answer + EOS and the completion mask (1 on the answer); None when too long."""
    prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    answer = tokenizer(example.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt) + len(answer) > max_length:
        return None
    return {"input_ids": prompt + answer, "completion_mask": [0] * len(prompt) + [1] * len(answer)}


def run_llama_guard(opts: FinetuneOptions) -> FinetuneResult:
    return _run(opts, "llama-guard")


def run_judge(opts: FinetuneOptions) -> FinetuneResult:
    if not opts.categories:
        raise lora.FinetuneError("finetune judge needs --categories FILE: the policy's categories "
                                 "(code, name, description), e.g. Q1: Off-topic answers")
    return _run(opts, "judge")


def _run(opts: FinetuneOptions, kind: str) -> FinetuneResult:
    from transformers import AutoTokenizer

    from evaluators.llama_guard import LlamaGuardEvaluator

    if not opts.base:
        raise lora.FinetuneError(f"finetune {kind} needs --base MODEL_DIR (a local model directory)")
    lora.set_threads(opts)
    device = lora.device_of(opts)
    lora.resume_from(opts)  # refuse early, before any work, when an earlier run is in the way
    splits = read_splits(opts.data, kind, opts.test_fraction)
    tokenizer = AutoTokenizer.from_pretrained(opts.base, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    options = serving_options(opts, kind)
    renderer = LlamaGuardEvaluator("finetune-render", options, backend=RenderOnly(), tokenizer=tokenizer)
    skipped: Counter[str] = Counter()
    train_rows = []
    for example in examples(splits.train, renderer, kind, skipped):
        encoded = encode(tokenizer, example, opts.max_length)
        if encoded is None:
            skipped[f"longer than max_length {opts.max_length}"] += 1
        else:
            train_rows.append(encoded)
    test_rows = [e.row for e in examples(splits.test, renderer, kind, Counter())]
    if not train_rows:
        raise lora.FinetuneError(f"no trainable rows in {opts.data} ({dict(skipped) or 'empty'})")
    before = llama_guard_metrics(options, test_rows) if opts.before and test_rows else None
    outcome = _train(opts, opts.base, train_rows, tokenizer, device, kind)
    adapter_dir = (opts.out / ADAPTER_DIR).resolve()
    served = {**options, "adapter": str(adapter_dir)}
    after = llama_guard_metrics(served, test_rows) if test_rows else {}
    results: dict[str, Any] = before_after(before, after) if after else {"before": before, "after": None, "change": {}}
    results["test_rows"] = len(test_rows)
    write_metrics(opts.out, results)
    manifest = write_manifest(opts.out, kind, _manifest_fields(opts, splits, served, outcome, skipped,
                                                                len(train_rows), adapter_dir))
    return FinetuneResult(out=opts.out, manifest=manifest, metrics=results)


def _train(opts: FinetuneOptions, base: str, rows: list[dict[str, list[int]]], tokenizer: Any, device: str,
           kind: str) -> lora.RunOutcome:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]  # trl re-exports lazily, without __all__

    model = AutoModelForCausalLM.from_pretrained(base, dtype=lora.model_dtype(device), local_files_only=True)
    progress = RichProgress(f"finetune {kind}", opts.console)
    config = SFTConfig(**lora.trainer_arguments(opts, device), completion_only_loss=True, max_length=None)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=lora_config_for(opts), callbacks=[progress])
    outcome = lora.run_trainer(trainer, opts, progress, device)
    lora.trained_adapter(trainer.model).save_pretrained(str(opts.out / ADAPTER_DIR))
    tokenizer.save_pretrained(str(opts.out / TOKENIZER_DIR))
    return outcome


def lora_config_for(opts: FinetuneOptions) -> Any:
    return lora.lora_config(opts, "CAUSAL_LM")


def _manifest_fields(opts: FinetuneOptions, splits: Splits, served: Mapping[str, Any], outcome: lora.RunOutcome,
                     skipped: Counter[str], trained: int, adapter_dir: Any) -> dict[str, Any]:
    from evaluators.llama_guard.adapters import adapter_digest

    return {
        "base_model": base_model_entry(str(opts.base)),
        "data": {**splits.manifest(), "source": str(opts.data), "trained_rows": trained, "skipped": dict(skipped)},
        "hyperparameters": opts.hyperparameters(), "seed": opts.seed, "run": outcome.manifest(),
        "artifact": {"adapter": ADAPTER_DIR, "tokenizer": TOKENIZER_DIR, "adapter_sha256": adapter_digest(adapter_dir)},
        "evaluator": {"type": "llama_guard", "options": dict(served)},
        "loss": "completion only (the verdict tokens)",
    }
