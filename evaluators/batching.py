"""Micro-batching for in-process models: many concurrent callers, one model call per batch.

Callers `await batcher.submit(item)`; a collector task takes the first waiting
item, gathers more for up to `max_wait_ms` (or until `max_batch_size`), and runs
the synchronous batch function in a single worker thread so the event loop stays
free and the model sees one batch at a time. While a batch runs, new items queue
up and form the next batch, so batches grow with load on their own.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, Iterable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Group `submit` calls into batches for `fn(list[T]) -> list[R]` (one result per item, in order)."""

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_batch_size: int = 32, max_wait_ms: float = 2.0,
                 *, name: str = "microbatch") -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self._name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: sizes of the batches run so far (bounded; for tests and metrics)
        self.batch_sizes: list[int] = []

    async def submit(self, item: T) -> R:
        """Queue one item and wait for its result (an exception from `fn` is raised here)."""
        if self._closed:
            raise RuntimeError(f"{self._name}: batcher is closed")
        queue = self._ensure_running()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await queue.put((item, future))
        return await future

    async def submit_many(self, items: Iterable[T]) -> list[R]:
        """Submit several items at once; results come back in order."""
        return list(await asyncio.gather(*(self.submit(i) for i in items)))

    def _ensure_running(self) -> asyncio.Queue[tuple[T, asyncio.Future[R]]]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._collect(self._queue), name=f"{self._name}-collector")
        assert self._queue is not None
        return self._queue

    async def _collect(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [(item, fut) for item, fut in batch if not fut.done()]
            if not live:
                continue
            await self._run(loop, live)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        self.batch_sizes.append(len(items))
        del self.batch_sizes[:-1000]
        try:
            results = await loop.run_in_executor(self._executor, self.fn, items)
            if len(results) != len(items):
                raise RuntimeError(f"{self._name}: batch function returned {len(results)} results for {len(items)} items")
        except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(batch, results):
            if not fut.done():
                fut.set_result(result)

    async def aclose(self) -> None:
        """Stop collecting and release the worker thread. Pending callers get CancelledError."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            try:
                task.cancel()
            except RuntimeError:  # its event loop is already closed
                pass
            else:
                if task.get_loop() is asyncio.get_running_loop():
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
        if self._queue is not None:
            while not self._queue.empty():
                _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
