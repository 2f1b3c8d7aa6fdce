"""LoRA adapters for the Llama Guard evaluator: identity (digest, served name) and loading per backend.

A fine-tuned Llama Guard (or a judge in the Llama Guard format, `guardstream finetune`) is a
PEFT LoRA adapter directory (`adapter_config.json` + `adapter_model.safetensors`) over a base model:

- transformers: `PeftModel.from_pretrained(base, dir)` merged into the base weights (same function,
  no adapter overhead per forward);
- in-process vLLM: the engine starts with `enable_lora` and every request carries a `LoRARequest`;
- a vLLM server started with `--enable-lora --lora-modules NAME=DIR`: the request names the adapter as
  its `model`.

The adapter's digest goes into the evaluator's `version`, so cached verdicts of one adapter are never
served for another.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluators.digests import sha256_named_files

#: the files that define an adapter (PEFT's names); both go into the digest
CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


class AdapterError(ValueError):
    """The adapter directory is missing or incomplete (one line, names the path)."""


@functools.lru_cache(maxsize=32)
def _digest(path: str, mtimes: tuple[float, ...]) -> str:
    root = Path(path)
    return sha256_named_files(f for f in (root / name for name in (CONFIG_FILE, *WEIGHT_FILES)) if f.is_file())


def adapter_digest(path: str | Path) -> str:
    """sha256 over the adapter's config and weights (cached while the files are unchanged)."""
    root = check_adapter_dir(path)
    mtimes = tuple((root / n).stat().st_mtime for n in (CONFIG_FILE, *WEIGHT_FILES) if (root / n).is_file())
    return _digest(str(root.resolve()), mtimes)


def check_adapter_dir(path: str | Path) -> Path:
    root = Path(path)
    if not (root / CONFIG_FILE).is_file():
        raise AdapterError(f"adapter {root}: no {CONFIG_FILE} (a PEFT LoRA adapter directory is expected)")
    if not any((root / n).is_file() for n in WEIGHT_FILES):
        raise AdapterError(f"adapter {root}: no {' or '.join(WEIGHT_FILES)}")
    return root


def adapter_config(path: str | Path) -> dict[str, Any]:
    data = json.loads((check_adapter_dir(path) / CONFIG_FILE).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise AdapterError(f"adapter {path}: {CONFIG_FILE} is not a JSON object")
    return data


@dataclass(frozen=True, slots=True)
class Adapter:
    """An adapter as the evaluator uses it: where it is, what it is called on a server, its digest."""

    path: str | None
    name: str
    digest: str | None

    @classmethod
    def from_options(cls, path: str | None, name: str | None) -> Adapter | None:
        """From the `adapter` (directory) and `adapter_name` options; None when neither is set."""
        if path is None and name is None:
            return None
        digest = adapter_digest(path) if path is not None else None
        return cls(path=path, name=name or Path(path or "").name, digest=digest)

    @property
    def rank(self) -> int:
        """LoRA rank (vLLM's `max_lora_rank` must be at least this)."""
        if self.path is None:
            return 16
        return int(adapter_config(self.path).get("r") or 16)

    def version_tag(self) -> str:
        """What the evaluator version records: the digest, or the server-side name when only that is known."""
        return f"lora:{self.digest[:12]}" if self.digest else f"lora-name:{self.name}"


def merge_into(model: Any, path: str) -> Any:
    """transformers: the base model with the adapter's weights merged in (a plain model again)."""
    try:
        from peft import PeftModel
    except ImportError as exc:  # pragma: no cover - the finetune extra is part of the test install
        raise AdapterError("loading a LoRA adapter needs the 'finetune' extra: pip install 'guardstream[finetune]'"
                           ) from exc
    return PeftModel.from_pretrained(model, path).merge_and_unload()


def lora_request(adapter: Adapter, request_class: Any) -> Any:
    """vLLM: the per-request adapter (`vllm.lora.request.LoRARequest`, passed in so this needs no GPU)."""
    if adapter.path is None:
        raise AdapterError("the in-process vLLM backend needs the adapter's directory (option `adapter`)")
    return request_class(adapter.name, 1, str(Path(adapter.path).resolve()))


def vllm_engine_lora_args(adapter: Adapter | None) -> dict[str, Any]:
    """vLLM engine arguments that let requests use this adapter (none without one)."""
    if adapter is None:
        return {}
    rank = next((r for r in _VLLM_RANKS if r >= adapter.rank), adapter.rank)
    return {"enable_lora": True, "max_loras": 1, "max_lora_rank": rank}


#: the LoRA ranks vLLM's engine accepts for `max_lora_rank`
_VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
