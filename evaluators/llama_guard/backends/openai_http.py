"""Llama Guard behind an OpenAI-compatible server (`vllm serve meta-llama/Llama-Guard-3-8B`).

Sends fully rendered prompts to `/v1/completions` (several prompts per request, as a
list) with `logprobs` and a small `max_tokens`, over one pooled aiohttp session.
5xx, 429, connection errors and timeouts are retried a bounded number of times with
exponential backoff and full jitter; other failures raise `BackendError`.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any, Mapping, Sequence

import aiohttp
import structlog

from evaluators.llama_guard.backends.base import BackendError
from evaluators.llama_guard.scoring import Generation

log = structlog.get_logger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


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
        self.retries = max(retries, 0)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_tokens = max_tokens
        self.top_logprobs = top_logprobs
        self.max_batch_size = max(max_batch_size, 1)
        self.pool_size = pool_size
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None
        #: HTTP requests sent and retries made (for tests and debugging)
        self.stats = {"requests": 0, "retries": 0}

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
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # -- internals --------------------------------------------------------------------

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session.loop is not loop:
            connector = aiohttp.TCPConnector(limit=self.pool_size, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, headers=self._headers)
        return self._session

    async def _complete(self, prompts: list[str], params: Mapping[str, Any]) -> list[Generation]:
        payload = {"model": self.model, "prompt": prompts[0] if len(prompts) == 1 else prompts, **params}
        data = await self._post(payload)
        return parse_completions(data, len(prompts))

    async def _post(self, payload: Mapping[str, Any]) -> Any:
        session = self._session_for_loop()
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
                await asyncio.sleep(random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** attempt)))
            self.stats["requests"] += 1
            try:
                async with session.post(self.endpoint, json=payload) as resp:
                    raw = await resp.read()
                    if resp.status in RETRY_STATUS:
                        last = f"HTTP {resp.status}"
                        log.warning("llama_guard.http.retryable", status=resp.status, attempt=attempt)
                        continue
                    if resp.status >= 400:
                        raise BackendError(f"{self.endpoint} answered HTTP {resp.status}: {_preview(raw)}")
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("llama_guard.http.retryable", error=type(exc).__name__, attempt=attempt)
                continue
            try:
                return json.loads(raw)
            except ValueError:
                raise BackendError(f"{self.endpoint} answered with non-JSON: {_preview(raw)}") from None
        raise BackendError(f"{self.endpoint} failed after {self.retries + 1} attempts (last: {last})")


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
    top = [{str(k): float(v) for k, v in (d or {}).items() if v is not None} for d in lp.get("top_logprobs") or []]
    return Generation(text=text, tokens=tokens, top=top, finished=choice.get("finish_reason") != "length")


def _preview(raw: bytes, n: int = 200) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return text if len(text) <= n else text[:n] + "..."
