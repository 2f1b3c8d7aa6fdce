"""Redis verdict cache: shared by all proxy instances, never in the way of a request.

- value: the verdict JSON under `{key_prefix}{cache_key}`, TTL per call; error verdicts are never stored.
- coalescing: in-process through `CoalescingCache`; across instances through a short lock
  (`SET {key}:lock token NX PX lock_ttl_ms`): its holder computes, the others poll for the value and
  compute themselves if the lock goes away without one, so nobody waits longer than the lock TTL.
  A release Redis did not take (a timeout, the circuit open) is retried in the background until the lock
  would have expired anyway, and this instance answers later lookups of that key from the verdict it
  kept: a lock left behind must not make every lookup of its key wait out the TTL.
- failures: every Redis call is bounded by `op_timeout_ms`; a failed call makes that request compute
  without the cache. After a few consecutive failures the circuit opens: requests skip Redis altogether
  (counted in CACHE_ERRORS) while a background probe pings it and closes the circuit when it answers.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from evaluators.base import Verdict
from proxy.breaker import CircuitBreaker
from proxy.cache import CoalescingCache, Compute
from proxy.config import CacheConfig
from proxy.metrics import CACHE_ERRORS, CACHE_LOOKUPS, CACHE_UP
from proxy.urls import display_url

log = structlog.get_logger("guardstream.cache")

_FAILED = object()  # a Redis call failed or timed out: go on without the cache

#: store the value (when given) and release the lock only if we still hold it: one round trip
_STORE_AND_UNLOCK = """
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3])) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""


@dataclass(slots=True)
class _Unreleased:
    """A lock whose release (store the value, delete the lock) Redis did not take."""

    rkey: str
    token: str
    value: str  # the encoded verdict, "" for an error (not stored)
    ttl_s: int
    expires: float  # monotonic time when the lock expires by itself


#: most unreleased locks remembered (each is small; past this they simply expire)
_MAX_UNRELEASED = 10_000


class RedisVerdictCache(CoalescingCache):
    """Verdicts in Redis with cross-instance coalescing, tight timeouts and a circuit breaker."""

    backend = "redis"

    def __init__(self, url: str, *, key_prefix: str = "", op_timeout_ms: int = 50, lock_ttl_ms: int = 5000,
                 ssl_ca_certs: str | None = None, failure_threshold: int = 3, probe_interval_s: float = 0.25,
                 max_probe_interval_s: float = 2.0) -> None:
        super().__init__()
        self.url = url
        self.prefix = key_prefix
        self._op_s = op_timeout_ms / 1000
        self._lock_ttl_ms = lock_ttl_ms
        kwargs: dict[str, Any] = {
            "socket_timeout": self._op_s,
            "socket_connect_timeout": max(self._op_s, 0.1),
            "retry": Retry(NoBackoff(), 0),  # our own timeout and breaker decide, never a hidden retry
            "health_check_interval": 0,
        }
        if ssl_ca_certs and url.startswith("rediss://"):
            kwargs["ssl_ca_certs"] = ssl_ca_certs
        self._client = aioredis.Redis.from_url(url, **kwargs)
        self._store_unlock = self._client.register_script(_STORE_AND_UNLOCK)
        self.breaker = CircuitBreaker("redis", self._ping, threshold=failure_threshold,
                                      probe_interval_s=probe_interval_s, max_probe_interval_s=max_probe_interval_s,
                                      on_change=lambda up: CACHE_UP.labels(self.backend).set(int(up)))
        self._errors = 0
        self._background: set[asyncio.Task[None]] = set()
        self._unreleased: dict[str, _Unreleased] = {}  # lock key -> its release, to retry
        self._releaser: asyncio.Task[None] | None = None
        self._retry_interval_s = probe_interval_s

    @classmethod
    def from_config(cls, cfg: CacheConfig) -> RedisVerdictCache:
        assert cfg.redis_url
        return cls(cfg.redis_url, key_prefix=cfg.key_prefix, op_timeout_ms=cfg.op_timeout_ms,
                   lock_ttl_ms=cfg.lock_ttl_ms, ssl_ca_certs=cfg.ssl_ca_certs)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Ping once; an unreachable Redis is not an error (the circuit opens and probes)."""
        if await self._ping():
            CACHE_UP.labels(self.backend).set(1)
        else:
            CACHE_UP.labels(self.backend).set(0)
            log.warning("redis_unreachable_at_start", url=display_url(self.url))
            self.breaker.trip()

    async def close(self) -> None:
        if self._releaser is not None:
            self._releaser.cancel()
            await asyncio.gather(self._releaser, return_exceptions=True)
        await self.breaker.aclose()
        try:
            await self._client.aclose()
        except (RedisError, OSError):
            pass

    def state(self) -> dict[str, Any]:
        return {"backend": self.backend, "ok": not self.breaker.is_open,
                "circuit": "open" if self.breaker.is_open else "closed", "url": display_url(self.url),
                "key_prefix": self.prefix, "consecutive_failures": self.breaker.failures, "errors": self._errors,
                "inflight": self.inflight()}

    # -- Redis calls -------------------------------------------------------------------------------
    async def _ping(self) -> bool:
        try:
            async with asyncio.timeout(max(self._op_s, 0.1)):
                return bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def _call(self, op: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One bounded Redis call; `_FAILED` (counted, fed to the breaker) instead of raising."""
        try:
            async with asyncio.timeout(self._op_s):
                result = await fn(*args, **kwargs)
        except (TimeoutError, RedisError, OSError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__ else "error"
            self._errors += 1
            CACHE_ERRORS.labels(self.backend, kind).inc()
            self.breaker.failure()
            log.debug("redis_call_failed", op=op, kind=kind, error=type(exc).__name__)
            return _FAILED
        self.breaker.success()
        return result

    # -- resolve one key (leader only) ---------------------------------------------------------------
    async def _resolve(self, key: str, compute: Compute, ttl_s: int) -> Verdict:
        if ttl_s <= 0:
            CACHE_LOOKUPS.labels(self.backend, "miss").inc()
            return await compute()
        if self.breaker.is_open:
            CACHE_LOOKUPS.labels(self.backend, "bypass").inc()
            CACHE_ERRORS.labels(self.backend, "circuit_open").inc()
            return await compute()
        rkey = self.prefix + key
        raw = await self._call("get", self._client.get, rkey)
        if raw is _FAILED:
            CACHE_LOOKUPS.labels(self.backend, "bypass").inc()
            return await compute()
        hit = self._decode(raw)
        if hit is not None:
            CACHE_LOOKUPS.labels(self.backend, "hit").inc()
            hit.cached = True  # a fresh object: no copy needed
            return hit
        CACHE_LOOKUPS.labels(self.backend, "miss").inc()
        lock_key = rkey + ":lock"
        token = uuid.uuid4().hex
        got = await self._call("lock", self._client.set, lock_key, token, nx=True, px=self._lock_ttl_ms)
        if got is _FAILED:
            return await compute()
        if got:
            return await self._compute_holding_lock(rkey, lock_key, token, compute, ttl_s)
        own = self._unreleased.get(lock_key)
        if own is not None:  # the lock is ours, left by a release Redis did not take: its verdict is here
            kept = self._decode(own.value.encode()) if own.value else None
            if kept is not None:
                CACHE_LOOKUPS.labels(self.backend, "coalesced_local").inc()
                kept.cached = True
                return kept
            return await compute()
        waited = await self._wait_for_holder(rkey, lock_key)
        if waited is not None:
            CACHE_LOOKUPS.labels(self.backend, "coalesced_remote").inc()
            waited.cached = True
            return waited
        verdict = await compute()
        if not verdict.error and not self.breaker.is_open:
            await self._call("set", self._client.set, rkey, self._encode(verdict), ex=ttl_s)
        return verdict

    async def _compute_holding_lock(self, rkey: str, lock_key: str, token: str, compute: Compute,
                                    ttl_s: int) -> Verdict:
        try:
            verdict = await compute()
        except BaseException:
            # release in the background: this task may be cancelled, the lock must not linger
            task = asyncio.get_running_loop().create_task(self._release(rkey, lock_key, token, ""))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise
        value = "" if verdict.error else self._encode(verdict)
        await self._release(rkey, lock_key, token, value, ttl_s)
        return verdict

    async def _release(self, rkey: str, lock_key: str, token: str, value: str, ttl_s: int = 0) -> None:
        if not self.breaker.is_open and await self._store_and_unlock(rkey, lock_key, token, value, ttl_s):
            return
        if len(self._unreleased) < _MAX_UNRELEASED:
            expires = time.monotonic() + self._lock_ttl_ms / 1000
            self._unreleased[lock_key] = _Unreleased(rkey, token, value, ttl_s, expires)
            if self._releaser is None or self._releaser.done():
                self._releaser = asyncio.get_running_loop().create_task(self._retry_releases())

    async def _store_and_unlock(self, rkey: str, lock_key: str, token: str, value: str, ttl_s: int) -> bool:
        done = await self._call("store", self._store_unlock, keys=[rkey, lock_key], args=[token, value, max(ttl_s, 1)])
        return done is not _FAILED

    async def _retry_releases(self) -> None:
        """Background: release the locks Redis did not take once it answers, until each would have expired."""
        while self._unreleased:
            await asyncio.sleep(self._retry_interval_s)
            for lock_key, job in list(self._unreleased.items()):
                if job.expires <= time.monotonic():
                    del self._unreleased[lock_key]  # gone by itself
                elif self.breaker.is_open or not await self._store_and_unlock(job.rkey, lock_key, job.token,
                                                                             job.value, job.ttl_s):
                    break  # Redis is still away: next round
                else:
                    self._unreleased.pop(lock_key, None)

    async def _wait_for_holder(self, rkey: str, lock_key: str) -> Verdict | None:
        """Another instance holds the lock: poll for its verdict until it lands, the lock goes, or the TTL ends."""
        deadline = time.monotonic() + self._lock_ttl_ms / 1000
        delay = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 0.05)
            got = await self._call("poll", self._client.mget, rkey, lock_key)
            if got is _FAILED:
                return None
            value, lock = got
            verdict = self._decode(value)
            if verdict is not None:
                return verdict
            if lock is None:
                return None  # the holder gave up (error verdict, crash): compute ourselves
        return None

    # -- values --------------------------------------------------------------------------------------
    @staticmethod
    def _encode(verdict: Verdict) -> str:
        data = verdict.to_dict()
        data["cached"] = False
        return json.dumps(data, separators=(",", ":"))

    def _decode(self, raw: bytes | None) -> Verdict | None:
        if raw is None:
            return None
        try:
            return Verdict.from_dict(json.loads(raw))
        except (ValueError, TypeError, KeyError):
            CACHE_ERRORS.labels(self.backend, "decode").inc()
            return None
