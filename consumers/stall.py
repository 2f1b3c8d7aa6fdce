"""A time bound on kafka-python calls that the client does not bound itself.

kafka-python 3.0 runs its network on an IO thread; a blocking call (`poll`, `commit`) hands a coroutine to
that thread and waits on a `threading.Event` with no timeout of its own (upstream: dpkp/kafka-python#3121,
bounded on its master branch by #3124, not in a 3.0.x release). When the coroutine's completion is lost,
`poll(timeout_ms=1000)` never returns and the consumer sits alive and idle forever (seen once in CI, under
load). `StallGuard` watches each guarded call from a daemon thread; a call still running `limit_s` after it
began has the client's pending waits failed with `KafkaTimeoutError`, so it returns like a timed-out call and
the consumer goes on. A released poll can be one that kafka-python had already taken records from (it moves
its positions as it takes them, then sends the next fetches and waits on the IO thread): those records never
reach the caller, and the next batch's offsets would be committed past them. So a released poll that returns
nothing puts each partition back where it stood before the poll, and those records are read again.
Consumers give up (`ConsumerStalled`) after `max_stalls` stalls in a row: their run loop ends and the command
exits non-zero for its supervisor to restart it (positions live in the store, so a restart neither loses nor
double-counts anything).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

# defaults of `consumers.kafka.stall_limit_s` / `max_stalls` (the consumers' config section)
from proxy.schemas.consumers import DEFAULT_MAX_STALLS, DEFAULT_STALL_LIMIT_S

log = structlog.get_logger("guardstream.consumers")

T = TypeVar("T")



class ConsumerStalled(RuntimeError):
    """The Kafka client stopped answering: stalls in a row reached the limit."""


class StallGuard:
    """Fails a guarded kafka-python call's pending waits when it runs past `limit_s` (see the module docstring)."""

    def __init__(self, name: str, limit_s: float = DEFAULT_STALL_LIMIT_S, max_stalls: int = DEFAULT_MAX_STALLS) -> None:
        self.name = name
        self.limit_s = limit_s
        self.max_stalls = max_stalls
        self.stalls = 0  # in total, for the consumer's state page
        self.stalls_in_a_row = 0
        self._lock = threading.Lock()
        self._armed: tuple[float, Any] | None = None  # (started, the client's network loop)
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def call(self, client: Any, fn: Callable[[], T]) -> T:
        """`fn()`, a blocking call on the kafka-python `client`; raises KafkaTimeoutError when it stalled."""
        self._ensure_watching()
        with self._lock:
            self._armed = (time.monotonic(), getattr(client, "_net", None))
        try:
            return fn()
        finally:
            with self._lock:
                self._armed = None

    def poll(self, client: Any, **kwargs: Any) -> Any:
        """`client.poll(**kwargs)`; a stalled poll returns {}, and `max_stalls` in a row raise ConsumerStalled."""
        from kafka.errors import KafkaTimeoutError

        before = self.stalls
        positions = _positions(client)
        try:
            batch = self.call(client, lambda: client.poll(**kwargs))
        except KafkaTimeoutError:
            batch = {}
        if self.stalls == before:
            self.stalls_in_a_row = 0
            return batch
        self.stalls_in_a_row += 1  # released (the client may have swallowed the timeout and returned nothing)
        if not batch:
            _rewind(client, positions)
        if self.stalls_in_a_row >= self.max_stalls:
            raise ConsumerStalled(f"{self.name}: {self.stalls_in_a_row} Kafka polls in a row stalled for "
                                  f"{self.limit_s:g}s; exiting for a restart")
        return batch

    def close(self) -> None:
        self._closed.set()

    def _ensure_watching(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name=f"{self.name}-stall-guard", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        tick = min(1.0, self.limit_s / 4)
        while not self._closed.wait(tick):
            with self._lock:
                armed = self._armed
                if armed is None or time.monotonic() - armed[0] < self.limit_s:
                    continue
                self._armed = (time.monotonic(), armed[1])  # one release per limit_s, not one per tick
            self.stalls += 1
            self._release(armed[1], time.monotonic() - armed[0])

    def _release(self, net: Any, elapsed: float) -> None:
        from kafka.errors import KafkaTimeoutError

        fail = getattr(net, "_fail_pending_waiters", None)
        log.warning("kafka call stalled; releasing it", consumer=self.name, stalled_s=round(elapsed, 1),
                    releasable=fail is not None)
        if fail is not None:
            fail(KafkaTimeoutError(f"no answer from the Kafka client's IO thread for {elapsed:.0f}s"))


def _positions(client: Any) -> dict[Any, int]:
    """The client's fetch position per assigned partition that has one (kafka-python's own state: no I/O)."""
    subscription = getattr(client, "_subscription", None)
    if subscription is None:
        return {}
    return {tp: position.offset for tp, position in subscription.all_consumed_offsets().items()}


def _rewind(client: Any, positions: dict[Any, int]) -> None:
    """Seek each still-assigned partition back to `positions`: records a released poll took from the client's
    buffers and then dropped are fetched again (every record below those positions was handed out before)."""
    if not positions:
        return
    assigned = client.assignment()
    for tp, offset in positions.items():
        if tp in assigned:
            client.seek(tp, offset)
