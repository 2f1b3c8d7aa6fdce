"""Bounded work and prompt cancellation: evaluator calls per answer, evaluations in flight, client hang-ups."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from evaluators.base import EvalItem, Verdict
from proxy.demo_upstream import DemoUpstream
from tests.keyword_evaluator import KeywordEvaluator
from tests.stream_client import chat_body, disconnect_latency, evaluator, post_raw, raw_stream, start, texts, tokens


class TrackingEvaluator(KeywordEvaluator):
    """The keyword evaluator, also recording how many calls overlap and when each started."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inflight = 0
        self.max_inflight = 0
        self.started: list[float] = []

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        self.started.append(time.perf_counter())
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            return await super().evaluate(items)
        finally:
            self.inflight -= 1


def create_tracking(name: str, options: Mapping[str, Any]) -> TrackingEvaluator:
    return TrackingEvaluator(name, list(options.get("words", [])), str(options.get("category", "unsafe")),
                             float(options.get("delay_ms", 0.0)))


def tracked(tmp_path: Path, mode: str, chunk: int, answer: Any, delay_ms: float,  # type: ignore[no-untyped-def]
            chunk_delay_s: float):
    return start(tmp_path, mode, chunk=chunk, answer=answer, delay_ms=delay_ms, chunk_delay_s=chunk_delay_s,
                 evaluator_type=f"{__name__}:create_tracking")


@pytest.mark.parametrize("mode", ["buffered", "optimistic"])
def test_evaluator_calls_grow_linearly_with_answer_length(tmp_path: Path, mode: str) -> None:
    chunk = 8
    calls: dict[int, int] = {}
    h = start(tmp_path, mode, chunk=chunk, chunk_delay_s=0.0005,
              answer=lambda body: tokens(int(body["max_tokens"]), prefix=f"w{body['max_tokens']}."))
    try:
        for length in (32, 64, 128, 256):
            before = evaluator(h).calls
            raw = raw_stream(h, chat_body(max_tokens=length))
            assert len(texts(raw)[0].split()) == length  # (distinct words per length: no cache hits)
            calls[length] = evaluator(h).calls - before
    finally:
        h.stop()
    for length, n in calls.items():
        windows = math.ceil(length / chunk)
        assert windows // 2 <= n <= windows, calls  # one call per window at most, coalesced when they pile up
    assert calls[256] <= 8 * calls[32] + 1
    print(mode, "calls per answer length:", calls)


def test_one_evaluation_in_flight_per_choice_and_windows_coalesce(tmp_path: Path) -> None:
    # a slow evaluator (20 ms) and an upstream with no delay: windows pile up while one is judged
    h = tracked(tmp_path, "buffered", 8, lambda body: [tokens(400, prefix="a"), tokens(400, prefix="b")], 20, 0.0)
    try:
        raw = raw_stream(h, chat_body(n=2))
        assert texts(raw) == {0: tokens(400, prefix="a"), 1: tokens(400, prefix="b")}
        ev = h.state.evaluators["secrets"]  # type: ignore[union-attr]
        assert ev.max_inflight == 2  # one per choice, never more
        assert ev.calls < 2 * 400 / 8  # the queued window absorbed the ones that piled up
    finally:
        h.stop()


def test_evaluations_overlap_generation(tmp_path: Path) -> None:
    h = tracked(tmp_path, "buffered", 16, lambda body: tokens(200), 20, 0.002)
    try:
        sent = time.perf_counter()
        raw = raw_stream(h, chat_body())
        total = time.perf_counter() - sent
        ev = h.state.evaluators["secrets"]  # type: ignore[union-attr]
        assert texts(raw) == {0: tokens(200)}
        # the first window was judged while the upstream was still generating the rest
        assert ev.started[0] - sent < total / 3, (ev.started[0] - sent, total)
        assert ev.calls >= 5
    finally:
        h.stop()


@pytest.mark.parametrize("mode", ["buffered", "optimistic"])
def test_held_text_is_capped_by_hold_limit(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow evaluator (50 ms a window) and an upstream with no delay: the reader stops reading once
    `hold_limit_bytes` of events wait for judgment, instead of holding the rest of the answer."""
    from proxy.streaming.relay import StreamRelay

    relays: list[StreamRelay] = []
    init = StreamRelay.__init__

    def remember(self: StreamRelay, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        relays.append(self)

    monkeypatch.setattr(StreamRelay, "__init__", remember)
    hold_limit = 8192
    h = start(tmp_path, mode, chunk=8, answer=lambda body: tokens(3000), delay_ms=50, chunk_delay_s=0.0,
              hold_limit=hold_limit)
    peak = 0

    async def watch(done: asyncio.Event) -> None:
        nonlocal peak
        while not done.is_set():
            peak = max([peak, *(sum(c.held_bytes for c in r.choices.values()) for r in relays)])
            await asyncio.sleep(0.02)

    async def scenario() -> bytes:
        done = asyncio.Event()
        watcher = asyncio.create_task(watch(done))
        try:
            return await post_raw(h.base_url + "/v1/chat/completions", chat_body())
        finally:
            done.set()
            await watcher

    try:
        raw = h.call(scenario(), timeout=60)
        assert texts(raw) == {0: tokens(3000)}
        assert 0 < peak <= hold_limit + 1024, peak  # the reader stops one event past the limit
    finally:
        h.stop()


def test_windows_end_early_at_the_hold_limit(tmp_path: Path) -> None:
    """A window far larger than the hold limit (10,000 tokens, 4 kB held at most) is ended early rather than
    waited for: the answer flows in smaller windows, each judged, and an unsafe word late in it still cuts."""
    h = start(tmp_path, "buffered", chunk=10_000, hold_limit=4096, chunk_delay_s=0.0,
              answer=lambda body: tokens(int(body["max_tokens"]), unsafe_at=body.get("unsafe_at")))
    try:
        raw = raw_stream(h, chat_body(max_tokens=1500))
        assert texts(raw) == {0: tokens(1500)}
        # ~8 kB of text, held events merged (see compaction.py): about a window per 4 kB, not one 10,000-token window
        assert evaluator(h).calls >= 2
        cut = raw_stream(h, chat_body(max_tokens=1500, unsafe_at=1400))
        assert "hunter2" not in cut.decode() and b'"finish_reason": "content_filter"' in cut.replace(b'":"', b'": "')
        assert texts(cut)[0].startswith(tokens(1000))  # what came before the unsafe window got through
    finally:
        h.stop()


@pytest.mark.parametrize("mode", ["buffered", "optimistic", "final", "off"])
def test_client_disconnect_cancels_upstream_within_100ms(tmp_path: Path, mode: str) -> None:
    upstream = DemoUpstream(answer=lambda body: tokens(2000), chunk_delay_s=0.005)
    h = start(tmp_path, mode, chunk=16, upstream=upstream)
    try:
        latency = h.call(disconnect_latency(h.base_url + "/v1/chat/completions", chat_body(), upstream))
        assert upstream.disconnects == 1 and upstream.streams_finished == 0
        print(f"{mode}: upstream cancelled {latency * 1000:.2f} ms after the hang-up")
        assert latency < 0.1, f"upstream cancelled {latency * 1000:.1f} ms after the client hung up"

        async def nothing_left() -> int:
            await asyncio.sleep(0.05)
            return len([t for t in asyncio.all_tasks() if t.get_name().startswith(("stream-reader", "stream-judge"))])

        assert h.call(nothing_left()) == 0  # no reader or judge left behind
    finally:
        h.stop()


def test_an_unfinished_match_longer_than_the_hold_limit_is_judged_as_it_stands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules hold a run that could still become a secret (`eyJ...` waiting for its second dot); one longer
    than `hold_limit_bytes` of text is judged as it stands rather than held without bound (docs/streaming.md,
    known limits): the stream neither stalls nor holds the upstream's whole answer."""
    from proxy.streaming.choice import ChoiceStream
    from tests.planted import settings as planted_settings
    from tests.relay_driver import RelayDriver

    peak = 0
    add = ChoiceStream.add

    def watched(self: ChoiceStream, raw: bytes, text: str, finish: bool) -> Any:
        nonlocal peak
        window = add(self, raw, text, finish)
        peak = max(peak, self.held_bytes)
        return window

    monkeypatch.setattr(ChoiceStream, "add", watched)
    driver = RelayDriver(planted_settings(tmp_path, hold_limit_bytes=4096))
    blob = "eyJ" + "A" * 20_000
    answer = "Here it comes: " + blob + " and that is all."
    outcome = driver.run("rules-buffered", [[answer[i:i + 50] for i in range(0, len(answer), 50)]])[0]
    assert (outcome.text, outcome.finish) == (answer, "stop")
    assert peak <= 4096 + 512, peak  # the limit, and the event that crossed it
