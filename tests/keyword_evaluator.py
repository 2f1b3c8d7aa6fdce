"""A real, deterministic evaluator for driving policy paths in tests: keywords, fixed latency, forced failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from evaluators.base import BaseEvaluator, EvalItem, Verdict
from evaluators.options import EngineOptions, parse_options


class KeywordEvaluator(BaseEvaluator):
    """Unsafe when the judged text contains any configured word (case-insensitive)."""

    version = "1"

    def __init__(self, name: str, words: list[str], category: str, delay_ms: float = 0.0,
                 fail: str | None = None) -> None:
        self.name = name
        self.words = [w.lower() for w in words]
        self.category = category
        self.delay_ms = delay_ms
        self.fail = fail
        self.calls = 0
        self.items_seen = 0

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        self.calls += 1
        self.items_seen += len(items)
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        if self.fail == "raise":
            raise RuntimeError("evaluator backend down")
        out = []
        for item in items:
            started = time.perf_counter()
            text = item.text.lower()
            hit = any(w in text for w in self.words)
            out.append(Verdict(safe=not hit, evaluator=self.name, version=self.version,
                               categories=[self.category] if hit else [], score=1.0 if hit else 0.0,
                               latency_ms=(time.perf_counter() - started) * 1000))
        return out


class KeywordOptions(EngineOptions):
    words: list[str] = Field(default_factory=list)
    category: str = "unsafe"
    delay_ms: float = Field(default=0.0, ge=0)
    #: "raise": every call fails
    fail: str | None = None


def create(name: str, options: Mapping[str, Any]) -> KeywordEvaluator:
    opts = parse_options(KeywordOptions, options)
    return KeywordEvaluator(name, opts.words, opts.category, opts.delay_ms, opts.fail)


#: a plugin factory's options model: the proxy checks the options with it when it loads the config
create.options_model = KeywordOptions  # type: ignore[attr-defined]  # a function attribute the registry reads
