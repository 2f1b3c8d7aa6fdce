"""Which streaming mode a policy uses, and what each mode means for the relay."""

from __future__ import annotations

import math
from dataclasses import dataclass

from proxy.config import PolicyConfig
from proxy.streaming.choice import ChoiceStream
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
    """How a mode windows and holds back text.

    buffered: windows of `chunk_size` tokens, nothing unjudged reaches the client (lead 0), and the last
      `context_size` tokens of approved text wait for the next window's verdict (holdback).
    optimistic: same windows, the client may run one window ahead of the judged text.
    final: one window, the whole answer, judged at the end; text flows freely, the finish waits.
    """

    mode: str
    chunk_size: int | None
    context_size: int
    lead: float
    keep_chars: int = 32_768  # approved text kept for audit events
    holdback: int = 0  # tokens of approved text held until the next window is judged

    @classmethod
    def of(cls, policy: PolicyConfig, keep_chars: int = 32_768) -> "ModePlan":
        mode = effective_mode(policy)
        cfg = policy.output.streaming
        if mode == "buffered":
            return cls(mode, cfg.chunk_size, cfg.context_size, 0, keep_chars, holdback=cfg.context_size)
        if mode == "optimistic":
            return cls(mode, cfg.chunk_size, cfg.context_size, cfg.chunk_size, keep_chars)
        return cls(mode, None, 0, math.inf, keep_chars)

    @property
    def judges(self) -> bool:
        return self.mode != "off"

    @property
    def windowed(self) -> bool:
        return self.chunk_size is not None

    def new_choice(self, index: int) -> ChoiceStream:
        return ChoiceStream(index, TokenWindows(self.chunk_size, self.context_size, self.keep_chars), self.lead,
                            self.holdback)
