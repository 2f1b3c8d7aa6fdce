"""In-process vLLM backend: `AsyncLLMEngine` with prefix caching (the category block and
template are shared by every prompt, so only the conversation is prefilled).

vLLM is imported only when this backend is built (extra `vllm`; needs a GPU).
Prompts arrive fully rendered; the engine's tokenizer adds BOS itself, so callers
strip the BOS text (the evaluator does).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from evaluators.llama_guard.adapters import Adapter, lora_request, vllm_engine_lora_args
from evaluators.llama_guard.backends.base import BackendError
from evaluators.llama_guard.scoring import Generation, merge_logprobs

log = structlog.get_logger(__name__)


class VLLMEngineBackend:
    """Llama Guard on an in-process vLLM engine (continuous batching, prefix caching)."""

    name = "vllm"

    def __init__(self, model: str, tokenizer: str | None = None, *, max_tokens: int = 10, top_logprobs: int = 20,
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = None, dtype: str = "auto",
                 load_format: str = "auto", engine_args: Mapping[str, Any] | None = None,
                 adapter: Adapter | None = None) -> None:
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError as exc:
            raise BackendError("the vllm backend needs the 'vllm' extra (pip install 'guardstream[vllm]') "
                               "and a GPU") from exc
        self._sampling_params = SamplingParams
        args = AsyncEngineArgs(**engine_kwargs(model, tokenizer, gpu_memory_utilization=gpu_memory_utilization,
                                               max_model_len=max_model_len, dtype=dtype, load_format=load_format,
                                               top_logprobs=top_logprobs, engine_args=engine_args, adapter=adapter))
        #: every request carries the adapter (vLLM applies it per request, the base weights stay shared)
        self.lora = lora_request(adapter, LoRARequest) if adapter is not None else None
        self.engine = AsyncLLMEngine.from_engine_args(args)
        self.score_params = SamplingParams(max_tokens=max_tokens, temperature=0, logprobs=top_logprobs)
        log.info("llama_guard.vllm.started", model=model, load_format=load_format,
                 adapter=adapter.path if adapter is not None else None)

    async def score(self, prompts: Sequence[str]) -> list[Generation]:
        return list(await asyncio.gather(*(self._run(p, self.score_params) for p in prompts)))

    async def complete(self, prompts: Sequence[str], max_tokens: int) -> list[str]:
        params = self._sampling_params(max_tokens=max_tokens, temperature=0)
        return [g.text for g in await asyncio.gather(*(self._run(p, params) for p in prompts))]

    async def aclose(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown is not None:
            shutdown()

    async def _run(self, prompt: str, params: Any) -> Generation:
        final = None
        try:
            async for out in self.engine.generate(prompt, params, request_id=uuid.uuid4().hex,
                                                  lora_request=self.lora):
                final = out
        except Exception as exc:  # noqa: BLE001 - engine errors become backend errors
            raise BackendError(f"vLLM engine failed: {type(exc).__name__}: {exc}") from exc
        if final is None or not final.outputs:
            raise BackendError("vLLM engine returned no output")
        return generation_from_output(final.outputs[0])


def engine_kwargs(model: str, tokenizer: str | None, *, gpu_memory_utilization: float, max_model_len: int | None,
                  dtype: str, load_format: str, top_logprobs: int, engine_args: Mapping[str, Any] | None,
                  adapter: Adapter | None) -> dict[str, Any]:
    """`AsyncEngineArgs` keyword arguments: prefix caching, logprobs, LoRA when an adapter is configured
    (`engine_args` from the options win)."""
    return {"model": model, "tokenizer": tokenizer or model, "enable_prefix_caching": True,
            "gpu_memory_utilization": gpu_memory_utilization, "max_model_len": max_model_len, "dtype": dtype,
            "load_format": load_format, "max_logprobs": max(top_logprobs, 20), **vllm_engine_lora_args(adapter),
            **dict(engine_args or {})}


def generation_from_output(out: Any) -> Generation:
    """vLLM `CompletionOutput` (token ids + per-position {token_id: Logprob}) -> Generation."""
    tokens: list[str] = []
    top: list[Mapping[str, float]] = []
    for token_id, position in zip(out.token_ids, out.logprobs or []):
        chosen = position.get(token_id)
        tokens.append((chosen.decoded_token or "") if chosen is not None else "")
        top.append(merge_logprobs((lp.decoded_token, lp.logprob) for lp in position.values()
                                  if lp.decoded_token is not None))
    return Generation(text=out.text, tokens=tokens, top=top, finished=out.finish_reason != "length")
