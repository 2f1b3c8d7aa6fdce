"""The long fuzz run: the properties of tests/test_fuzz.py with many more examples, and the schemathesis fuzz of
the live proxy's HTTP API (positive and negative cases from /openapi.json).

    python -m bench.fuzz_api [--examples 2000] [--schema-examples 1000] [--out bench/results/fuzz.json]

Runs pytest on tests/test_fuzz.py with the example counts raised (GS_FUZZ_EXAMPLES, GS_SCHEMA_EXAMPLES,
GS_FUZZ_RELAY_EXAMPLES), then the schema fuzz once more on its own to count requests by status.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def schema_fuzz_counts(examples: int) -> dict[str, int]:
    import structlog

    from proxy.auth import hash_key
    from tests.conftest import keyword_settings
    from tests.fuzzing import FuzzUpstream, fuzz_api
    from tests.proxy_harness import ProxyHarness

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    settings = keyword_settings(Path(tempfile.mkdtemp()), server={"max_body_bytes": 20_000, "max_n": 4,
                                                                  "max_messages": 20},
                                client_keys=[{"sha256": hash_key("fuzz-key"), "tenant": "fuzz"}])
    harness = ProxyHarness(settings, FuzzUpstream()).start()
    try:
        return fuzz_api(harness.base_url, {"Authorization": "Bearer fuzz-key"}, max_examples=examples)
    finally:
        harness.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="per property test")
    parser.add_argument("--relay-examples", type=int, default=500)
    parser.add_argument("--schema-examples", type=int, default=1000, help="per generation mode")
    parser.add_argument("--out", default="bench/results/fuzz.json")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "GS_FUZZ_EXAMPLES": str(args.examples), "GS_SCHEMA_EXAMPLES": str(args.schema_examples),
           "GS_FUZZ_RELAY_EXAMPLES": str(args.relay_examples)}
    started = time.monotonic()
    junit = Path(tempfile.mkdtemp()) / "fuzz.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "3600",
                          f"--junitxml={junit}", "tests/test_fuzz.py"], cwd=root, env=env,
                         capture_output=True, text=True)
    tests_s = time.monotonic() - started
    print(run.stdout[-3000:])
    started = time.monotonic()
    counts = schema_fuzz_counts(args.schema_examples)
    schema_s = time.monotonic() - started
    by_status: dict[str, int] = {}
    for key, n in counts.items():
        status = key.rsplit(" ", 1)[1]
        by_status[status] = by_status.get(status, 0) + n
    results: dict[str, Any] = {
        "benchmark": "fuzz", "ts": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "property_tests": {"examples_each": args.examples, "relay_examples": args.relay_examples,
                           "schema_examples_per_mode": args.schema_examples, "exit_code": run.returncode,
                           "summary": run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "",
                           "seconds": round(tests_s, 1)},
        "schema_fuzz": {"requests": sum(counts.values()), "by_status": by_status, "by_case": counts,
                        "failures": 0, "seconds": round(schema_s, 1)},
    }
    out = root / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "schema_fuzz"} |
                     {"schema_fuzz": {k: v for k, v in results["schema_fuzz"].items() if k != "by_case"}}, indent=2))
    print(f"results: {out}")
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
