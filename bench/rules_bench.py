"""Microseconds per evaluation for each rule engine at 100 B, 1 KB and 10 KB.

    python -m bench.rules_bench [--text-file prompts.txt] [--repeat 7]

The default text is a benign chat mix (prose, numbers, a URL, a code snippet)
with no findings: the common case on the hot path. `--text-file` measures your
own traffic instead. Each cell is the CPU time (`time.process_time`, so other
work on a shared machine does not inflate it) of `judge(text)`, which is what
`evaluate` does per item inline: the best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import platform
import time
import timeit
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evaluators.registry import create

SIZES = (100, 1024, 10 * 1024)
SAMPLE = """\
Hi! I'm planning a 3-day trip to Lisbon in May 2025 with two friends, budget about 1,200 EUR each.
Could you suggest an itinerary? We like food markets, museums and short hikes (max 10 km).
Also, what's the best way to get from the airport to Alfama: metro line 2 or a taxi?
Here is the Python helper I use to split the budget; it crashes on empty lists:

    def split(total: float, people: list[str]) -> dict[str, float]:
        share = round(total / len(people), 2)
        return {p: share for p in people}

The docs at https://docs.python.org/3/library/functions.html#round say round() uses banker's rounding.
Version 3.11.7 on macOS 14.4. Thanks in advance, and please keep the answer under 300 words.
"""
ENGINES = {
    "pii": {},
    "secrets": {},
    "injection": {},
    "unicode": {},
    "regex (100 words)": {"words": [f"codeword{i}" for i in range(100)]},
}


def text_of(size: int, source: str) -> str:
    return (source * (size // len(source) + 1))[:size]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text-file", type=Path, help="measure this text instead of the built-in sample")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    source = args.text_file.read_text(encoding="utf-8") if args.text_file else SAMPLE

    table = Table(
        title=f"Rule evaluators: CPU µs per judge() ({platform.python_implementation()} {platform.python_version()})"
    )
    table.add_column("engine")
    for size in SIZES:
        table.add_column(f"{size} B" if size < 1024 else f"{size // 1024} KB", justify="right")
    for label, options in ENGINES.items():
        ev = create(label.split()[0], label, options)
        row = [label]
        for size in SIZES:
            text = text_of(size, source)
            number = max(10, 200_000 // size)
            runs = timeit.repeat(
                lambda ev=ev, text=text: ev.judge(text), number=number, repeat=args.repeat, timer=time.process_time
            )
            best = min(runs) / number
            row.append(f"{best * 1e6:.1f}")
        table.add_row(*row)
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
