"""Audit sink: where v1 events go. Kafka when a bootstrap is configured (`proxy/audit_kafka.py`, spooled
to disk during broker outages), else a JSONL file.

`emit` never blocks the event loop and never raises: events are queued and a
background task (or thread) writes them. `close` flushes everything.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Protocol

import structlog

from proxy.config import AuditConfig
from proxy.metrics import AUDIT_EVENTS

log = structlog.get_logger("guardstream.audit")


class AuditSink(Protocol):
    def emit(self, event: dict[str, Any]) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def state(self) -> dict[str, Any]: ...

    @property
    def destination(self) -> str: ...


class JsonlAuditSink:
    """Appends one JSON event per line to a local file, batched off the event loop."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._pending: list[dict[str, Any]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def destination(self) -> str:
        return f"jsonl:{self.path}"

    def emit(self, event: dict[str, Any]) -> None:
        try:
            self._pending.append(event)
            AUDIT_EVENTS.labels("emitted").inc()
            self._wakeup.set()
        except Exception:  # noqa: BLE001 - auditing must never break a request
            pass

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run(), name="audit-jsonl-writer")

    async def _run(self) -> None:
        while not self._closing:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            lines = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
                            for e in batch)
            await asyncio.to_thread(self._append, lines)
        except (OSError, TypeError, ValueError) as exc:
            log.error("audit_jsonl_write_failed", path=str(self.path), error=str(exc), events=len(batch))
            AUDIT_EVENTS.labels("dropped").inc(len(batch))
            return
        AUDIT_EVENTS.labels("written").inc(len(batch))

    def _append(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(text)

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task:
            await self._task
        await self._flush()

    def state(self) -> dict[str, Any]:
        return {"backend": "jsonl", "ok": True, "path": str(self.path), "pending": len(self._pending)}


def build_audit(cfg: AuditConfig) -> AuditSink:
    """The configured sink: Kafka (with its spool) when a bootstrap is set, else a JSONL file."""
    if cfg.kafka_bootstrap:
        from proxy.audit_kafka import KafkaAuditSink

        return KafkaAuditSink.from_config(cfg)
    return JsonlAuditSink(cfg.jsonl_path)
