"""Verdict cache: key derivation, coalescing of identical evaluations in flight, the in-memory LRU.

Backends share one coalescing mechanism (`CoalescingCache`): the first caller for a key becomes the
leader and resolves it (lookup, else compute and store); callers arriving meanwhile wait on the leader's
future and get a copy marked `cached=True`. The Redis backend lives in `proxy/cache_redis.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from evaluators.base import EvalItem, Evaluator, Verdict
from proxy.config import CacheConfig
from proxy.metrics import CACHE_LOOKUPS, child

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


class CoalescingCache:
    """Base: one leader per key resolves it, concurrent callers for the same key wait for its result.

    Subclasses implement `_resolve` (lookup, else compute and store) and may offer a synchronous
    `_fast_lookup` that answers hits without touching the in-flight table.
    """

    backend = "base"

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[Verdict]] = {}

    def _fast_lookup(self, key: str) -> Verdict | None:
        return None

    async def _resolve(self, key: str, compute: Compute, ttl_s: int) -> Verdict:  # pragma: no cover - abstract
        raise NotImplementedError

    async def get_or_compute(self, key: str, compute: Compute, ttl_s: int) -> Verdict:
        while True:
            hit = self._fast_lookup(key)
            if hit is not None:
                child(CACHE_LOOKUPS, self.backend, "hit").inc()
                return _as_cached(hit)
            pending = self._inflight.get(key)
            if pending is None:
                return await self._lead(key, compute, ttl_s)
            child(CACHE_LOOKUPS, self.backend, "coalesced").inc()
            try:
                return _as_cached(await asyncio.shield(pending))
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and not (task and task.cancelling()):
                    continue  # the leader was cancelled (client went away), not us: try again
                raise

    async def _lead(self, key: str, compute: Compute, ttl_s: int) -> Verdict:
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            verdict = await self._resolve(key, compute, ttl_s)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it
            raise
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]
        future.set_result(verdict)
        return verdict

    def inflight(self) -> int:
        return len(self._inflight)


class MemoryVerdictCache(CoalescingCache):
    """An in-process LRU with per-entry expiry, coalescing identical evaluations in flight."""

    backend = "memory"

    def __init__(self, max_entries: int = 100_000) -> None:
        super().__init__()
        self._entries: OrderedDict[str, tuple[float, Verdict]] = OrderedDict()
        self._max = max_entries

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()

    def state(self) -> dict[str, Any]:
        return {"backend": self.backend, "ok": True, "entries": len(self._entries), "inflight": self.inflight()}

    def _fast_lookup(self, key: str) -> Verdict | None:
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

    async def _resolve(self, key: str, compute: Compute, ttl_s: int) -> Verdict:
        child(CACHE_LOOKUPS, self.backend, "miss").inc()
        verdict = await compute()
        self._store(key, verdict, ttl_s)
        return verdict


def _as_cached(verdict: Verdict) -> Verdict:
    """A copy marked cached: its lists are copied, its findings (frozen) shared."""
    return dataclasses.replace(verdict, cached=True, categories=list(verdict.categories),
                               findings=list(verdict.findings))


def build_cache(cfg: CacheConfig) -> VerdictCache:
    """The configured cache: Redis when a URL is set, else the in-memory LRU."""
    if cfg.redis_url:
        from proxy.cache_redis import RedisVerdictCache

        return RedisVerdictCache.from_config(cfg)
    return MemoryVerdictCache(cfg.max_entries)
