"""What the proxy holds open: in-flight requests and relayed streams.

Two jobs: the shutdown drain (stop accepting, let in-flight requests finish until the deadline, then end the
streams still running with a last error event and a clean end of the body) and the slow-reader sweep (a
streaming client that has accepted no bytes for `write_timeout_s` is disconnected, which stops its upstream
generation; one that reads slowly but reads is left alone). The sweep costs nothing per write: once a second
it looks at each stream's socket: writes paused (the client's buffers are full) and a send buffer that has
not shrunk since the last look mean no progress.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios
import time
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

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
    stalled_since: float | None = None  # writes paused and nothing leaving since then
    queued: tuple[int, int] = (0, 0)  # (aiohttp's write buffer, the kernel's send queue) at the last look


class Connections:
    """In-flight request count and the streams being relayed (see the module docstring)."""

    def __init__(self, write_timeout_s: float, stream_buffer_bytes: int = 64 * 1024,
                 sweep_interval_s: float = 1.0) -> None:
        self.write_timeout_s = write_timeout_s
        self.stream_buffer_bytes = stream_buffer_bytes
        self.sweep_interval_s = min(sweep_interval_s, write_timeout_s / 2)
        self.inflight = 0
        self.draining = False
        self._ending = False
        self._streams: dict[asyncio.Task[Any], _Stream] = {}
        self._sweeper: asyncio.Task[None] | None = None
        #: connections whose send buffer is limited already (a keep-alive connection carries many streams)
        self._limited: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

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
        if self.stream_buffer_bytes and request.transport not in self._limited:  # once per connection
            _limit_send_buffer(request, self.stream_buffer_bytes)
            if request.transport is not None:
                self._limited.add(request.transport)
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
                transport = stream.request.transport
                if transport is None or not stream.request.protocol.writing_paused:
                    stream.stalled_since = None  # the client keeps up
                    continue
                queued = (transport.get_write_buffer_size(), _kernel_send_queue(transport))
                progress = queued[0] < stream.queued[0] or queued[1] < stream.queued[1]
                stream.queued = queued
                if stream.stalled_since is None or progress:  # a slow reader that still reads is left alone
                    stream.stalled_since = now
                elif now - stream.stalled_since >= self.write_timeout_s:
                    SLOW_CLIENT_DISCONNECTS.inc()
                    log.warning("slow_client_disconnected", stalled_s=round(now - stream.stalled_since, 1))
                    _reset(transport)  # connection_lost cancels the handler, which closes the upstream


def _limit_send_buffer(request: web.Request, size: int) -> None:
    """SO_SNDBUF on a stream's socket: the kernel would otherwise grow it to megabytes (tcp_wmem), and the
    relay, whose writes only wait once the kernel refuses bytes, would read that far ahead of a slow client
    (and, moderating, keep the text). An SSE stream needs little: `size` / RTT is its top speed."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        except OSError:
            pass


def _reset(transport: asyncio.BaseTransport) -> None:
    """Drop the connection at once (RST): queued bytes for a client that stopped reading are discarded, not
    kept by the kernel retrying to deliver them."""
    sock = transport.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (OSError, AttributeError):
        pass
    transport.abort()  # type: ignore[attr-defined]  # every transport aiohttp serves on can abort


def _kernel_send_queue(transport: asyncio.BaseTransport) -> int:
    """Bytes in the socket's send queue, not yet acknowledged by the client (Linux SIOCOUTQ); 0 if unknown."""
    sock = transport.get_extra_info("socket")
    try:
        queued: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        return queued
    except (OSError, AttributeError, ValueError):
        return 0


CONNECTIONS = web.AppKey("guardstream_connections", Connections)
