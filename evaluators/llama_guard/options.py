"""Options of the `llama_guard` evaluator type (the `options:` mapping in the YAML config)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from evaluators.base import OptionError
from evaluators.options import EngineOptions


class CategoryOption(EngineOptions):
    """A custom hazard category: `S1: Name.` and an optional description on the next lines."""

    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = ""


class BatchOptions(EngineOptions):
    """Micro-batching of the in-process transformers backend."""

    max_batch_size: int = Field(default=8, gt=0)
    max_wait_ms: float = Field(default=2.0, ge=0)


class LlamaGuardOptions(EngineOptions):
    backend: Literal["openai_http", "vllm", "transformers"] = "openai_http"
    #: served model name (openai_http) or a local directory / model id (vllm, transformers)
    model: str = "meta-llama/Llama-Guard-3-8B"
    url: str = "http://127.0.0.1:8000"
    api_key_env: str | None = None
    #: local tokenizer directory: its chat template renders prompts and it counts tokens
    tokenizer: str | None = None
    #: a LoRA adapter directory (`guardstream finetune`): merged into the model (transformers), sent with every
    #: request (vllm), or only digested for the version (openai_http, where the server loaded it)
    adapter: str | None = None
    #: the adapter's name on a vLLM server (`--lora-modules NAME=DIR`): openai_http requests it as `model`;
    #: default: the adapter directory's name
    adapter_name: str | None = None
    prompt_format: Literal["auto", "builder", "chat_template"] = "auto"
    categories: list[CategoryOption] | None = None
    exclude: list[str] = Field(default_factory=list)
    #: "1b" lists S1-S13 by default, "8b" S1-S14; inferred from the model name when unset
    model_size: Literal["1b", "8b"] | None = None
    threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    max_chars: int = Field(default=32_000, gt=1000)
    max_prompt_tokens: int | None = Field(default=None, gt=256)
    #: tokens generated per judgement (openai_http, vllm): at least "\n\n", the word and <|eot_id|>
    max_tokens: int = Field(default=10, ge=3, le=64)
    category_tokens: int = Field(default=24, ge=2, le=128)
    top_logprobs: int = Field(default=20, ge=2, le=20)
    #: the server / engine tokenizer adds BOS, so strip it from the rendered prompt before sending;
    #: None: ask the configured tokenizer, or assume yes (Llama 3 tokenizers do)
    server_adds_bos: bool | None = None
    # openai_http
    timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_s: float = Field(default=0.05, ge=0)
    pool_size: int = Field(default=64, gt=0)
    request_batch_size: int = Field(default=16, gt=0)
    # transformers
    batch: BatchOptions = Field(default_factory=BatchOptions)
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    torch_threads: int | None = Field(default=None, gt=0)
    # vllm
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    max_model_len: int | None = None
    load_format: str = "auto"
    engine_args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _categories_resolve(self) -> LlamaGuardOptions:
        """Duplicate or unknown category codes, or nothing left to check, are errors here, not at the first
        request (a typo would otherwise silently widen what is blocked)."""
        from evaluators.llama_guard.prompt import resolve_categories

        try:
            resolve_categories([c.model_dump() for c in self.categories] if self.categories else None,
                               self.exclude, self.size())
        except ValueError as exc:
            raise OptionError("categories" if "duplicate" in str(exc) else "exclude", str(exc)) from None
        return self

    def size(self) -> Literal["1b", "8b"]:
        if self.model_size:
            return self.model_size
        return "1b" if re.search(r"(?<![\d.])1b(?![a-z0-9])", self.model.lower()) else "8b"
