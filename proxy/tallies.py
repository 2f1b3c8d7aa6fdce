"""Counts a proxy sends to the audit topic now and then (shadow agreement, reward score histograms).

A `PeriodicTally` asks its `collect` function for the counts gathered since the last time, every
`interval_s` and once more at `close`, and emits them as one message of its schema with the time span they
cover and the proxy instance that counted them. Nothing is sent for an interval without counts. The metrics
consumer adds the messages up per minute (consumers/metrics.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Emit = Callable[[dict[str, Any]], None]
#: the counts gathered since the last call, as message fields, or None when there are none (and reset them)
Collect = Callable[[], "dict[str, Any] | None"]


class PeriodicTally:
    def __init__(self, schema: str, kind: str, interval_s: float, collect: Collect, *,
                 instance: str | None = None) -> None:
        self.schema = schema
        self.kind = kind
        self.interval_s = interval_s
        self.collect = collect
        self.instance = instance or uuid.uuid4().hex[:12]
        self._since = now()
        self._emit: Emit | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, emit: Emit, periodic: bool = True) -> None:
        """Send through `emit` from now on; every `interval_s` when `periodic` (else only on `flush`)."""
        self._emit = emit
        if periodic and self._task is None:
            self._task = asyncio.create_task(self._every(), name=f"{self.kind}-tally")

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.flush()

    def flush(self) -> dict[str, Any] | None:
        """Emit (and return) the counts gathered since the last flush; nothing when there are none."""
        until = now()
        fields = self.collect() if self._emit is not None else None
        since, self._since = self._since, until
        if fields is None or self._emit is None:
            return None
        message = {"schema": self.schema, "event_id": str(uuid.uuid4()), "ts": iso(until),
                   "request_id": f"{self.kind}-tally-{self.instance}", "instance": self.instance,
                   "since": iso(since), "until": iso(until), **fields}
        self._emit(message)
        return message

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


def now() -> datetime:
    return datetime.now(UTC)


def iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
