"""The incremental judges of one streamed choice: each rule engine's scanner, fed the answer as it grows.

The relay feeds them once per batch of upstream events (not once per event: under load one read holds many),
turns what they found into verdicts for the policy, and releases text up to `cleared`, the least of what every
holding scanner cleared (a scanner whose findings the policy only flags holds nothing back).

A judge that neither holds text nor can stop the stream (its findings are only flagged and its failure is not
`fail_closed`) has no reason to judge each read: it is fed in batches of `BESIDE_BATCH_CHARS`, and at once
whenever a holding judge finds something or the answer ends; the relay catches it up when it stops early (a
cut, an interrupted upstream, a client gone). A scanner finds the same matches wherever the text is split
(`TailScanner`), so its findings are those of a judge fed each read; they only come later, and one audit event
may carry several.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from evaluators.base import IncrementalScanner, ScanStep, Verdict

#: text a beside judge (`ScannerSlot.beside`) may lag behind the answer: flags come within this many characters
BESIDE_BATCH_CHARS = 2048


@dataclass(slots=True)
class ScannerSlot:
    name: str
    version: str
    scanner: IncrementalScanner
    holds: bool = True  # text waits for it (its findings are blocked or redacted); else it judges beside
    beside: bool = False  # nothing it finds or fails on can hold or stop the stream: judged in batches
    seconds: float = 0.0  # time spent scanning this answer
    failed: bool = False  # raised: its verdict was an error, it judges no more (and holds nothing back)


@dataclass(slots=True)
class IncrementalJudges:
    slots: list[ScannerSlot]
    pending: list[str] = field(default_factory=list)  # text not fed yet
    cleared: float = 0  # characters of the answer every scanner cleared
    lagging: list[str] = field(default_factory=list)  # text the beside judges were not fed yet
    lagging_chars: int = 0
    _each_read: list[ScannerSlot] = field(init=False, repr=False)  # judged at every step
    _beside: list[ScannerSlot] = field(init=False, repr=False)  # judged in batches

    def __post_init__(self) -> None:
        self._each_read = [slot for slot in self.slots if not slot.beside]
        self._beside = [slot for slot in self.slots if slot.beside]

    def add(self, text: str) -> None:
        if text:
            self.pending.append(text)

    def step(self, final: bool = False) -> list[Verdict]:
        """Feed what arrived to every scanner (`final`: and judge it all, as the answer ended or the relay can
        hold no more); the verdicts of those that found something or failed."""
        text = "".join(self.pending) if len(self.pending) != 1 else self.pending[0]
        self.pending.clear()
        verdicts: list[Verdict] = []
        cleared: float = math.inf
        for slot in self._each_read:
            step = self._feed(slot, text, final, verdicts)
            if step is not None and slot.holds:
                cleared = min(cleared, step.cleared)
        self.cleared = cleared
        if self._beside:
            if text:
                self.lagging.append(text)
                self.lagging_chars += len(text)
            if final or verdicts or self.lagging_chars >= BESIDE_BATCH_CHARS:
                self._feed_beside(final, verdicts)
        return verdicts

    def catch_up(self) -> list[Verdict]:
        """Feed the beside judges what they lag behind (the answer may go on); their verdicts, as `step`'s."""
        verdicts: list[Verdict] = []
        if self.lagging:
            self._feed_beside(False, verdicts)
        return verdicts

    def _feed_beside(self, final: bool, verdicts: list[Verdict]) -> None:
        text = "".join(self.lagging) if len(self.lagging) != 1 else self.lagging[0]
        self.lagging.clear()
        self.lagging_chars = 0
        for slot in self._beside:
            self._feed(slot, text, final, verdicts)

    @staticmethod
    def _feed(slot: ScannerSlot, text: str, final: bool, verdicts: list[Verdict]) -> ScanStep | None:
        """One scanner's step over `text` (None when it failed before or fails now); what it found or the error
        it raised goes to `verdicts`."""
        if slot.failed:
            return None
        started = time.perf_counter()
        try:
            step = slot.scanner.feed(text)
            if final:
                last = slot.scanner.flush()
                step = ScanStep(step.findings + last.findings, last.cleared,
                                last.score if last.score is not None else step.score)
        except Exception as exc:  # a broken engine must not fail the stream: on_error decides
            slot.failed = True
            verdicts.append(Verdict(safe=False, evaluator=slot.name, version=slot.version,
                                    error=f"{type(exc).__name__}: {exc}"))
            return None
        finally:
            slot.seconds += time.perf_counter() - started
        if step.findings:
            verdicts.append(Verdict(safe=False, evaluator=slot.name, version=slot.version,
                                    categories=sorted({f.category for f in step.findings}), score=step.score,
                                    findings=step.findings))
        return step
