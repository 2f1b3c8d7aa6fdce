"""`guardstream serve` tunes the collector once it listens: start-up objects frozen, young collections rare.
Collecting rarely only delays freeing cyclic garbage, and requests make none (docs/reliability.md, "Bounded
resources")."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.gc_tuning import YOUNG_THRESHOLD, tune_gc

RULES = {"secrets": {"type": "secrets", "on_error": "fail_closed"}, "pii": {"type": "pii"}}


def test_tune_gc_freezes_start_up_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _cyclic_garbage(h: Any, texts: tuple[str, ...], rounds: int) -> tuple[list[int], int]:
    """Statuses of `rounds` × texts × (streamed, not) requests, and the objects only the collector could free."""

    async def many() -> list[int]:
        statuses = []
        async with aiohttp.ClientSession() as session:  # one pool: keep-alive connections, as clients use them
            for _ in range(rounds):
                for stream in (False, True):
                    for text in texts:
                        body = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": text}]}
                        async with session.post(h.base_url + "/v1/chat/completions", json=body) as r:
                            await r.read()
                            statuses.append(r.status)
        return statuses

    h.call(many())  # warm-up: first-use caches are not garbage
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        statuses = h.call(many())
        gc.collect()
        garbage = len(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return statuses, garbage


@pytest.mark.parametrize("engines", ["keyword", "rules"])
def test_served_requests_leave_no_cyclic_garbage_and_refused_ones_little(tmp_path: Path, engines: str) -> None:
    """Judged by async engines (keyword) or inline ones (the built-in rules), allowed and flagged, streamed and
    not: no cyclic garbage grows with the requests (the client closing its pool leaves about the same few
    objects after 5 rounds as after 15: a stream's choices held a method of its relay, a cycle, until this
    test). A refused prompt: its error's traceback cycle, a few hundred objects each (so the 50,000 threshold
    holds at most a few hundred refused requests' worth before collecting)."""
    from proxy.demo_upstream import DemoUpstream
    from tests.conftest import keyword_settings
    from tests.planted import RSA_KEY
    from tests.proxy_harness import ProxyHarness

    settings = keyword_settings(tmp_path, evaluators=RULES if engines == "rules" else None)
    h = ProxyHarness(settings, DemoUpstream(answer=lambda body: "a plain answer")).start()
    served = ("hello there", "mail bob.smith@example.org")
    try:
        statuses, few = _cyclic_garbage(h, served, rounds=5)
        more_statuses, more = _cyclic_garbage(h, served, rounds=15)
        assert set(statuses + more_statuses) == {200}
        assert more - few < (len(more_statuses) - len(statuses)) / 5  # 40 more requests: a few objects at most
        refused, garbage = _cyclic_garbage(h, (RSA_KEY if engines == "rules" else "hunter2",), rounds=10)
        assert set(refused) == {400} and garbage - few < len(refused) / 5
    finally:
        h.stop()
