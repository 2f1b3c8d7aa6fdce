"""What the proxy holds open: in-flight requests and relayed streams.

Two jobs: the shutdown drain (stop accepting, let in-flight requests finish until the deadline, then end the
streams still running with a last error event and a clean end of the body) and the slow-reader sweep (a
streaming client that has accepted no bytes for `write_timeout_s` is disconnected, which stops its upstream
generation). The sweep costs nothing per write: once a second it looks at each stream's socket, whose
writes aiohttp pauses while the client's buffers are full.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Awaitable

import structlog
from aiohttp import web

from proxy.metrics import SLOW_CLIENT_DISCONNECTS
from proxy.sse import encode_event

log = structlog.get_logger("guardstream")

SHUTDOWN_EVENT = encode_event({"error": {
    "message": "The proxy is shutting down; this stream was ended before the upstream finished.",
    "type": "api_error", "param": None, "code": "server_shutting_down"}})


@dataclass(slots=True)
class _Stream:
    request: web.Request
    paused_since: float | None = None


class Connections:
    """In-flight request count and the streams being relayed (see the module docstring)."""

    def __init__(self, write_timeout_s: float, sweep_interval_s: float = 1.0) -> None:
        self.write_timeout_s = write_timeout_s
        self.sweep_interval_s = min(sweep_interval_s, write_timeout_s / 2)
        self.inflight = 0
        self.draining = False
        self._ending = False
        self._streams: dict[asyncio.Task[Any], _Stream] = {}
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def streams(self) -> int:
        return len(self._streams)

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="slow-reader-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    async def relay(self, request: web.Request, client: web.StreamResponse, run: Awaitable[None]) -> None:
        """Run a stream relay; at the shutdown deadline, end it with SHUTDOWN_EVENT instead of dropping it."""
        task = asyncio.current_task()
        assert task is not None
        self._streams[task] = _Stream(request)
        try:
            await run
        except asyncio.CancelledError:
            if not (self._ending and task.cancelling()):
                raise
            task.uncancel()
            await client.write(SHUTDOWN_EVENT)
        finally:
            self._streams.pop(task, None)

    def end_streams(self) -> int:
        """Shutdown deadline: cancel every running relay (each ends its stream cleanly, see `relay`)."""
        self._ending = True
        for task in list(self._streams):
            task.cancel()
        return len(self._streams)

    async def drain(self, deadline_s: float) -> None:
        """Wait for in-flight requests until the deadline, then end the streams still running."""
        self.draining = True
        deadline = time.monotonic() + deadline_s
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._streams:
            log.warning("streams_ended_at_shutdown_deadline", streams=self.end_streams(), grace_s=deadline_s)
            for _ in range(40):  # they end within a few loop turns
                if not self._streams:
                    break
                await asyncio.sleep(0.05)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            now = time.monotonic()
            for stream in list(self._streams.values()):
                if not stream.request.protocol.writing_paused:
                    stream.paused_since = None
                elif stream.paused_since is None:
                    stream.paused_since = now
                elif now - stream.paused_since >= self.write_timeout_s:
                    transport = stream.request.transport
                    if transport is not None:
                        SLOW_CLIENT_DISCONNECTS.inc()
                        log.warning("slow_client_disconnected", stalled_s=round(now - stream.paused_since, 1))
                        transport.abort()  # connection_lost cancels the handler, which closes the upstream


CONNECTIONS = web.AppKey("guardstream_connections", Connections)
