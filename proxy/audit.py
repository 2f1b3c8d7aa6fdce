"""Audit sink: where v1 events go. JSONL file by default (Kafka producer: see the Redis/Kafka issue).

`emit` never blocks the event loop and never raises: events are queued and a
background task writes them.
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
        self._pending.append(event)
        AUDIT_EVENTS.labels("emitted").inc()
        self._wakeup.set()

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
        lines = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in batch)
        await asyncio.to_thread(self._append, lines)
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
    """The configured sink: a JSONL file when no Kafka bootstrap is set."""
    return JsonlAuditSink(cfg.jsonl_path)
