"""Kind `reward`: a Bradley-Terry reward model from the export's DPO pairs (TRL's RewardTrainer).

The model is the base model with one score output (`AutoModelForSequenceClassification`, `num_labels=1`),
LoRA-tuned (the score head is trained in full) so that r(chosen) > r(rejected): the RLHF-style ranking
expert that the `reward_model` evaluator (issue #18) serves. `RewardScorer` is the one way a conversation
becomes a score, used both to measure the run and to serve it, so training and serving read the same text:
`conversation_text` is the reward_model evaluator's own rendering (evaluators/reward_model/render.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluators.base import Turn
from evaluators.evaluation.datasets import DataError
from evaluators.finetune import lora
from evaluators.finetune.data import Record, read_splits
from evaluators.finetune.manifest import base_model_entry, read_manifest, write_manifest, write_metrics
from evaluators.finetune.measure import before_after
from evaluators.finetune.options import FinetuneOptions, FinetuneResult
from evaluators.finetune.progress import RichProgress
from evaluators.reward_model.render import InputFormat, conversation_text

ADAPTER_DIR = "adapter"
TOKENIZER_DIR = "tokenizer"


@dataclass(frozen=True, slots=True)
class Pair:
    """A preference: the same conversation ending in the chosen and in the rejected answer."""

    chosen: tuple[Turn, ...]
    rejected: tuple[Turn, ...]


def pairs(records: Iterable[Record]) -> list[Pair]:
    out = []
    for record in records:
        if len(record.rows) != 2:
            raise DataError(f"{record.where}: not a DPO pair (finetune reward reads prompt, chosen, rejected rows)")
        chosen, rejected = record.rows
        out.append(Pair(chosen.to_item("output").turns, rejected.to_item("output").turns))
    return out


class RewardScorer:
    """Scores conversations with a reward model: a base model directory and, after training, its adapter."""

    def __init__(self, base: str, adapter: str | None = None, *, tokenizer: str | None = None,
                 input_format: InputFormat = "plain", device: str = "cpu", batch_size: int = 16,
                 seed: int = 0) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or base, local_files_only=True)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        torch.manual_seed(seed)  # an untrained score head is random: the same one each time
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, local_files_only=True)
        model.config.pad_token_id = self.tokenizer.pad_token_id
        if adapter is not None:
            from evaluators.llama_guard.adapters import merge_into

            model = merge_into(model, adapter)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.input_format: InputFormat = input_format
        self.batch_size = batch_size

    @classmethod
    def from_artifact(cls, path: str | Path, device: str = "cpu") -> RewardScorer:
        """A trained reward model from its artifact directory (base model path and input format from the manifest)."""
        manifest = read_manifest(path)
        if manifest.get("kind") != "reward":
            raise lora.FinetuneError(f"{path} is a {manifest.get('kind')} artifact, not a reward model")
        return cls(manifest["base_model"]["path"], str(Path(path) / ADAPTER_DIR),
                   tokenizer=str(Path(path) / TOKENIZER_DIR), input_format=manifest["input_format"], device=device)

    def score(self, conversations: Sequence[Sequence[Turn]]) -> list[float]:
        """One reward per conversation (higher = preferred)."""
        texts = [conversation_text(c, self.tokenizer, self.input_format) for c in conversations]
        out: list[float] = []
        with self._torch.inference_mode():
            for lo in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[lo:lo + self.batch_size], padding=True, return_tensors="pt").to(self.device)
                out.extend(self.model(**enc).logits[:, 0].float().tolist())
        return out


def pair_metrics(scorer: RewardScorer, test: Sequence[Pair]) -> dict[str, Any]:
    """Share of pairs ranked right (r(chosen) > r(rejected)) and the mean margin."""
    chosen = scorer.score([p.chosen for p in test])
    rejected = scorer.score([p.rejected for p in test])
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"n": len(test), "accuracy": sum(m > 0 for m in margins) / len(test) if test else 0.0,
            "mean_margin": sum(margins) / len(margins) if margins else 0.0}


def encode(tokenizer: Any, pair: Pair, input_format: InputFormat, max_length: int) -> dict[str, list[int]] | None:
    ids = [tokenizer(conversation_text(side, tokenizer, input_format))["input_ids"] for side in (pair.chosen,
                                                                                                  pair.rejected)]
    if max(len(i) for i in ids) > max_length:
        return None
    return {"chosen_ids": ids[0], "rejected_ids": ids[1]}


def run(opts: FinetuneOptions) -> FinetuneResult:
    from transformers import AutoTokenizer

    if not opts.base:
        raise lora.FinetuneError("finetune reward needs --base MODEL_DIR (a local model directory)")
    lora.set_threads(opts)
    device = lora.device_of(opts)
    lora.resume_from(opts)
    splits = read_splits(opts.data, "reward", opts.test_fraction)
    train_pairs, test_pairs = pairs(splits.train), pairs(splits.test)
    tokenizer = AutoTokenizer.from_pretrained(opts.base, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = [e for e in (encode(tokenizer, p, opts.input_format, opts.max_length) for p in train_pairs) if e]
    if not rows:
        raise lora.FinetuneError(f"no trainable pairs in {opts.data}")
    score_device = "cuda" if device.startswith("cuda") else "cpu"
    before = (pair_metrics(RewardScorer(opts.base, input_format=opts.input_format, device=score_device,
                                        seed=opts.seed), test_pairs) if opts.before and test_pairs else None)
    outcome = _train(opts, rows, tokenizer, device)
    after = pair_metrics(RewardScorer(opts.base, str(opts.out / ADAPTER_DIR), input_format=opts.input_format,
                                      device=score_device), test_pairs) if test_pairs else {}
    results: dict[str, Any] = (before_after(before, after, keys=("accuracy", "mean_margin")) if after
               else {"before": before, "after": None, "change": {}})
    results["test_pairs"] = len(test_pairs)
    write_metrics(opts.out, results)
    from evaluators.llama_guard.adapters import adapter_digest

    manifest = write_manifest(opts.out, "reward", {
        "base_model": base_model_entry(opts.base),
        "data": {**splits.manifest(), "source": str(opts.data), "trained_pairs": len(rows),
                 "skipped": {f"longer than max_length {opts.max_length}": len(train_pairs) - len(rows)}},
        "hyperparameters": opts.hyperparameters(), "seed": opts.seed, "run": outcome.manifest(),
        "artifact": {"adapter": ADAPTER_DIR, "tokenizer": TOKENIZER_DIR,
                     "adapter_sha256": adapter_digest(opts.out / ADAPTER_DIR)},
        "input_format": opts.input_format, "loss": "Bradley-Terry: -log sigmoid(r(chosen) - r(rejected))",
        "evaluator": {"type": "reward_model", "options": {"path": str(opts.out.resolve())}},
    })
    return FinetuneResult(out=opts.out, manifest=manifest, metrics=results)


def _train(opts: FinetuneOptions, rows: list[dict[str, list[int]]], tokenizer: Any, device: str) -> lora.RunOutcome:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer  # type: ignore[attr-defined]  # trl re-exports lazily, without __all__

    torch.manual_seed(opts.seed)
    model = AutoModelForSequenceClassification.from_pretrained(opts.base, num_labels=1, local_files_only=True,
                                                               dtype=lora.model_dtype(device))
    model.config.pad_token_id = tokenizer.pad_token_id
    progress = RichProgress("finetune reward", opts.console)
    config = RewardConfig(**lora.trainer_arguments(opts, device), max_length=opts.max_length)
    trainer = RewardTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                            processing_class=tokenizer, peft_config=lora.lora_config(opts, "SEQ_CLS"),
                            callbacks=[progress])
    outcome = lora.run_trainer(trainer, opts, progress, device)
    lora.trained_adapter(trainer.model).save_pretrained(str(opts.out / ADAPTER_DIR))
    tokenizer.save_pretrained(str(opts.out / TOKENIZER_DIR))
    return outcome
