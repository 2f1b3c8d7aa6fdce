"""What every rule engine shares: typed options, a sync `scan`, verdicts with latency.

A rule engine is its patterns: it subclasses `RuleEvaluator`, sets `category`,
`engine_version` and `options_model` (evaluators/rules/options.py), and implements `scan(text) -> list[Finding]` (or
`analyse` when it also has a score). An engine that also implements
`open_from` (where an unfinished match could still begin) judges streamed
answers incrementally (`incremental()`, see `_incremental.py`). Rules are CPU work of a few microseconds,
so `evaluate` runs them inline on the event loop; only large batches hop to a
worker thread so one huge text cannot stall other requests.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from evaluators.base import BaseEvaluator, EvalItem, Finding, IncrementalScanner, Verdict
from evaluators.options import parse_options
from evaluators.rules._incremental import TailScanner
from evaluators.rules._prefilter import Triggers
from evaluators.rules.options import INLINE_MAX_CHARS, RuleOptions

__all__ = ["INLINE_MAX_CHARS", "RuleEvaluator", "drop_overlaps", "lower_same_length", "options_version",
           "shannon_entropy"]


class RuleEvaluator(BaseEvaluator):
    """Base for the cheap rule engines; subclasses implement `scan` (or `analyse`)."""

    category: str = "blocklist"
    engine_version: ClassVar[str] = "1"
    #: a rule costs less than a cache lookup (a Redis hit is ~100 µs): the guard calls it directly
    cacheable = False
    #: the engine's options (a subclass names its own model and narrows `opts` to it)
    options_model: ClassVar[type[RuleOptions]] = RuleOptions
    opts: RuleOptions

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        #: as configured: the version digests them, so differently configured instances never share a cache entry
        self.options: dict[str, Any] = dict(options or {})
        self.opts = parse_options(self.options_model, self.options)
        self.name = name
        self.version = options_version(self.engine_version, self.options)
        self.stages = self.opts.stages
        self.inline_max_chars = self.opts.inline_max_chars

    # -- what an engine implements -------------------------------------------------
    def scan(self, text: str) -> list[Finding]:
        """Located matches in `text`, in text order."""
        raise NotImplementedError

    def analyse(self, text: str) -> tuple[list[Finding], float | None]:
        """Findings and an optional score; the default has no score."""
        return self.scan(text), None

    def quiet_triggers(self) -> tuple[Triggers, float | None] | None:
        """Triggers whose absence from an ASCII text means `analyse` finds nothing there, and the score it then
        gives; None when the engine has no such guarantee. The guard scans a stage's text once for the
        triggers of all its engines (`StageTriggers`) and calls only the engines whose triggers occur."""
        return None

    def open_from(self, text: str, start: int, run: int) -> int:
        """Where, at or after `start`, the end of `text` could still be the start of an unfinished match (or of
        a match that could still grow, or whose lookahead could still fail): `len(text)` when nowhere.
        `run` is where the trailing run of non-whitespace begins. Engines that implement it judge streams
        incrementally; it must never answer later than the true start (holding more is safe, less leaks)."""
        raise NotImplementedError

    def inert(self, piece: str) -> bool:
        """Streams: appended to an answer of which nothing is held back, `piece` can neither start, grow nor
        complete a match: the scanner clears it without asking `open_from` or `analyse` (what they would say).
        False by default, which is always safe."""
        return False

    def certain(self, text: str, start: int) -> list[Finding]:
        """Streams: matches starting at or after `start` (text still held: they may grow) that more text cannot
        undo, so a stream can be cut before they end. None by default."""
        return []

    def incremental(self) -> IncrementalScanner | None:
        """A scanner for one streamed answer (None when the engine has no `open_from`)."""
        if type(self).open_from is RuleEvaluator.open_from:
            return None
        return TailScanner(self)

    # -- the Evaluator contract ----------------------------------------------------
    def judge(self, text: str) -> Verdict:
        """Judge one text synchronously (what `evaluate` does per item)."""
        started = time.perf_counter()
        findings, score = self.analyse(text)
        return Verdict(
            safe=not findings,
            evaluator=self.name,
            version=self.version,
            categories=sorted({f.category for f in findings}) if findings else [],
            score=score,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            findings=findings,
        )

    def evaluate_sync(self, items: Sequence[EvalItem]) -> list[Verdict] | None:
        """Judge inline (the proxy then needs no task or timer); None for batches too big for the loop."""
        if len(items) == 1:  # the proxy's case: one item
            text = items[0].scan_text
            return [self.judge(text)] if len(text) <= self.inline_max_chars else None
        texts = [item.scan_text for item in items]
        if sum(len(t) for t in texts) > self.inline_max_chars:
            return None
        return [self.judge(t) for t in texts]

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        verdicts = self.evaluate_sync(items)
        if verdicts is not None:
            return verdicts
        return await asyncio.to_thread(lambda: [self.judge(item.scan_text) for item in items])

    def cache_context(self, item: EvalItem) -> str:
        return item.scan_text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"


def options_version(engine_version: str, options: Mapping[str, Any]) -> str:
    """Engine version plus a short hash of the options: differently configured instances never share a cache entry."""
    if not options:
        return engine_version
    blob = json.dumps(options, sort_keys=True, default=str, separators=(",", ":"))
    return f"{engine_version}+{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def lower_same_length(text: str) -> str:
    """`text.lower()` with offsets preserved (U+0130 is the one code point whose lower case is two)."""
    low = text.lower()
    if len(low) != len(text):
        low = text.replace("\u0130", "i").lower()
    return low


def shannon_entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def drop_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep findings in the order given (priority order), dropping any that overlaps one kept earlier.

    Returns the kept findings sorted by position. Kept spans never overlap, so
    they stay sorted by both start and end and one bisect finds a neighbour.
    """
    starts: list[int] = []
    kept: list[Finding] = []
    for f in findings:
        i = bisect.bisect_right(starts, f.start)
        if i > 0 and kept[i - 1].end > f.start:
            continue
        if i < len(kept) and kept[i].start < f.end:
            continue
        starts.insert(i, f.start)
        kept.insert(i, f)
    return kept
