"""Deciding what to audit and building v1 events from guard decisions."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from evaluators.base import Verdict, content_text
from proxy.audit import AuditSink
from proxy.auth import Principal
from proxy.config import AuditConfig
from proxy.elision import fit
from proxy.policy import Decision
from proxy.quality import ScoreTally
from proxy.redaction import redact_text
from proxy.schemas.events import (
    AuditEvent,
    EventContent,
    FindingRecord,
    ShadowRecord,
    ShadowVerdictRecord,
    VerdictRecord,
    content_digest,
)
from proxy.shadow import ShadowResult
from proxy.unicode_text import clean_text

log = structlog.get_logger("guardstream.audit")


@dataclass(slots=True)
class RequestContext:
    """What the audit trail needs to know about the request being served."""

    request_id: str
    principal: Principal
    route: str
    model: str | None
    started: float


#: where the middleware puts the request's context for the handlers
CTX = web.RequestKey("guardstream_ctx", RequestContext)


class Recorder:
    """Audits every block, flag and failed-open error, every shadow disagreement, and a sample of allowed
    traffic."""

    def __init__(self, sink: AuditSink, cfg: AuditConfig, upstream: str,
                 thresholds: Mapping[str, float] | None = None, log_content: bool = False,
                 scores: ScoreTally | None = None) -> None:
        self.sink = sink
        self.cfg = cfg
        self.upstream = upstream
        #: evaluator -> the score at which it calls an item unsafe (reviewers see how close a score came)
        self.thresholds = dict(thresholds or {})
        self.log_content = log_content  # `logging.log_content`: decision log lines carry the text
        #: reward scores of answers, per evaluator and model (None: no reward model configured)
        self.scores = scores

    def wants(self, decision: Decision) -> bool:
        if decision.worth_auditing:
            return True
        return self._sampled()

    def _sampled(self) -> bool:
        return self.cfg.sample_allowed > 0 and random.random() < self.cfg.sample_allowed

    def record(self, ctx: RequestContext, decision: Decision, messages: Iterable[Mapping[str, Any]] | None,
               completion: str | Callable[[], str] | None, *, choice_index: int | None = None,
               stream_mode: str | None = None, latency_ms: float = 0.0) -> None:
        """Emit an event for `decision` if it is worth auditing; `completion` may be a function making the text
        (a stream's answer so far is only put together for the events that are emitted).

        With shadow evaluators running (`decision.shadow`), the event waits for them and carries their
        verdicts; a disagreement is audited even where the live decision alone is not worth it."""
        if self.scores is not None and decision.stage == "output":
            self.scores.observe_verdicts(ctx.model, decision.verdicts)
        shadow = decision.shadow
        if shadow is None:
            if self.wants(decision):
                self._emit(ctx, decision, messages, completion, choice_index, stream_mode, latency_ms, None)
            return
        wanted = self.wants(decision)
        if callable(completion):
            completion = completion()  # the text as judged now: a stream's answer grows meanwhile
        messages = list(messages or [])

        def when_judged(task: asyncio.Task[Any]) -> None:
            result = None if task.cancelled() or task.exception() is not None else task.result()
            if wanted or (result is not None and result.disagreement):
                try:
                    self._emit(ctx, decision, messages, completion, choice_index, stream_mode, latency_ms, result)
                except Exception:  # a callback has no caller to tell; the event must not vanish silently
                    log.exception("shadow_event_failed")

        shadow.add_done_callback(when_judged)

    def _emit(self, ctx: RequestContext, decision: Decision, messages: Iterable[Mapping[str, Any]] | None,
              completion: str | Callable[[], str] | None, choice_index: int | None, stream_mode: str | None,
              latency_ms: float, shadow: ShadowResult | None) -> None:
        if callable(completion):
            completion = completion()
        if completion:
            completion = clean_text(completion)
        turns = [{"role": clean_text(str(m.get("role", "user"))),
                  "content": clean_text(content_text(m.get("content")))} for m in messages or []]
        if decision.worth_auditing:
            self._log(ctx, decision, turns, completion)
        event = AuditEvent(
            request_id=ctx.request_id,
            tenant=ctx.principal.tenant,
            policy=ctx.principal.policy,
            stage=decision.stage,
            action=decision.action,
            mode="enforce" if decision.enforced else "shadow",
            route=ctx.route,
            stream_mode=stream_mode,
            choice_index=choice_index,
            categories=list(decision.categories),
            failed_open=list(decision.failed_open),
            verdicts=[self._verdict_record(v) for v in decision.verdicts],
            model=ctx.model,
            upstream=self.upstream,
            content=self._content(turns, completion),
            latency_ms=round(latency_ms or decision.latency_ms, 3),
            shadow=None if shadow is None else ShadowRecord(
                disagreement=shadow.disagreement, categories=shadow.categories,
                verdicts=[ShadowVerdictRecord(**dict(self._verdict_record(s.verdict)), compared_with=s.compared_with,
                                              compared=s.compared, differs=s.differs) for s in shadow.verdicts]),
        )
        self.sink.emit(event.wire())

    def _verdict_record(self, verdict: Verdict) -> VerdictRecord:
        return verdict_record(verdict, self.thresholds.get(verdict.evaluator))

    def _log(self, ctx: RequestContext, decision: Decision, turns: list[dict[str, str]],
             completion: str | None) -> None:
        """One `guard_decision` line per decision that is not `allow`; its text only with `log_content`."""
        fields: dict[str, Any] = {}
        if self.log_content:
            texts: list[str | None] = [t["content"] for t in turns]
            *kept, answer = fit([*texts, completion], self.cfg.max_content_chars)
            fields["content"] = {"messages": [{"role": t["role"], "content": text or ""}
                                              for t, text in zip(turns, kept)], "completion": answer}
        log.info("guard_decision", stage=decision.stage, action=decision.action, enforced=decision.enforced,
                 categories=list(decision.categories), evaluators=decision.evaluators,
                 failed_open=list(decision.failed_open), tenant=ctx.principal.tenant, **fields)

    def _content(self, turns: list[dict[str, str]], completion: str | None) -> EventContent:
        digest = content_digest(turns, completion)
        mode, kept, (answer,) = self.texts(turns, [completion])
        return EventContent.model_validate({"mode": mode, "messages": kept, "completion": answer, "sha256": digest})

    def texts(self, turns: list[dict[str, str]], answers: list[str | None]
              ) -> tuple[str, list[dict[str, str]] | None, list[str | None]]:
        """The conversation and answers as `audit.content` keeps them: (mode, turns, answers), together within
        `max_content_chars` (the longest lose their middle), redacted in `redacted` mode; `hash` mode (or a
        redaction that failed) keeps no text."""
        mode = self.cfg.content
        if mode == "hash":
            return "hash", None, [None] * len(answers)
        texts: list[str | None] = [t["content"] for t in turns]
        kept = fit(texts + list(answers), self.cfg.max_content_chars)
        kept_turns = [{"role": t["role"], "content": text or ""} for t, text in zip(turns, kept)]
        kept_answers = kept[len(turns):]
        if mode == "redacted":
            try:
                kept_turns = [{"role": t["role"], "content": redact_text(t["content"])} for t in kept_turns]
                kept_answers = [redact_text(a) if a else a for a in kept_answers]
            except Exception:  # never store unredacted text because redaction broke: keep the digest only
                log.exception("redaction_failed")
                return "hash", None, [None] * len(answers)
        return mode, kept_turns, kept_answers


def verdict_record(verdict: Verdict, threshold: float | None = None) -> VerdictRecord:
    """A verdict as the audit event carries it (findings: span offsets in the judged text; rule, record and
    field for data quality)."""
    return VerdictRecord(
        evaluator=verdict.evaluator, version=verdict.version, safe=verdict.safe,
        categories=list(verdict.categories), score=verdict.score, latency_ms=round(verdict.latency_ms, 3),
        cached=verdict.cached, error=verdict.error, threshold=threshold,
        findings=[FindingRecord(category=f.category, kind=f.kind, start=f.start, end=f.end) for f in verdict.findings])
