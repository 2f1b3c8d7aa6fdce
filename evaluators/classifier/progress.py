"""Rich progress bars and a log line printer for long classifier jobs (build, train, cross-validation)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: `bar(description, total)` returns an `advance(n)` callback
Bar = Callable[[str, int], Callable[[int], None]]


def no_progress(_description: str, _total: int) -> Callable[[int], None]:
    """A `Bar` that shows nothing (the default where no bar was asked for)."""
    return lambda _n: None


@contextmanager
def rich_progress() -> Iterator[tuple[Bar, Callable[[str], None]]]:
    """(bar, log): `bar(description, total)` returns an `advance(n)` callback; `log` prints above the bars."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=Console(stderr=True))
    with progress:
        def bar(description: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        yield bar, lambda message: progress.console.print(message)
