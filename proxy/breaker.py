"""A circuit breaker for an optional backend: open after consecutive failures, probe in the background, close by itself.

While open, callers skip the backend entirely (no timeouts paid on the request path); a background
task calls `probe()` with exponential backoff and closes the circuit on the first success.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("guardstream.breaker")


class CircuitBreaker:
    """Consecutive-failure breaker with a background probe loop (asyncio, one event loop)."""

    def __init__(self, name: str, probe: Callable[[], Awaitable[bool]], *, threshold: int = 3,
                 probe_interval_s: float = 0.25, max_probe_interval_s: float = 5.0,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.name = name
        self._probe = probe
        self._threshold = max(1, threshold)
        self._interval = probe_interval_s
        self._max_interval = max_probe_interval_s
        self._on_change = on_change
        self._failures = 0
        self._open = False
        self._opened_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def failures(self) -> int:
        return self._failures

    def success(self) -> None:
        self._failures = 0

    def failure(self) -> None:
        """Count one failed call; opens the circuit at the threshold."""
        self._failures += 1
        if not self._open and self._failures >= self._threshold:
            self.trip()

    def trip(self) -> None:
        """Open now (e.g. the backend was unreachable at start-up) and start probing."""
        if self._open or self._closing:
            return
        self._open = True
        self._opened_at = time.monotonic()
        log.warning("circuit_open", backend=self.name, failures=self._failures)
        if self._on_change:
            self._on_change(False)
        self._task = asyncio.get_running_loop().create_task(self._probe_loop(), name=f"breaker-probe-{self.name}")

    def _close(self) -> None:
        self._open = False
        self._failures = 0
        log.info("circuit_closed", backend=self.name, open_s=round(time.monotonic() - self._opened_at, 3))
        if self._on_change:
            self._on_change(True)

    async def _probe_loop(self) -> None:
        delay = self._interval
        while self._open and not self._closing:
            await asyncio.sleep(delay)
            try:
                ok = await self._probe()
            except Exception:  # noqa: BLE001 - a probe failure is just "still down"
                ok = False
            if ok:
                self._close()
                return
            delay = min(delay * 2, self._max_interval)

    async def aclose(self) -> None:
        self._closing = True
        if self._task and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
