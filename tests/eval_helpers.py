"""Tiny real evaluators for eval-harness and cascade tests (registered per test with monkeypatch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evaluators.base import BaseEvaluator, EvalItem, Verdict


class KeywordEvaluator(BaseEvaluator):
    """Unsafe when the judged text contains a keyword; score = fraction of keywords present (or None)."""

    version = "kw-1"

    def __init__(self, name: str, keywords: Sequence[str], scored: bool = True, category: str = "S1") -> None:
        self.name = name
        self.keywords = [k.lower() for k in keywords]
        self.scored = scored
        self.category = category
        self.seen: list[str] = []

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        out = []
        for item in items:
            self.seen.append(item.text)
            text = item.text.lower()
            hits = sum(k in text for k in self.keywords)
            unsafe = hits > 0
            out.append(Verdict(safe=not unsafe, evaluator=self.name, version=self.version,
                               categories=[self.category] if unsafe else [],
                               score=hits / len(self.keywords) if self.scored else None, latency_ms=0.1))
        return out


class TableEvaluator(BaseEvaluator):
    """Scores looked up by text (for routing tests); unknown texts raise, to test error handling."""

    version = "table-1"

    def __init__(self, name: str, scores: Mapping[str, float], threshold: float = 0.5) -> None:
        self.name = name
        self.scores = dict(scores)
        self.threshold = threshold
        self.calls: list[list[str]] = []

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        self.calls.append([i.text for i in items])
        out = []
        for item in items:
            if item.text not in self.scores:
                out.append(Verdict.failure(self, f"no score for {item.text!r}"))
                continue
            s = self.scores[item.text]
            out.append(Verdict(safe=s < self.threshold, evaluator=self.name, version=self.version,
                               categories=["unsafe"] if s >= self.threshold else [], score=s))
        return out


class BrokenEvaluator(BaseEvaluator):
    name = "broken"
    version = "0"

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        raise RuntimeError("engine down")


def create_keyword(name: str, options: Mapping[str, Any]) -> KeywordEvaluator:
    return KeywordEvaluator(name, options.get("keywords", ["bomb", "poison", "steal"]),
                            scored=bool(options.get("scored", True)))


def create_table(name: str, options: Mapping[str, Any]) -> TableEvaluator:
    return TableEvaluator(name, options.get("scores", {}))


def create_broken(name: str, options: Mapping[str, Any]) -> BrokenEvaluator:
    return BrokenEvaluator()
