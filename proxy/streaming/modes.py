"""Which streaming mode a policy uses, and what each mode means for the relay."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from evaluators.base import IncrementalScanner
from evaluators.spans import Span
from proxy.config import PolicyConfig
from proxy.elision import MAX_CONTENT_CHARS
from proxy.streaming.choice import ChoiceStream
from proxy.streaming.judges import IncrementalJudges, ScannerSlot
from proxy.streaming.windows import TokenWindows


def effective_mode(policy: PolicyConfig) -> str:
    """The configured mode; unset means `buffered` when enforcing and `final` in shadow mode.

    A policy without output evaluators has nothing to judge: `off`.
    """
    if not policy.output.evaluators:
        return "off"
    mode = policy.output.streaming.mode
    if mode is None:
        mode = "buffered" if policy.mode == "enforce" else "final"
    return mode


@dataclass(frozen=True, slots=True)
class ModePlan:
    """How a mode judges and holds back text.

    buffered: incremental judges (rules) scan the answer as it arrives; window judges (models) judge growing
      windows (`first_chunk_size` tokens, doubling up to `chunk_size`); nothing reaches the client before every
      judge cleared it (`hold`).
    optimistic: the same judges; text is forwarded at once, except that the client may run at most one window
      ahead of the window judges (`lead`); a cut comes as soon as a judge finds something.
    final: every evaluator judges the whole answer once, at the end; text flows freely, the finish waits.
    """

    mode: str
    chunk_size: int | None
    context_size: int
    lead: float
    keep_chars: int = MAX_CONTENT_CHARS  # of the answer, kept for audit events
    first_size: int | None = None

    @classmethod
    def of(cls, policy: PolicyConfig, keep_chars: int = MAX_CONTENT_CHARS) -> ModePlan:
        mode = effective_mode(policy)
        cfg = policy.output.streaming
        if mode == "buffered":
            return cls(mode, cfg.chunk_size, cfg.context_size, 0, keep_chars, cfg.first_chunk_size)
        if mode == "optimistic":
            return cls(mode, cfg.chunk_size, cfg.context_size, cfg.chunk_size, keep_chars, cfg.first_chunk_size)
        return cls(mode, None, 0, math.inf, keep_chars)

    @property
    def judges(self) -> bool:
        return self.mode != "off"

    @property
    def incremental(self) -> bool:
        """Incremental judges scan the answer as it arrives (in final mode every evaluator judges it once)."""
        return self.mode in ("buffered", "optimistic")

    @property
    def hold(self) -> bool:
        return self.mode == "buffered"

    @property
    def windowed(self) -> bool:
        """Windows before the end of the answer (not final mode's single window)."""
        return self.chunk_size is not None

    def new_choice(self, index: int, scanners: list[tuple[str, str, IncrementalScanner, bool, bool]],
                   window_judges: bool, rewrite: Callable[[bytes, list[Span]], bytes] | None = None) -> ChoiceStream:
        windows = TokenWindows(self.chunk_size, self.context_size, self.first_size) if window_judges else None
        judges = IncrementalJudges([ScannerSlot(*scanner) for scanner in scanners]) if scanners else None
        return ChoiceStream(index, windows, judges, self.lead, self.hold, self.keep_chars, rewrite)
