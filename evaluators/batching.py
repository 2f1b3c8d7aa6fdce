"""Micro-batching for in-process models: many concurrent callers, one forward pass.

Callers `await batcher.submit(x)`; a collector task takes the first waiting item,
waits at most `max_wait_ms` for more (or until `max_batch_size`), and runs the
synchronous batch function in a worker thread so the event loop never blocks.
While a batch runs, new items queue up and form the next batch, so under load
batches fill without waiting. Cancelled callers are dropped before their batch runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(RuntimeError):
    """submit() after aclose()."""


class MicroBatcher(Generic[T, R]):
    """Group concurrent `submit` calls into calls of `fn(list[T]) -> list[R]` (same length, same order)."""

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], *, max_batch_size: int = 16, max_wait_ms: float = 2.0,
                 executor: Executor | None = None, name: str = "batcher") -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(max_wait_ms, 0.0) / 1000.0
        self.name = name
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R], float]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: sizes of the batches run so far (for tests and benchmarks)
        self.batch_sizes: list[int] = []

    async def submit(self, item: T) -> R:
        if self._closed:
            raise BatcherClosed(f"{self.name} is closed")
        queue = self._ensure_started()
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        queue.put_nowait((item, fut, time.monotonic()))
        return await fut

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        return list(await asyncio.gather(*(self.submit(x) for x in items)))

    def _ensure_started(self) -> asyncio.Queue[tuple[T, asyncio.Future[R], float]]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            # first use, or a new event loop (tests, a restarted server): start a collector in this loop
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._collect(self._queue), name=f"{self.name}-collector")
        assert self._queue is not None
        return self._queue

    async def _collect(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R], float]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = batch[0][2] + self.max_wait_s
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except TimeoutError:
                    break
            live = [(x, f) for x, f, _ in batch if not f.done()]
            if not live:
                continue
            self.batch_sizes.append(len(live))
            try:
                results = await loop.run_in_executor(self._executor, self.fn, [x for x, _ in live])
            except asyncio.CancelledError:
                for _, f in live:
                    if not f.done():
                        f.set_exception(BatcherClosed(f"{self.name} closed"))
                raise
            except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            if len(results) != len(live):
                wrong = RuntimeError(f"{self.name}: batch function returned {len(results)} results "
                                     f"for {len(live)} items")
                for _, f in live:
                    if not f.done():
                        f.set_exception(wrong)
                continue
            for (_, f), r in zip(live, results):
                if not f.done():
                    f.set_result(r)

    async def aclose(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        same_loop = self._loop is asyncio.get_running_loop()
        if task is not None and not task.done() and same_loop:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._queue is not None and same_loop:
            while not self._queue.empty():
                _, fut, _ = self._queue.get_nowait()
                if not fut.done():
                    fut.set_exception(BatcherClosed(f"{self.name} closed"))
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
