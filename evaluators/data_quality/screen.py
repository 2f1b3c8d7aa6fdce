"""Screen a stream of rows in one pass: check each, tally failures, route to accepted/rejected sinks."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from evaluators.data_quality.checker import Checker, Failure, Tally
from evaluators.data_quality.io import RecordSink, Row


def screen(rows: Iterable[Row], checker: Checker, *, accepted: RecordSink | None = None,
           rejected: RecordSink | None = None, progress: Callable[[int], None] | None = None,
           every: int = 8192) -> Tally:
    """Check `(record, raw, problem)` rows in order; unreadable rows fail the `parse` rule."""
    tally = Tally()
    check = checker.check
    counts = tally.failures
    first = tally.first
    index = -1
    rejected_count = 0
    for index, (record, raw, problem) in enumerate(rows):
        failures = check(record, index) if problem is None else [Failure(index, "parse", "row", problem)]
        if failures:
            rejected_count += 1
            for f in failures:
                key = f.rule_id
                counts[key] += 1
                if key not in first:
                    first[key] = f
            if rejected is not None:
                rejected.write(index, record, raw, failures)
        elif accepted is not None:
            accepted.write(index, record, raw, failures)
        if progress is not None and index % every == 0:
            progress(index + 1)
    tally.records = index + 1
    tally.rejected = rejected_count
    if progress is not None:
        progress(tally.records)
    return tally
