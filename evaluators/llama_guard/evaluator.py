"""The Llama Guard evaluator: render, score P(unsafe) from the first token, threshold, read categories.

`safe = score < threshold`, where score = p_unsafe / (p_safe + p_unsafe) at the first
answer token. Categories come from the generated text; when the verdict is unsafe
but the text did not (yet) name categories (a threshold below 0.5, or a backend that
stops after the first word), the model is asked to continue after `unsafe\\n`.
An answer that is not `safe` / `unsafe` + codes gives an error verdict (counted);
the proxy's `on_error` policy decides what it means. Backend failures raise.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from evaluators.base import STAGES, BaseEvaluator, EvalItem, OptionError, Stage, Verdict
from evaluators.llama_guard.adapters import Adapter, AdapterError
from evaluators.llama_guard.backends.base import Backend
from evaluators.llama_guard.metrics import CATEGORY_DECODES, PARSE_ERRORS
from evaluators.llama_guard.options import LlamaGuardOptions
from evaluators.llama_guard.parser import ParseError, parse_categories, parse_output
from evaluators.llama_guard.prompt import (
    BOS,
    PROMPT_FORMAT_VERSION,
    BuilderRenderer,
    Category,
    ChatTemplateRenderer,
    PromptBuilder,
    Renderer,
    resolve_categories,
)
from evaluators.llama_guard.scoring import Generation, first_token
from evaluators.options import parse_options

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Outcome:
    """One item's judgement while it is being worked out."""

    score: float | None = None
    unsafe: bool = False
    categories: list[str] = field(default_factory=list)
    error: str | None = None
    #: text to append to the prompt to make the model write the category line
    category_prefix: str | None = None


class LlamaGuardEvaluator(BaseEvaluator):
    """Llama Guard 3 as a guardstream evaluator (prompts and answers, any backend)."""

    stages: frozenset[Stage] = frozenset(STAGES)

    def __init__(self, name: str, options: LlamaGuardOptions | Mapping[str, Any] | None = None, *,
                 backend: Backend | None = None, tokenizer: Any = None) -> None:
        opts = parse_options(LlamaGuardOptions, options)
        self.name = name
        self.options = opts
        self.threshold = opts.threshold
        self.categories: tuple[Category, ...] = resolve_categories(
            [c.model_dump() for c in opts.categories] if opts.categories else None, opts.exclude, opts.size())
        self.known_codes = frozenset(c.code for c in self.categories) | frozenset(opts.exclude)
        self.excluded = frozenset(opts.exclude)
        try:
            self.adapter = Adapter.from_options(opts.adapter, opts.adapter_name)
        except AdapterError as exc:
            raise OptionError("adapter", str(exc)) from None
        self.tokenizer = tokenizer if tokenizer is not None else _load_tokenizer(opts)
        self.renderer = self._pick_renderer()
        count = _token_counter(self.tokenizer) if opts.max_prompt_tokens and self.tokenizer is not None else None
        self.prompts = PromptBuilder(self.renderer, max_chars=opts.max_chars, max_tokens=opts.max_prompt_tokens,
                                     count_tokens=count)
        self._bos = (getattr(self.tokenizer, "bos_token", None) or BOS) if self._server_adds_bos() else None
        self.version = self._version()
        self._render = functools.lru_cache(maxsize=256)(self.prompts.build)
        self.backend: Backend = backend if backend is not None else build_backend(opts, self.tokenizer, self.adapter)

    # -- contract ---------------------------------------------------------------------

    def cache_context(self, item: EvalItem) -> str:
        """The complete prompt the model reads (conversation, categories, template)."""
        return self._render(item)

    def served_prompt(self, item: EvalItem) -> str:
        """Exactly what the backend receives for this item (fine-tuning trains on the same text)."""
        return self._wire(self._render(item))

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        start = time.perf_counter()
        prompts = [self.served_prompt(item) for item in items]
        gens = await self.backend.score(prompts)
        outcomes = [self._judge(g) for g in gens]
        need = [i for i, o in enumerate(outcomes) if o.category_prefix is not None and o.error is None]
        if need:
            CATEGORY_DECODES.labels(evaluator=self.name).inc(len(need))
            texts = await self.backend.complete([prompts[i] + (outcomes[i].category_prefix or "") for i in need],
                                                self.options.category_tokens)
            for i, text in zip(need, texts):
                outcomes[i] = self._read_categories(outcomes[i], text)
        latency_ms = (time.perf_counter() - start) * 1000.0
        return [self._verdict(o, latency_ms) for o in outcomes]

    async def check(self, messages: Iterable[Mapping[str, Any]], stage: Stage = "input") -> Verdict:
        """Convenience for direct use: judge the last of OpenAI-style chat messages."""
        return (await self.evaluate([EvalItem.from_messages(messages, stage)]))[0]

    async def aclose(self) -> None:
        await self.backend.aclose()

    # -- judgement --------------------------------------------------------------------

    def _judge(self, gen: Generation) -> Outcome:
        first = first_token(gen.tokens, gen.top) if gen.tokens else None
        word = first.word if first else (gen.text.split() or [""])[0].lower()
        if word not in ("safe", "unsafe"):
            return Outcome(error=f"expected 'safe' or 'unsafe', got {word[:40]!r}" if word else "empty answer")
        score = first.score if first and first.score is not None else (1.0 if word == "unsafe" else 0.0)
        outcome = Outcome(score=score, unsafe=score >= self.threshold)
        if gen.finished:
            try:
                parsed = parse_output(gen.text, self.known_codes)
            except ParseError as exc:
                return replace(outcome, error=str(exc))
            if outcome.unsafe and parsed.unsafe:
                outcome.categories = parsed.categories
                return outcome
        if outcome.unsafe:
            gap = gen.text[: len(gen.text) - len(gen.text.lstrip())]
            outcome.category_prefix = f"{gap}unsafe\n"
        return outcome

    def _read_categories(self, outcome: Outcome, text: str) -> Outcome:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        try:
            cats = parse_categories(lines[0], self.known_codes) if lines else []
        except ParseError as exc:
            return replace(outcome, error=str(exc), category_prefix=None)
        return replace(outcome, categories=cats, category_prefix=None)

    def _verdict(self, o: Outcome, latency_ms: float) -> Verdict:
        if o.error is not None:
            PARSE_ERRORS.labels(evaluator=self.name).inc()
            log.warning("llama_guard.parse_error", evaluator=self.name, error=o.error)
            return Verdict.failure(self, f"llama_guard answer not understood: {o.error}", latency_ms)
        unsafe, cats = o.unsafe, [c for c in o.categories if c not in self.excluded]
        if unsafe and o.categories and not cats:
            unsafe = False  # the model named only categories this policy excludes
        return Verdict(safe=not unsafe, evaluator=self.name, version=self.version, categories=cats if unsafe else [],
                       score=o.score, latency_ms=latency_ms)

    # -- set-up -----------------------------------------------------------------------

    def _wire(self, prompt: str) -> str:
        """What is sent: the rendered prompt, less the BOS text when the server's tokenizer adds BOS."""
        if self._bos and self.options.backend != "transformers" and prompt.startswith(self._bos):
            return prompt[len(self._bos):]
        return prompt

    def _server_adds_bos(self) -> bool:
        if self.options.server_adds_bos is not None:
            return self.options.server_adds_bos
        tok = self.tokenizer
        if tok is None or tok.bos_token_id is None:
            return tok is None
        return bool(tok("x")["input_ids"][:1] == [tok.bos_token_id])

    def _pick_renderer(self) -> Renderer:
        opts, tok = self.options, self.tokenizer
        has_template = tok is not None and bool(getattr(tok, "chat_template", None))
        if opts.prompt_format == "chat_template" and not has_template:
            raise ValueError("prompt_format 'chat_template' needs a tokenizer with a chat template")
        if opts.prompt_format == "builder" or not has_template:
            return BuilderRenderer(self.categories, bos=getattr(tok, "bos_token", None) or BOS)
        custom = self.options.categories is not None
        renderer = ChatTemplateRenderer(tok, self.categories if custom else None, sorted(self.excluded))
        if (custom or self.excluded) and not renderer.honours(self.categories, sorted(self.excluded), custom):
            if opts.prompt_format == "chat_template":
                raise ValueError("the tokenizer's chat template ignores custom or excluded categories")
            log.warning("llama_guard.chat_template_ignores_categories", evaluator=self.name,
                        fallback="builder")
            return BuilderRenderer(self.categories, bos=getattr(tok, "bos_token", None) or BOS)
        return renderer

    def _version(self) -> str:
        blob = {
            "format": PROMPT_FORMAT_VERSION,
            "renderer": type(self.renderer).__name__,
            "categories": [c.line() for c in self.categories],
            "exclude": sorted(self.excluded),
            "threshold": self.threshold,
            "max_chars": self.options.max_chars,
            "max_prompt_tokens": self.options.max_prompt_tokens,
        }
        if self.adapter is not None:
            blob["adapter"] = self.adapter.version_tag()
        digest = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]
        model = self.options.model + (f"+{self.adapter.version_tag()}" if self.adapter is not None else "")
        return f"{model}@{digest}"


def _token_counter(tokenizer: Any) -> Callable[[str], int]:
    """Counts tokens on a private copy: a fast tokenizer used from two threads at once (the event loop
    here, a model worker thread in the backend) can fail with "Already borrowed"."""
    own = copy.deepcopy(tokenizer)
    rust = getattr(own, "backend_tokenizer", None)
    if rust is not None:
        return lambda text: len(rust.encode(text, add_special_tokens=False).ids)
    return lambda text: len(own.encode(text, add_special_tokens=False))


def _load_tokenizer(opts: LlamaGuardOptions) -> Any:
    """The configured tokenizer; for in-process backends, the model's own (local files only)."""
    path = opts.tokenizer
    if path is None and opts.backend in ("transformers", "vllm") and Path(opts.model).is_dir():
        path = opts.model
    if path is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def build_backend(opts: LlamaGuardOptions, tokenizer: Any = None, adapter: Adapter | None = None) -> Backend:
    """The backend named in the options (heavy libraries are imported here, not before)."""
    if opts.backend == "openai_http":
        from evaluators.llama_guard.backends.openai_http import OpenAIHTTPBackend

        served = adapter.name if adapter is not None else opts.model  # a vLLM server names adapters as models
        return OpenAIHTTPBackend(opts.url, served, api_key=os.environ.get(opts.api_key_env or "") or None,
                                 timeout_s=opts.timeout_s, connect_timeout_s=opts.connect_timeout_s,
                                 retries=opts.retries, backoff_s=opts.backoff_s, pool_size=opts.pool_size,
                                 max_tokens=opts.max_tokens, top_logprobs=opts.top_logprobs,
                                 max_batch_size=opts.request_batch_size)
    if opts.backend == "vllm":
        from evaluators.llama_guard.backends.vllm_engine import VLLMEngineBackend

        return VLLMEngineBackend(opts.model, opts.tokenizer, max_tokens=opts.max_tokens,
                                 top_logprobs=opts.top_logprobs, gpu_memory_utilization=opts.gpu_memory_utilization,
                                 max_model_len=opts.max_model_len, dtype=opts.dtype, load_format=opts.load_format,
                                 engine_args=opts.engine_args, adapter=adapter)
    from evaluators.llama_guard.backends.transformers_backend import TransformersBackend

    return TransformersBackend(opts.model, opts.tokenizer, device=opts.device, dtype=opts.dtype,
                               max_batch_size=opts.batch.max_batch_size, max_wait_ms=opts.batch.max_wait_ms,
                               top_logprobs=opts.top_logprobs, tokenizer_obj=tokenizer,
                               torch_threads=opts.torch_threads, adapter=adapter.path if adapter is not None else None)
