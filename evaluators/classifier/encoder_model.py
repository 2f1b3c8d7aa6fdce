"""The learned safety model: a BERT-style encoder, mean pooling, and two heads (training side, torch).

* `unsafe`: one logit per item (P(unsafe) after calibration); prompts and answers share it, the
  input format tells them apart (`encoding.py`);
* `category`: one logit per category of `taxonomy.CATEGORIES` (multi-label: S1-S14 + prompt_injection).

Partial fine-tuning: the lower layers are frozen and run once per text (`lower_states`, cached),
the top `trainable_layers` layers and the heads train on the cached states (`TopModel`). The
exported model (`export.py`) is the whole stack in one graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from evaluators.classifier.encoding import length_batches

if TYPE_CHECKING:  # transformers is imported where a backbone is built (backbone.load_bert), not here
    from transformers import BertModel


def additive_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def _layer(layer: nn.Module, hidden: torch.Tensor, ext: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor | tuple[torch.Tensor, ...] = layer(hidden, attention_mask=ext)
    return out[0] if isinstance(out, tuple) else out


class Heads(nn.Module):
    def __init__(self, hidden: int, n_categories: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.unsafe = nn.Linear(hidden, 1)
        self.category = nn.Linear(hidden, n_categories)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dropout(pooled)
        return self.unsafe(x).squeeze(-1), self.category(x)


class SafetyModel(nn.Module):
    """The whole stack: ids -> (unsafe logit, category logits). What is exported to ONNX."""

    def __init__(self, bert: BertModel, heads: Heads) -> None:
        super().__init__()
        self.bert = bert
        self.heads = heads

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden: torch.Tensor = self.bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        ext = additive_mask(attention_mask, hidden.dtype)
        for layer in self.bert.encoder.layer:
            hidden = _layer(layer, hidden, ext)
        logits: tuple[torch.Tensor, torch.Tensor] = self.heads(mean_pool(hidden, attention_mask))
        return logits


class TopModel(nn.Module):
    """The trainable top: the last layers and the heads, fed cached lower-layer states."""

    def __init__(self, layers: Sequence[nn.Module], heads: Heads) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.heads = heads

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ext = additive_mask(mask, hidden.dtype)
        for layer in self.layers:
            hidden = _layer(layer, hidden, ext)
        logits: tuple[torch.Tensor, torch.Tensor] = self.heads(mean_pool(hidden, mask))
        return logits


@torch.inference_mode()
def lower_states(bert: BertModel, ids: Sequence[Sequence[int]], depths: Sequence[int], pad_id: int,
                 max_tokens: int = 4096, on_batch: Callable[[int], None] | None = None) -> dict[int, list[np.ndarray]]:
    """Hidden states after the first d layers for each d in `depths`: float16 [len, hidden] per text."""
    bert.eval()  # type: ignore[no-untyped-call]  # transformers' PreTrainedModel.eval is unannotated
    out: dict[int, dict[int, np.ndarray]] = {d: {} for d in depths}  # depth -> text index -> states
    for chunk in length_batches([len(i) for i in ids], max_tokens):
        width = max(len(ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
            mask[row, : len(ids[i])] = 1
        hidden: torch.Tensor = bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        ext = additive_mask(mask, hidden.dtype)
        for depth in range(max(depths) + 1):
            if depth:
                hidden = _layer(bert.encoder.layer[depth - 1], hidden, ext)
            if depth in out:
                for row, i in enumerate(chunk):
                    out[depth][i] = hidden[row, : len(ids[i])].to(torch.float16).numpy()
        if on_batch is not None:
            on_batch(len(chunk))
    return {d: [by_text[i] for i in range(len(ids))] for d, by_text in out.items()}


def pad_states(states: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(s.shape[0] for s in states)
    hidden = torch.zeros((len(states), width, states[0].shape[1]), dtype=torch.float32)
    mask = torch.zeros((len(states), width), dtype=torch.long)
    for row, s in enumerate(states):
        hidden[row, : s.shape[0]] = torch.from_numpy(s.astype(np.float32))
        mask[row, : s.shape[0]] = 1
    return hidden, mask
