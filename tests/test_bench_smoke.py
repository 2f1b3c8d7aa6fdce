"""The benchmark suite's machinery, end to end in --quick mode: processes, load, CPU accounting, report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="CPU accounting reads Linux /proc")
def test_quick_suite_writes_a_report_with_sane_numbers(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    cmd = [sys.executable, "-m", "bench", "--quick", "--only", "direct,guardstream-rules,stream-guardstream-final",
           "--concurrency", "1,4", "--duration", "1", "--warmup", "0", "--no-profile", "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]

    data = json.loads(out.with_suffix(".json").read_text())
    assert set(data["rows"]) == {"direct", "guardstream-rules", "stream-guardstream-final"}
    assert all(not row.get("error") and not row.get("skipped") for row in data["rows"].values()), data["rows"]
    points = {(p["row"], p["concurrency"]): p for p in data["points"]}
    for key in [("direct", 1), ("direct", 4), ("guardstream-rules", 1), ("guardstream-rules", 4)]:
        point = points[key]
        assert point["errors"] == 0, point["error_kinds"]
        assert point["requests"] >= 20 and point["rps"] > 10
        assert 0 < point["latency_ms"]["p50"] <= point["latency_ms"]["p99"] < 2000
        assert 0 < point["cpu_per_1k"] < 100  # CPU seconds per 1,000 requests, read from /proc
    stream = points[("stream-guardstream-final", 1)]
    assert stream["errors"] == 0 and stream["requests"] >= 3
    assert 0 < stream["ttft_ms"]["p50"] < stream["latency_ms"]["p50"]

    report = out.read_text()
    for needle in ("## Targets", "## Machine and software", "| `guardstream-rules` |", "## Streamed requests",
                   "Added p50 latency at concurrency 1", "python -m bench --quick"):
        assert needle in report
    for image in ("bench_rps.png", "bench_latency.png", "bench_cpu.png", "bench_ttft.png"):
        assert (tmp_path / "img" / image).stat().st_size > 2000
