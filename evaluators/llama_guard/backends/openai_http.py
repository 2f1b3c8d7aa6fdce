"""Llama Guard behind an OpenAI-compatible server (`vllm serve meta-llama/Llama-Guard-3-8B`).

Sends fully rendered prompts to `/v1/completions` (several prompts per request, as a
list) with `logprobs` and a small `max_tokens`, over one pooled aiohttp session.
5xx, 429, connection errors and timeouts are retried a bounded number of times with
exponential backoff and full jitter; other failures raise `BackendError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from evaluators.http_json import HTTPJSONError, JSONPoster
from evaluators.llama_guard.backends.base import BackendError
from evaluators.llama_guard.scoring import Generation


class OpenAIHTTPBackend:
    """Client for a `/v1/completions` endpoint returning legacy-format logprobs."""

    name = "openai_http"

    def __init__(self, url: str, model: str, *, api_key: str | None = None, timeout_s: float = 10.0,
                 connect_timeout_s: float = 2.0, retries: int = 2, backoff_s: float = 0.05,
                 max_backoff_s: float = 1.0, pool_size: int = 64, max_tokens: int = 10, top_logprobs: int = 20,
                 max_batch_size: int = 16) -> None:
        base = url.rstrip("/")
        self.endpoint = base + ("/completions" if base.endswith("/v1") else "/v1/completions")
        self.model = model
        self.max_tokens = max_tokens
        self.top_logprobs = top_logprobs
        self.max_batch_size = max(max_batch_size, 1)
        self._http = JSONPoster(api_key=api_key, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                                retries=retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s,
                                pool_size=pool_size, name="llama_guard")

    @property
    def stats(self) -> dict[str, int]:
        """HTTP requests sent and retries made (for tests and debugging)."""
        return self._http.stats

    # -- API --------------------------------------------------------------------------

    async def score(self, prompts: Sequence[str]) -> list[Generation]:
        body = {"max_tokens": self.max_tokens, "temperature": 0, "logprobs": self.top_logprobs}
        chunks = [list(prompts[i:i + self.max_batch_size]) for i in range(0, len(prompts), self.max_batch_size)]
        results = await asyncio.gather(*(self._complete(c, body) for c in chunks))
        return [g for chunk in results for g in chunk]

    async def complete(self, prompts: Sequence[str], max_tokens: int) -> list[str]:
        gens = await self._complete(list(prompts), {"max_tokens": max_tokens, "temperature": 0})
        return [g.text for g in gens]

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- internals --------------------------------------------------------------------

    async def _complete(self, prompts: list[str], params: Mapping[str, Any]) -> list[Generation]:
        payload = {"model": self.model, "prompt": prompts[0] if len(prompts) == 1 else prompts, **params}
        try:
            data = await self._http.post(self.endpoint, payload)
        except HTTPJSONError as exc:
            raise BackendError(str(exc)) from None
        return parse_completions(data, len(prompts))


def parse_completions(data: Any, n: int) -> list[Generation]:
    """Legacy completions response -> one Generation per prompt, in prompt order."""
    try:
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise BackendError(f"expected {n} choices, got {len(choices)}")
        return [_generation(c) for c in choices]
    except (KeyError, TypeError, AttributeError) as exc:
        raise BackendError(f"malformed completions response ({type(exc).__name__}: {exc})") from None


def _generation(choice: Mapping[str, Any]) -> Generation:
    text = choice["text"]
    if not isinstance(text, str):
        raise TypeError("choice text is not a string")
    lp = choice.get("logprobs") or {}
    tokens = [str(t) for t in lp.get("tokens") or []]
    top: list[Mapping[str, float]] = [{str(k): float(v) for k, v in (d or {}).items() if v is not None}
                                      for d in lp.get("top_logprobs") or []]
    return Generation(text=text, tokens=tokens, top=top, finished=choice.get("finish_reason") != "length")
