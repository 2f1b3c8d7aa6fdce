"""The micro-batcher: concurrent callers share batches, results stay in order, failures reach every caller."""

from __future__ import annotations

import asyncio
import threading

import pytest

from evaluators.batching import MicroBatcher


async def test_concurrent_submits_are_batched_and_ordered() -> None:
    threads: set[str] = set()

    def double(items: list[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        return [2 * i for i in items]

    batcher = MicroBatcher(double, max_batch_size=8, max_wait_ms=20, name="t")
    results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    assert results == [2 * i for i in range(20)]
    assert sum(batcher.batch_sizes) == 20 and max(batcher.batch_sizes) == 8 and len(batcher.batch_sizes) <= 4
    assert threads and all(name.startswith("t") for name in threads)  # ran in the worker thread
    assert await batcher.submit_many([5, 6]) == [10, 12]
    await batcher.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.submit(1)


async def test_lone_item_waits_at_most_max_wait() -> None:
    batcher = MicroBatcher(lambda xs: xs, max_batch_size=32, max_wait_ms=5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await batcher.submit("x") == "x"
    assert loop.time() - t0 < 1.0
    assert batcher.batch_sizes == [1]
    await batcher.aclose()


async def test_failure_reaches_every_caller_and_batcher_recovers() -> None:
    calls = {"n": 0}

    def flaky(items: list[int]) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("boom")
        return items

    batcher = MicroBatcher(flaky, max_batch_size=4, max_wait_ms=10)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert await batcher.submit(7) == 7
    await batcher.aclose()


async def test_wrong_result_count_is_an_error() -> None:
    batcher = MicroBatcher(lambda xs: xs[:-1], max_batch_size=4, max_wait_ms=1)
    with pytest.raises(RuntimeError, match="returned 0 results for 1"):
        await batcher.submit(1)
    await batcher.aclose()
