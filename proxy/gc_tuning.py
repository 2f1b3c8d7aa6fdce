"""Garbage-collector settings for the serving process: most of a request's objects die by reference count.

With CPython's default first-generation threshold (700 net container allocations) a proxy with tens of
requests in flight runs a young collection every few requests, and each one walks every object those requests
still hold (their bodies, aiohttp's request and response objects): ~0.5 ms a collection, 40-80 µs of CPU per
request measured with `python -m bench.hotpath` (a gc callback timing each collection). Requests create no
reference cycles (`tests/test_gc_tuning.py`: allowed, flagged and refused, streamed and not), so collecting
rarely frees nothing later; the threshold bounds how much cyclic garbage from elsewhere (an exception's
traceback, say) waits for a collection. `gc.freeze()` moves what start-up built (modules, config, compiled
rules) out of the collector's reach, so an occasional full collection no longer walks it either.
"""

from __future__ import annotations

import gc

#: first-generation threshold for the serving process (CPython's default: 700)
YOUNG_THRESHOLD = 50_000


def tune_gc(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """After start-up: collect once, freeze the survivors, and collect the young generation rarely."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
