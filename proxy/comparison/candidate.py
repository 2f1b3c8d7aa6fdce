"""The candidate model's server: the client's request, re-addressed and non-streamed, with the candidate's key.

The body is the client's as the upstream got it (redacted where the input stage redacted it), with the
candidate's `model`, `stream: false` (a streamed client request is compared on the candidate's whole answer)
and `n: 1` (the first choices are compared). The candidate's key comes from its `api_key_env`, goes only into
the Authorization header of these requests, and is scrubbed out of its answers; error bodies are never kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from proxy.config import CandidateConfig
from proxy.urls import display_url

KEY_REDACTED = b"[candidate key redacted]"


class CandidateError(Exception):
    """The candidate gave no usable answer; `kind` is `candidate_timeout` or `candidate_error`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class Candidate:
    def __init__(self, cfg: CandidateConfig, pool_size: int) -> None:
        self.cfg = cfg
        base = cfg.url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        self._key = key or None
        self._key_bytes = key.encode() if key and len(key) >= 8 else None
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    @property
    def display_url(self) -> str:
        """The URL without credentials, for events and logs."""
        return display_url(self.base_url)

    def body(self, client_body: dict[str, Any]) -> bytes:
        body = {k: v for k, v in client_body.items() if k not in ("stream_options",)}
        body.update(model=self.cfg.model, stream=False, n=1)
        return json.dumps(body).encode()

    async def answer(self, path: str, body: bytes, request_id: str,
                     choice_text: Callable[[dict[str, Any]], str]) -> tuple[str, float]:
        """The first choice's text and the seconds the whole answer took. Raises `CandidateError`."""
        started = time.perf_counter()
        headers = {"content-type": "application/json", "x-request-id": request_id}
        if self._key:
            headers["authorization"] = f"Bearer {self._key}"
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                async with self._session_for_loop().post(self.base_url + path, data=body, headers=headers,
                                                         allow_redirects=False) as resp:
                    raw = await self._read(resp)
                    status = resp.status
        except TimeoutError:
            raise CandidateError("candidate_timeout", f"no whole answer within {self.cfg.timeout_s} s") from None
        except aiohttp.ClientError as exc:
            raise CandidateError("candidate_error", type(exc).__name__) from None
        if status != 200:
            raise CandidateError("candidate_error", f"HTTP {status}")
        if self._key_bytes is not None and self._key_bytes in raw:  # a server echoing the key back
            raw = raw.replace(self._key_bytes, KEY_REDACTED)
        try:
            choice = json.loads(raw)["choices"][0]
            text = choice_text(choice)
            assert isinstance(text, str)
        except (ValueError, KeyError, IndexError, TypeError, AssertionError, RecursionError):
            raise CandidateError("candidate_error", "not an answer with choices") from None
        return text, time.perf_counter() - started

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self.cfg.max_response_bytes
        chunks, size = [], 0
        while chunk := await resp.content.readany():
            size += len(chunk)
            if size > limit:
                raise CandidateError("candidate_error", f"answer larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session._loop is not loop:
            connector = aiohttp.TCPConnector(limit=self.pool_size, ttl_dns_cache=300)
            timeout = aiohttp.ClientTimeout(total=None, connect=self.cfg.connect_timeout_s)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
