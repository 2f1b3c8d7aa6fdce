"""Where a transformers evaluator runs: threads, device and weight dtype from its `device` / `dtype` options."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve(device: str, dtype: str, threads: int | None = None) -> tuple[torch.device, torch.dtype]:
    """(torch.device, torch dtype): `auto` device is CUDA when present; `auto` dtype is bfloat16 on CUDA, else
    float32. `threads` sets torch's CPU threads when given. Needs torch (the `hf` extra)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    place = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                         "cpu" if device == "auto" else device)
    weights = {"auto": torch.bfloat16 if place.type == "cuda" else torch.float32,
               "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    return place, weights
