"""Everything a running proxy holds: built from settings at start-up, closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiohttp import web

from evaluators.base import Evaluator
from evaluators.registry import create as create_evaluator
from proxy.audit import AuditSink, build_audit
from proxy.auth import KeyRing
from proxy.cache import VerdictCache, build_cache
from proxy.config import Settings
from proxy.guard import Guard
from proxy.recording import Recorder
from proxy.tenants import TenantLimits
from proxy.upstream import Upstream

log = structlog.get_logger("guardstream")


@dataclass
class ProxyState:
    settings: Settings
    keyring: KeyRing
    evaluators: dict[str, Evaluator]
    cache: VerdictCache
    audit: AuditSink
    guard: Guard
    recorder: Recorder
    upstream: Upstream
    tenants: TenantLimits

    @classmethod
    def build(cls, settings: Settings) -> "ProxyState":
        evaluators = {name: create_evaluator(cfg.type, name, cfg.options) for name, cfg in settings.evaluators.items()}
        cache = build_cache(settings.cache)
        audit = build_audit(settings.audit)
        upstream = Upstream(settings.upstream)
        return cls(settings=settings, keyring=KeyRing(settings.client_keys), evaluators=evaluators, cache=cache,
                   audit=audit, guard=Guard(settings, evaluators, cache),
                   recorder=Recorder(audit, settings.audit, upstream.display_url), upstream=upstream,
                   tenants=TenantLimits(*settings.tenant_limits()))

    async def start(self) -> None:
        await self.upstream.start()
        await self.cache.start()
        await self.audit.start()
        log.info("proxy_started", upstream=self.upstream.display_url, cache=self.cache.state().get("backend"),
                 audit=self.audit.destination, evaluators=sorted(self.evaluators),
                 policies=sorted(self.settings.policies), client_keys=len(self.settings.client_keys))
        if self.keyring.open:
            log.warning("no_client_keys_configured", detail="the proxy accepts every client; configure client_keys")

    async def close(self) -> None:
        await self.upstream.close()
        for evaluator in self.evaluators.values():
            try:
                await evaluator.aclose()
            except Exception:  # pragma: no cover - best effort at shutdown
                log.warning("evaluator_close_failed", evaluator=evaluator.name)
        await self.cache.close()
        await self.audit.close()


STATE = web.AppKey("guardstream_state", ProxyState)
