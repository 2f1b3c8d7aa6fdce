"""`guardstream check-data FILE --rules RULES.yaml`: screen a JSONL/CSV dataset with data-quality rules.

One streaming pass (memory independent of the file length), a progress bar on
stderr, a per-rule summary table on stdout, accepted and rejected rows written
to separate files (rejected ones with their failure reasons).
Exit status: 0 all accepted, 1 some rejected, 2 unusable input or rules.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="JSONL or CSV file to screen (.gz is fine)")
    parser.add_argument("--rules", required=True, metavar="RULES.yaml", help="data-quality rule file")
    parser.add_argument("--accepted", metavar="OUT", help="write accepted rows here (same format as FILE)")
    parser.add_argument("--rejected", metavar="OUT", help="write rejected rows and their failures here")
    parser.add_argument("--format", choices=["auto", "jsonl", "csv"], default="auto",
                        help="input format (default: from the file name)")
    parser.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from evaluators.data_quality.checker import Checker
    from evaluators.data_quality.io import InputError, RecordSink, RecordSource, detect_format
    from evaluators.data_quality.rules import RulesError, load_rules
    from evaluators.data_quality.screen import screen

    err = Console(stderr=True)
    try:
        rules = load_rules(args.rules)
    except RulesError as exc:
        err.print(f"[red]rule file error[/red]\n{exc}", markup=True, highlight=False)
        return 2
    sinks: list[RecordSink] = []
    try:
        _check_paths(args.file, args.accepted, args.rejected)
        fmt = detect_format(args.file, args.format)
        field_types = {name: spec.type for name, spec in rules.fields.items()}
        with RecordSource(args.file, fmt, field_types) as source:
            accepted = rejected = None
            if args.accepted:
                accepted = RecordSink(args.accepted, fmt, rejected=False, fieldnames=source.fieldnames)
                sinks.append(accepted)
            if args.rejected:
                rejected = RecordSink(args.rejected, fmt, rejected=True, fieldnames=source.fieldnames)
                sinks.append(rejected)
            started = time.perf_counter()
            with _progress(err, source, enabled=not args.no_progress) as on_progress:
                tally = screen(source, Checker(rules), accepted=accepted, rejected=rejected,
                               progress=on_progress)
            elapsed = time.perf_counter() - started
    except InputError as exc:
        err.print(f"[red]input error:[/red] {exc}", markup=True, highlight=False)
        return 2
    except OSError as exc:
        err.print(f"[red]cannot write output:[/red] {exc}", markup=True, highlight=False)
        return 2
    finally:
        for sink in sinks:
            sink.close()

    _print_summary(Console(), rules.record_type, args.file, tally, elapsed)
    if args.summary_json:
        summary = {**tally.to_dict(), "file": args.file, "rules": args.rules, "seconds": round(elapsed, 3)}
        with open(args.summary_json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
    return 0 if tally.rejected == 0 else 1


def _check_paths(source: str, *outputs: str | None) -> None:
    """Refuse outputs that would overwrite the input or each other (the input is read while writing)."""
    from pathlib import Path

    from evaluators.data_quality.io import InputError

    seen = {Path(source).resolve()}
    for out in outputs:
        if out is None:
            continue
        resolved = Path(out).resolve()
        if resolved in seen:
            raise InputError(f"output {out!r} would overwrite the input or another output")
        seen.add(resolved)


class _progress:
    """A rich progress bar over bytes read (context manager yielding the `progress(n)` callback)."""

    def __init__(self, console: Any, source: Any, enabled: bool):
        self.console, self.source, self.enabled = console, source, enabled and console.is_terminal

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]screening"), BarColumn(), DownloadColumn(),
                            TextColumn("{task.fields[records]:,} records"), TimeRemainingColumn(),
                            console=self.console, transient=True)
        self.bar.start()
        task = self.bar.add_task("screen", total=self.source.size or None, records=0)

        def update(records: int) -> None:
            self.bar.update(task, completed=self.source.position(), records=records)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()


def _print_summary(console: Any, record_type: str, path: str, tally: Any, elapsed: float) -> None:
    from rich.table import Table

    rate = tally.records / elapsed if elapsed > 0 else 0.0
    table = Table(title=f"{path}: {record_type}", title_justify="left")
    table.add_column("rule")
    table.add_column("field")
    table.add_column("failures", justify="right")
    table.add_column("first at", justify="right")
    table.add_column("example")
    for rule, field, count, first in tally.rows():
        table.add_row(rule, field, f"{count:,}", str(first.index), first.message)
    if not tally.failures:
        table.add_row("[green]all rules passed[/green]", "", "0", "", "")
    console.print(table)
    console.print(f"records {tally.records:,}  accepted [green]{tally.accepted:,}[/green]  "
                  f"rejected [red]{tally.rejected:,}[/red]  ({elapsed:.2f} s, {rate:,.0f} records/s)",
                  highlight=False)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="guardstream check-data")
    configure(parser)
    sys.exit(run(parser.parse_args()))
