"""Cascade: a cheap first evaluator decides the clear cases, a second one (Llama Guard) the rest.

Options:
  first:  {type, options}   evaluator spec, usually the CPU classifier
  second: {type, options}   evaluator spec, usually llama_guard
  low:    first-stage score below this -> safe, decided by the first stage (default 0.1)
  high:   first-stage score above this -> unsafe, decided by the first stage (default 0.9)

Items scored in [low, high] go to the second evaluator, and its verdict is the
cascade's. A first stage without scores (a rule) decides only when it finds
something unsafe; everything it passes goes to the second. A first-stage error also
sends the item on (an exception from the first stage sends the whole batch on; one from the
second propagates to the proxy's `on_error`). The verdict names the cascade; its score and categories are
those of the stage that decided.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from evaluators import registry
from evaluators.base import EvalItem, Evaluator, OptionError, Verdict
from evaluators.options import EngineOptions, parse_options

Route = Literal["first_safe", "first_unsafe", "second"]


@dataclass(frozen=True, slots=True)
class Routed:
    """What `evaluate_routed` returns besides the verdicts: for `guardstream eval`."""

    verdicts: list[Verdict]
    routes: list[Route]
    first: list[Verdict]


class CascadeEvaluator:
    """Runs `first` on every item and `second` only on the uncertain ones."""

    def __init__(self, name: str, first: Evaluator, second: Evaluator, low: float = 0.1, high: float = 0.9) -> None:
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"cascade {name!r}: need 0 <= low <= high <= 1 (got low={low}, high={high})")
        self.name = name
        self.first = first
        self.second = second
        self.low = float(low)
        self.high = float(high)
        self.version = f"{first.version}+{second.version}@{self.low:g}-{self.high:g}"
        self.stages = frozenset(first.stages) & frozenset(second.stages)
        self.calls = {"items": 0, "second": 0}

    def route(self, verdict: Verdict) -> Route:
        if verdict.error is not None:
            return "second"
        if verdict.score is None:
            return "second" if verdict.safe else "first_unsafe"
        if verdict.score < self.low:
            return "first_safe"
        if verdict.score > self.high:
            return "first_unsafe"
        return "second"

    async def evaluate_routed(self, items: Sequence[EvalItem]) -> Routed:
        start = time.perf_counter()
        try:
            first = await self.first.evaluate(items)
        except Exception as exc:  # noqa: BLE001 - the first stage failing must not take the second down with it
            first = [Verdict.failure(self.first, f"{type(exc).__name__}: {exc}") for _ in items]
        routes = [self.route(v) for v in first]
        uncertain = [i for i, r in enumerate(routes) if r == "second"]
        second = await self.second.evaluate([items[i] for i in uncertain]) if uncertain else []
        by_index = dict(zip(uncertain, second))
        latency_ms = (time.perf_counter() - start) * 1000.0
        self.calls["items"] += len(items)
        self.calls["second"] += len(uncertain)
        verdicts = []
        for i, (fv, route) in enumerate(zip(first, routes)):
            decided = by_index.get(i, fv)
            verdicts.append(Verdict(
                safe=decided.safe if route == "second" else route == "first_safe",
                evaluator=self.name, version=self.version,
                categories=list(decided.categories) if route != "first_safe" else [],
                score=decided.score, latency_ms=latency_ms, error=decided.error,
                findings=list(decided.findings),
            ))
        return Routed(verdicts, routes, list(first))

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        return (await self.evaluate_routed(items)).verdicts

    def cache_context(self, item: EvalItem) -> str:
        a, b = self.first.cache_context(item), self.second.cache_context(item)
        return a if a == b else f"{a}\x1e{b}"

    async def aclose(self) -> None:
        await self.first.aclose()
        await self.second.aclose()


class EvaluatorSpec(EngineOptions):
    """One stage of the cascade: an evaluator type and its options."""

    type: str
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("options", mode="before")
    @classmethod
    def _null_is_none(cls, value: Any) -> Any:
        return {} if value is None else value


class CascadeOptions(EngineOptions):
    first: EvaluatorSpec
    second: EvaluatorSpec
    #: first-stage score below this: safe, decided by the first stage
    low: float = 0.1
    #: first-stage score above this: unsafe, decided by the first stage
    high: float = 0.9

    @model_validator(mode="after")
    def _ordered_and_known(self) -> CascadeOptions:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise OptionError("low", f"need 0 <= low <= high <= 1 (got low={self.low:g}, high={self.high:g})")
        for role, spec in (("first", self.first), ("second", self.second)):
            try:
                registry.check_options(spec.type, spec.options)
            except OptionError as exc:
                raise exc.under(f"{role}.options") from None
            except registry.UnknownEvaluatorType as exc:
                raise OptionError(f"{role}.type", str(exc)) from None
        return self


def _build(name: str, role: str, spec: EvaluatorSpec) -> Evaluator:
    try:
        return registry.create(spec.type, f"{name}.{role}", spec.options)
    except OptionError as exc:
        raise exc.under(f"{role}.options") from None
    except registry.UnknownEvaluatorType as exc:
        raise OptionError(f"{role}.type", str(exc)) from None


def create(name: str, options: Mapping[str, Any]) -> CascadeEvaluator:
    opts = parse_options(CascadeOptions, options)
    return CascadeEvaluator(name, _build(name, "first", opts.first), _build(name, "second", opts.second),
                            low=opts.low, high=opts.high)
