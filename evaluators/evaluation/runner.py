"""Run any evaluator over labelled items in batches, timing each batch.

One `evaluate` call per batch, one batch at a time: per-batch wall time is what a
caller waits for a batch of that size. An exception from `evaluate` turns the
batch into error verdicts (counted), as the proxy's error policy would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from evaluators.base import EvalItem, Evaluator, Verdict


@dataclass(slots=True)
class RunOutput:
    verdicts: list[Verdict] = field(default_factory=list)
    batch_ms: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    exceptions: int = 0
    #: cascades only: which stage decided each item, and the first stage's verdicts
    routes: list[str] | None = None
    first: list[Verdict] | None = None


async def run_evaluator(evaluator: Evaluator, items: Sequence[EvalItem], batch_size: int = 32,
                        on_batch: Callable[[int], None] | None = None) -> RunOutput:
    """Evaluate `items` in order; `on_batch(n)` is called after each batch (progress bars)."""
    out = RunOutput()
    routed = getattr(evaluator, "evaluate_routed", None)
    if routed is not None:
        out.routes, out.first = [], []
    start = time.perf_counter()
    for lo in range(0, len(items), batch_size):
        batch = list(items[lo : lo + batch_size])
        t0 = time.perf_counter()
        try:
            if routed is not None:
                result = await routed(batch)
                verdicts = result.verdicts
                out.routes.extend(result.routes)  # type: ignore[union-attr]  # routed runs keep routes and first (set together)
                out.first.extend(result.first)  # type: ignore[union-attr]  # routed runs keep routes and first (set together)
            else:
                verdicts = await evaluator.evaluate(batch)
            if len(verdicts) != len(batch):
                raise RuntimeError(f"{evaluator.name} returned {len(verdicts)} verdicts for {len(batch)} items")
        except Exception as exc:  # noqa: BLE001 - measured, not hidden: counted and reported
            out.exceptions += 1
            elapsed = (time.perf_counter() - t0) * 1000.0
            verdicts = [Verdict.failure(evaluator, f"{type(exc).__name__}: {exc}", elapsed) for _ in batch]
            if out.routes is not None:
                out.routes.extend(["error"] * len(batch))
                out.first.extend(verdicts)  # type: ignore[union-attr]  # routes and first are set together
        elapsed_ms = (time.perf_counter() - t0) * 1000.0
        out.verdicts.extend(verdicts)
        out.batch_ms.append(elapsed_ms)
        out.batch_sizes.append(len(batch))
        if on_batch is not None:
            on_batch(len(batch))
    out.wall_s = time.perf_counter() - start
    return out
