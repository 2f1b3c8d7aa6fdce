"""MicroBatcher: concurrent submits become batches; failures, cancellation and new loops are handled."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from evaluators.batching import BatcherClosed, MicroBatcher


async def test_concurrent_submits_share_batches() -> None:
    threads: set[str] = set()

    def double(xs: list[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        time.sleep(0.01)
        return [2 * x for x in xs]

    b: MicroBatcher[int, int] = MicroBatcher(double, max_batch_size=8, max_wait_ms=20)
    results = await asyncio.gather(*(b.submit(i) for i in range(20)))
    assert results == [2 * i for i in range(20)]
    assert sum(b.batch_sizes) == 20 and max(b.batch_sizes) == 8 and len(b.batch_sizes) <= 4
    assert threading.current_thread().name not in threads  # the model ran off the event loop
    await b.aclose()
    with pytest.raises(BatcherClosed):
        await b.submit(1)


async def test_lone_item_waits_at_most_max_wait() -> None:
    b: MicroBatcher[int, int] = MicroBatcher(lambda xs: xs, max_batch_size=64, max_wait_ms=30)
    start = time.perf_counter()
    assert await b.submit(7) == 7
    assert time.perf_counter() - start < 0.5
    assert b.batch_sizes == [1]
    await b.aclose()


async def test_event_loop_stays_responsive_during_a_batch() -> None:
    b: MicroBatcher[int, int] = MicroBatcher(lambda xs: (time.sleep(0.2), xs)[1], max_batch_size=4, max_wait_ms=0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    await b.submit(1)
    t.cancel()
    assert ticks >= 5
    await b.aclose()


async def test_failure_reaches_every_waiter_and_batcher_recovers() -> None:
    calls = 0

    def flaky(xs: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model exploded")
        return xs

    b: MicroBatcher[int, int] = MicroBatcher(flaky, max_batch_size=4, max_wait_ms=10)
    results = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await b.submit(3) == 3
    await b.aclose()


async def test_cancelled_waiters_are_dropped() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def fn(xs: list[int]) -> list[int]:
        seen.append(xs)
        gate.wait(2)
        return xs

    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch_size=2, max_wait_ms=0)
    first = asyncio.create_task(b.submit(0))  # occupies the worker
    await asyncio.sleep(0.05)
    doomed = asyncio.create_task(b.submit(1))
    kept = asyncio.create_task(b.submit(2))
    await asyncio.sleep(0.01)
    doomed.cancel()
    gate.set()
    assert await first == 0 and await kept == 2
    assert [1] not in seen and all(1 not in batch for batch in seen)
    await b.aclose()


def test_batcher_survives_a_new_event_loop() -> None:
    b: MicroBatcher[int, int] = MicroBatcher(lambda xs: xs, max_batch_size=4, max_wait_ms=1)
    assert asyncio.run(b.submit(1)) == 1
    assert asyncio.run(b.submit(2)) == 2  # a second loop gets its own collector
