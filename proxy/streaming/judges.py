"""The incremental judges of one streamed choice: each rule engine's scanner, fed the answer as it grows.

The relay feeds them once per batch of upstream events (not once per event: under load one read holds many),
turns what they found into verdicts for the policy, and releases text up to `cleared`, the least of what every
holding scanner cleared (a scanner whose findings the policy only flags holds nothing back).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from evaluators.base import IncrementalScanner, ScanStep, Verdict


@dataclass(slots=True)
class ScannerSlot:
    name: str
    version: str
    scanner: IncrementalScanner
    holds: bool = True  # text waits for it (its findings are blocked or redacted); else it judges beside
    cleared: float = 0
    seconds: float = 0.0  # time spent scanning this answer
    failed: bool = False  # raised: its verdict was an error, it judges no more (and holds nothing back)


@dataclass(slots=True)
class IncrementalJudges:
    slots: list[ScannerSlot]
    pending: list[str] = field(default_factory=list)  # text not fed yet
    cleared: float = 0  # characters of the answer every scanner cleared

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
        for slot in self.slots:
            if slot.failed:
                continue
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
                continue
            finally:
                slot.seconds += time.perf_counter() - started
            slot.cleared = step.cleared
            if slot.holds:
                cleared = min(cleared, step.cleared)
            if step.findings:
                verdicts.append(Verdict(safe=False, evaluator=slot.name, version=slot.version,
                                        categories=sorted({f.category for f in step.findings}), score=step.score,
                                        findings=step.findings))
        self.cleared = cleared
        return verdicts
