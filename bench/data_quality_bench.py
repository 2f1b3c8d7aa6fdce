"""Data-quality checker throughput and memory: 100k and 1M records in one streaming pass.

    python -m bench.data_quality_bench [--jsonl] [--markdown] [--out bench/results/data_quality.json]

`--jsonl` adds the JSONL file path (parse + check + write); results go to `--out` as JSON.

Records come from a generator (no list is ever built): 8 devices interleaved,
one point per device per second, speed drifting smoothly. Each measurement runs
in its own subprocess so its peak RSS (`resource.getrusage`) is its own; the
fastest of `--repeat` runs (default 3) is kept, as the machine may be shared.
Modes:
- `generate`: the generator alone (the baseline the checker is measured over);
- `check`: generator + `Checker.check` on every record;
- `jsonl`: a JSONL file on disk screened like `guardstream check-data` does
  (read, json.loads, check, write accepted/rejected files).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RULES_YAML = """
record_type: bench_telemetry
fields:
  device_id: {type: string}
  ts:        {type: timestamp}
  speed:     {type: number, min: 0, max: 70, unit: m/s}
  battery:   {type: number, min: 0, max: 100}
  min_temp:  {type: number}
  max_temp:  {type: number}
time: {field: ts, series_key: device_id, max_gap: 30, time_unit: s}
rates:
  - {field: speed, max: 12, unit: m/s, time_unit: s}
constraints:
  - "min_temp <= max_temp"
"""
#: rules in RULES_YAML: completeness+type of 6 fields, 2 ranges, time order, max gap, rate, 1 constraint
RULE_COUNT = 6 + 2 + 1 + 1 + 1 + 1
DEVICES = 8


def records(n: int, iso: bool = False) -> Iterator[dict[str, Any]]:
    """`n` clean records, generated on the fly."""
    start = 1_700_000_000
    names = [f"dev-{d}" for d in range(DEVICES)]
    for i in range(n):
        d = i % DEVICES
        step = i // DEVICES
        t = start + step
        speed = 20.0 + 10.0 * math.sin(step / 50.0 + d)
        yield {
            "device_id": names[d],
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if iso else t,
            "speed": speed,
            "battery": 90.0 - (step % 500) * 0.1,
            "min_temp": 10.0 + d,
            "max_temp": 25.0 + d,
        }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def measure(mode: str, n: int, iso: bool) -> dict[str, Any]:
    from evaluators.data_quality.checker import Checker
    from evaluators.data_quality.rules import parse_rules

    rules = parse_rules(RULES_YAML, "bench")
    checker = Checker(rules)
    rejected = 0
    if mode == "generate":
        started = time.perf_counter()
        for _ in records(n, iso):
            pass
        elapsed = time.perf_counter() - started
    elif mode == "check":
        check = checker.check
        started = time.perf_counter()
        for index, record in enumerate(records(n, iso)):
            if check(record, index):
                rejected += 1
        elapsed = time.perf_counter() - started
    elif mode == "jsonl":
        from evaluators.data_quality.io import RecordSink, RecordSource
        from evaluators.data_quality.screen import screen

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "in.jsonl")
            with open(path, "w") as fh:
                for record in records(n, iso):
                    fh.write(json.dumps(record) + "\n")
            field_types = {k: v.type for k, v in rules.fields.items()}
            started = time.perf_counter()
            with RecordSource(path, "jsonl", field_types) as source, \
                    RecordSink(os.path.join(tmp, "ok.jsonl"), "jsonl", rejected=False) as ok, \
                    RecordSink(os.path.join(tmp, "bad.jsonl"), "jsonl", rejected=True) as bad:
                tally = screen(source, checker, accepted=ok, rejected=bad)
            elapsed = time.perf_counter() - started
            rejected = tally.rejected
    else:
        raise ValueError(mode)
    return {"mode": mode, "n": n, "iso": iso, "seconds": elapsed, "records_per_s": n / elapsed,
            "rejected": rejected, "peak_rss_mib": peak_rss_mib()}


def run_isolated(mode: str, n: int, iso: bool, repeat: int = 1) -> dict[str, Any]:
    """Best (fastest) of `repeat` runs, each in a fresh process; peak RSS is the largest seen."""
    cmd = [sys.executable, "-m", "bench.data_quality_bench", "--one", mode, str(n)] + (["--iso"] if iso else [])
    runs = []
    for _ in range(repeat):
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "repeat": repeat, "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--iso", action="store_true", help="ISO 8601 timestamps instead of epoch numbers")
    parser.add_argument("--jsonl", action="store_true", help="also measure the JSONL file path")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest is kept")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for docs)")
    parser.add_argument("--out", default="bench/results/data_quality.json", help="where to write the results")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.iso)))
        return 0

    from rich.console import Console
    from rich.table import Table

    sizes = [int(s) for s in args.sizes.split(",")]
    modes = ["generate", "check"] + (["jsonl"] if args.jsonl else [])
    results = []
    load_before = os.getloadavg()[0]
    for iso in ([False, True] if not args.iso else [True]):
        for mode in modes:
            for n in sizes:
                results.append(run_isolated(mode, n, iso, args.repeat))
    base = {(r["n"], r["iso"]): r["seconds"] for r in results if r["mode"] == "generate"}
    table = Table(title=f"data-quality checker, {RULE_COUNT} rules, {DEVICES} series, {os.cpu_count()} CPUs")
    for col in ("mode", "timestamps", "records", "seconds", "records/s", "checker only, records/s", "peak RSS MiB"):
        table.add_column(col, justify="left" if col in ("mode", "timestamps") else "right")
    for r in results:
        only = ""
        if r["mode"] == "check":
            checker_s = r["seconds"] - base[(r["n"], r["iso"])]
            r["checker_records_per_s"] = r["n"] / checker_s if checker_s > 0 else None
            only = f"{r['checker_records_per_s']:,.0f}" if r["checker_records_per_s"] else ""
        table.add_row(r["mode"], "ISO 8601" if r["iso"] else "epoch s", f"{r['n']:,}", f"{r['seconds']:.2f}",
                      f"{r['records_per_s']:,.0f}", only, f"{r['peak_rss_mib']:.1f}")
    load_after = os.getloadavg()[0]
    table.caption = f"1-min load average {load_before:.1f} before, {load_after:.1f} after"
    Console(width=140).print(table)
    report = {
        "benchmark": "data_quality",
        "ts": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg_1m_before": load_before, "loadavg_1m_after": load_after},
        "rules": {"checks": RULE_COUNT, "series": DEVICES, "yaml": RULES_YAML.strip()},
        "repeat": args.repeat,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {out}")
    if args.markdown:
        print(markdown(results, load_before, load_after))
    return 0


def markdown(results: list[dict[str, Any]], load_before: float, load_after: float) -> str:
    lines = ["| mode | timestamps | records | seconds | records/s | checker only, records/s | peak RSS MiB |",
             "|---|---|--:|--:|--:|--:|--:|"]
    for r in results:
        only = f"{r['checker_records_per_s']:,.0f}" if r.get("checker_records_per_s") else ""
        lines.append(f"| {r['mode']} | {'ISO 8601' if r['iso'] else 'epoch s'} | {r['n']:,} | {r['seconds']:.2f} | "
                     f"{r['records_per_s']:,.0f} | {only} | {r['peak_rss_mib']:.1f} |")
    lines.append(f"\n{os.cpu_count()} CPUs, best of {results[0].get('repeat', 1)} runs, "
                 f"1-min load average {load_before:.1f} before and {load_after:.1f} after.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
