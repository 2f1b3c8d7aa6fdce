"""Everything a running proxy holds: built from settings at start-up, closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiohttp import web

from evaluators import metrics as evaluator_metrics
from evaluators.base import Evaluator, OptionError
from evaluators.registry import UnknownEvaluatorType
from evaluators.registry import create as create_evaluator
from proxy.audit import AuditSink, build_audit
from proxy.auth import KeyRing
from proxy.cache import VerdictCache, build_cache
from proxy.comparison import Comparisons
from proxy.config import ConfigError, Settings, one_line
from proxy.guard import Guard
from proxy.metrics import REGISTRY
from proxy.quality import AfterStream, ScoreTally
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
    #: reward score histograms (None: no reward model configured)
    scores: ScoreTally | None
    after_stream: AfterStream
    comparisons: Comparisons

    @classmethod
    def build(cls, settings: Settings) -> ProxyState:
        evaluators = build_evaluators(settings)
        cache = build_cache(settings.cache)
        audit = build_audit(settings.audit)
        upstream = Upstream(settings.upstream)
        guard = Guard(settings, evaluators, cache)
        rewards = {name for name, ev in evaluators.items() if callable(getattr(ev, "rewards", None))}
        scores = ScoreTally(rewards, settings.quality.tally_interval_s) if rewards else None
        recorder = Recorder(audit, settings.audit, upstream.display_url, thresholds=_thresholds(evaluators),
                            log_content=settings.logging.log_content, scores=scores)
        return cls(settings=settings, keyring=KeyRing(settings.client_keys), evaluators=evaluators, cache=cache,
                   audit=audit, guard=guard, recorder=recorder, upstream=upstream,
                   tenants=TenantLimits(*settings.tenant_limits()), scores=scores,
                   after_stream=AfterStream(settings, guard, recorder),
                   comparisons=Comparisons(settings, guard, recorder, scores))

    async def start(self) -> None:
        await self.upstream.start()
        await self.cache.start()
        await self.audit.start()
        self.guard.shadows.start_tally(self.audit.emit)
        if self.scores is not None:
            self.scores.start(self.audit.emit)
        self.comparisons.start_events(self.audit.emit)
        log.info("proxy_started", upstream=self.upstream.display_url, cache=self.cache.state().get("backend"),
                 audit=self.audit.destination, evaluators=sorted(self.evaluators),
                 policies=sorted(self.settings.policies), client_keys=len(self.settings.client_keys))
        if self.keyring.open:
            log.warning("no_client_keys_configured", detail="the proxy accepts every client; configure client_keys")

    async def close(self) -> None:
        await self.guard.shadows.close()  # their events and the last tally go out before the sink closes
        drain_s = self.settings.quality.drain_s
        await self.comparisons.close(drain_s)
        await self.after_stream.close(drain_s)
        if self.scores is not None:
            self.scores.stop()
            self.scores.flush()
        await self.upstream.close()
        for evaluator in self.evaluators.values():
            try:
                await evaluator.aclose()
            except Exception:  # pragma: no cover - best effort at shutdown
                log.warning("evaluator_close_failed", evaluator=evaluator.name)
        await self.cache.close()
        await self.audit.close()


def _thresholds(evaluators: dict[str, Evaluator]) -> dict[str, float]:
    """The score threshold of each evaluator that has one (model evaluators): audited beside its scores."""
    out: dict[str, float] = {}
    for name, evaluator in evaluators.items():
        threshold = getattr(evaluator, "threshold", None)
        if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
            out[name] = float(threshold)
    return out


def build_evaluators(settings: Settings) -> dict[str, Evaluator]:
    """Every configured evaluator, built; a bad type or option is a ConfigError of one line naming the key.
    The evaluators' own metrics are served with the proxy's."""
    evaluator_metrics.expose_on(REGISTRY)
    built: dict[str, Evaluator] = {}
    for name, cfg in settings.evaluators.items():
        try:
            built[name] = create_evaluator(cfg.type, name, cfg.options)
        except OptionError as exc:
            raise ConfigError(f"evaluators.{name}.options.{exc.option}: {one_line(exc.reason)}") from None
        except UnknownEvaluatorType as exc:
            raise ConfigError(f"evaluators.{name}.type: {exc}") from None
        except Exception as exc:  # an engine's own error (a model that does not load, a missing extra)
            raise ConfigError(f"evaluators.{name}: {type(exc).__name__}: {one_line(str(exc))}") from None
    return built


STATE = web.AppKey("guardstream_state", ProxyState)
