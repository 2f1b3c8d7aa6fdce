"""POST JSON to a model server with bounded retries: the HTTP client model-serving backends share.

One pooled aiohttp session per event loop; 429 and 5xx answers, connection errors and timeouts are retried
`retries` times with exponential backoff and full jitter; any other failure raises `HTTPJSONError` with the
status and a short preview of the body (never the request, never the key).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog

log = structlog.get_logger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class HTTPJSONError(RuntimeError):
    """The server did not give a usable JSON answer (after the retries)."""


class JSONPoster:
    """Posts JSON bodies to URLs of one server and returns the decoded answers."""

    def __init__(self, *, api_key: str | None = None, timeout_s: float = 10.0, connect_timeout_s: float = 2.0,
                 retries: int = 1, backoff_s: float = 0.05, max_backoff_s: float = 1.0, pool_size: int = 16,
                 name: str = "http") -> None:
        self.retries = max(retries, 0)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.pool_size = pool_size
        self.name = name
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None
        #: HTTP requests sent and retries made (for tests and debugging)
        self.stats = {"requests": 0, "retries": 0}

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session.loop is not loop:
            connector = aiohttp.TCPConnector(limit=self.pool_size, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, headers=self._headers,
                                                  trust_env=False)
        return self._session

    async def post(self, url: str, payload: Mapping[str, Any]) -> Any:
        session = self._session_for_loop()
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
                await asyncio.sleep(random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** attempt)))
            self.stats["requests"] += 1
            try:
                async with session.post(url, json=payload) as resp:
                    raw = await resp.read()
                    if resp.status in RETRY_STATUS:
                        last = f"HTTP {resp.status}"
                        log.warning(f"{self.name}.http.retryable", status=resp.status, attempt=attempt)
                        continue
                    if resp.status >= 400:
                        raise HTTPJSONError(f"{url} answered HTTP {resp.status}: {preview(raw)}")
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning(f"{self.name}.http.retryable", error=type(exc).__name__, attempt=attempt)
                continue
            try:
                return json.loads(raw)
            except ValueError:
                raise HTTPJSONError(f"{url} answered with non-JSON: {preview(raw)}") from None
        raise HTTPJSONError(f"{url} failed after {self.retries + 1} attempts (last: {last})")

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def preview(raw: bytes, n: int = 200) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return text if len(text) <= n else text[:n] + "..."
