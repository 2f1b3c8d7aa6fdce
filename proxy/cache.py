"""Verdict cache: key derivation, the in-memory LRU, coalescing of identical evaluations in flight.

(Redis backend: see the Redis/Kafka issue.)
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Protocol

from evaluators.base import EvalItem, Evaluator, Verdict
from proxy.config import CacheConfig
from proxy.metrics import CACHE_LOOKUPS

Compute = Callable[[], Awaitable[Verdict]]


def cache_key(evaluator: Evaluator, policy_hash: str, item: EvalItem) -> str:
    """sha256 over evaluator name+version, policy hash, stage and the text the engine reads."""
    h = hashlib.sha256()
    for part in (evaluator.name, evaluator.version, policy_hash, item.stage, evaluator.cache_context(item)):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return "gs:v1:" + h.hexdigest()


class VerdictCache(Protocol):
    """get-or-compute with coalescing; errors are never cached; backend failures never fail a request."""

    async def get_or_compute(self, key: str, compute: Compute, ttl_s: int) -> Verdict: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def state(self) -> dict[str, Any]: ...


class MemoryVerdictCache:
    """An in-process LRU with per-entry expiry, coalescing identical evaluations in flight."""

    backend = "memory"

    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[str, tuple[float, Verdict]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Verdict]] = {}
        self._max = max_entries

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()

    def state(self) -> dict[str, Any]:
        return {"backend": self.backend, "ok": True, "entries": len(self._entries)}

    def _lookup(self, key: str) -> Verdict | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, verdict = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return verdict

    def _store(self, key: str, verdict: Verdict, ttl_s: int) -> None:
        if ttl_s <= 0 or verdict.error:
            return
        self._entries[key] = (time.monotonic() + ttl_s, verdict)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def get_or_compute(self, key: str, compute: Compute, ttl_s: int) -> Verdict:
        hit = self._lookup(key)
        if hit is not None:
            CACHE_LOOKUPS.labels(self.backend, "hit").inc()
            return _as_cached(hit)
        pending = self._inflight.get(key)
        if pending is not None:
            CACHE_LOOKUPS.labels(self.backend, "coalesced").inc()
            return _as_cached(await asyncio.shield(pending))
        CACHE_LOOKUPS.labels(self.backend, "miss").inc()
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            verdict = await compute()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(verdict)
        self._store(key, verdict, ttl_s)
        return verdict


def _as_cached(verdict: Verdict) -> Verdict:
    copy = Verdict.from_dict(verdict.to_dict())
    copy.cached = True
    return copy


def build_cache(cfg: CacheConfig) -> VerdictCache:
    """The configured cache: in-memory LRU when no Redis URL is set."""
    return MemoryVerdictCache(cfg.max_entries)
