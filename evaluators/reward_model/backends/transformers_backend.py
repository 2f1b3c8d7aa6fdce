"""In-process reward model: `AutoModelForSequenceClassification` (one label) on CPU or GPU, micro-batched.

Concurrent `score` calls are grouped by a `MicroBatcher` into one forward pass over padded texts (right
padding; the model reads its score at the last real token). Texts longer than `max_length` tokens lose their
beginning, so the answer being judged is always read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from evaluators import torch_placement
from evaluators.base import OptionError, Turn
from evaluators.batching import MicroBatcher
from evaluators.reward_model.artifact import ModelSource
from evaluators.reward_model.backends import RewardBackendError
from evaluators.reward_model.render import InputFormat, conversation_text, has_chat_template

log = structlog.get_logger(__name__)


class TransformersRewardBackend:
    name = "transformers"

    def __init__(self, source: ModelSource, *, input_format: str = "auto", max_length: int = 2048,
                 device: str = "auto", dtype: str = "auto", max_batch_size: int = 16, max_wait_ms: float = 2.0,
                 torch_threads: int | None = None) -> None:
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - the hf extra is part of the test install
            raise RewardBackendError("the transformers backend needs the 'hf' extra: "
                                     "pip install 'guardstream[hf]'") from exc
        self._torch = torch
        self.device, torch_dtype = torch_placement.resolve(device, dtype, torch_threads)
        self.tokenizer = AutoTokenizer.from_pretrained(str(source.tokenizer), local_files_only=True)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        self.tokenizer.truncation_side = "left"
        # an artifact's base is a plain model: its score head (one label) comes with the adapter
        head: dict[str, Any] = {"num_labels": 1} if source.adapter is not None else {}
        model = AutoModelForSequenceClassification.from_pretrained(str(source.base), dtype=torch_dtype,
                                                                   local_files_only=True, **head)
        if source.adapter is not None:
            model = _merge_adapter(model, source.adapter)
        if int(getattr(model.config, "num_labels", 1)) != 1:
            raise OptionError("path", f"{source.base}: {model.config.num_labels} labels; a reward model has one")
        model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model.to(self.device).eval()
        self.input_format: InputFormat = _format(input_format, source.input_format, self.tokenizer)
        self.max_length = max_length
        self.version = f"{source.digest}-{self.input_format}"
        self._batcher: MicroBatcher[str, float] = MicroBatcher(
            self._score_texts, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, name="reward-model")
        log.info("reward_model.transformers.loaded", model=str(source.base), adapter=str(source.adapter or ""),
                 device=str(self.device), input_format=self.input_format)

    def render(self, turns: Sequence[Turn]) -> str:
        return conversation_text(turns, self.tokenizer, self.input_format)

    async def score(self, conversations: Sequence[Sequence[Turn]]) -> list[float]:
        return await self._batcher.submit_many([self.render(c) for c in conversations])

    def score_texts_now(self, texts: list[str]) -> list[float]:
        """Synchronous scoring (benchmarks, offline evaluation)."""
        return self._score_texts(texts)

    def _score_texts(self, texts: list[str]) -> list[float]:
        torch = self._torch
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        with torch.inference_mode():
            logits = self.model(**enc).logits
        return [float(v) for v in logits[:, 0].float().tolist()]

    async def aclose(self) -> None:
        await self._batcher.aclose()


def _format(wanted: str, trained_with: str | None, tokenizer: Any) -> InputFormat:
    if wanted == "auto":
        wanted = trained_with or ("chat_template" if has_chat_template(tokenizer) else "plain")
    if wanted == "chat_template" and not has_chat_template(tokenizer):
        raise OptionError("input_format", "chat_template, but the tokenizer has no chat template")
    return "chat_template" if wanted == "chat_template" else "plain"


def _merge_adapter(model: Any, adapter: Any) -> Any:
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise OptionError("path", "a finetune artifact's LoRA adapter needs peft: pip install 'guardstream[finetune]'"
                          ) from exc
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
