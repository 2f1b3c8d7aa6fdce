"""`python -m bench`: run the benchmark suite and write docs/benchmarks.md (+ figures and raw JSON)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from bench.targets import REPO


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--quick", action="store_true", help="short points (1 s, concurrency 1 and 32, no profile): a "
                   "smoke run, not numbers to compare")
    p.add_argument("--only", default=None, metavar="ROWS",
                   help="comma-separated row keys or shell patterns, e.g. 'direct,passthrough,guardstream-*'")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="recorded seconds per window "
                   "(default 5, quick 1)")
    p.add_argument("--warmup", type=float, default=None, metavar="S", help="warm-up seconds before each window "
                   "(default 1)")
    p.add_argument("--rounds", type=int, default=None, help="windows per point, taken in separate passes over "
                   "the rows; the one with the higher throughput is reported (default 2, quick 1)")
    p.add_argument("--concurrency", type=_ints, default=None, help="non-streamed concurrencies (default 1,32,128)")
    p.add_argument("--stream-concurrency", type=_ints, default=None, help="streamed concurrencies (default 1,32)")
    p.add_argument("--driver", choices=["auto", "wrk", "asyncio"], default="auto",
                   help="load generator for non-streamed points (auto: wrk when installed)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="guardstream's log level in the benchmarked processes")
    p.add_argument("--profile", dest="profile", action="store_true", default=None, help="profile with py-spy")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--profile-seconds", type=float, default=10.0)
    p.add_argument("--profile-row", default="guardstream-rules", help="the guardstream row to profile")
    p.add_argument("--answer-bytes", type=int, default=1024)
    p.add_argument("--chunks", type=int, default=32)
    p.add_argument("--chunk-delay-ms", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md", help="report path (JSON next to it)")
    p.add_argument("--img-dir", type=Path, default=None, help="figures folder (default: img/ next to the report)")
    p.add_argument("--list", action="store_true", help="print the rows and exit")
    p.add_argument("--from-json", type=Path, default=None, metavar="FILE",
                   help="no measuring: re-render the report from a run's JSON (e.g. after editing the notes)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    from bench.report import write_report
    from bench.suite import Options, plan, run_suite

    quick = args.quick
    opts = Options(
        quick=quick,
        only=[s.strip() for s in args.only.split(",") if s.strip()] if args.only else None,
        duration_s=args.duration if args.duration is not None else (1.0 if quick else 5.0),
        warmup_s=args.warmup if args.warmup is not None else 1.0,
        rounds=args.rounds if args.rounds is not None else (1 if quick else 2),
        concurrency=args.concurrency or ((1, 32) if quick else (1, 32, 128)),
        stream_concurrency=args.stream_concurrency or ((1,) if quick else (1, 32)),
        answer_bytes=args.answer_bytes, chunks=args.chunks, chunk_delay_ms=args.chunk_delay_ms,
        driver=args.driver, log_level=args.log_level,
        profile=args.profile if args.profile is not None else not quick, profile_s=args.profile_seconds,
        profile_row=args.profile_row,
        command="python -m bench" + ("" if argv is None and len(sys.argv) == 1 else
                                     " " + shlex.join(sys.argv[1:] if argv is None else argv)),
    )
    console = Console(stderr=True)
    if args.list:
        for row in plan(opts):
            console.print(f"{row.key:<28} {row.label}")
        return 0
    started = time.monotonic()
    if args.from_json:
        import json

        from bench.suite import SuiteResult

        result = SuiteResult(**json.loads(args.from_json.read_text()))
    else:
        result = run_suite(opts, console)
    out = args.out.resolve()
    img_dir = (args.img_dir or out.parent / "img").resolve()
    write_report(result, out, img_dir)
    console.print(f"wrote {out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
