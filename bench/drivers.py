"""Load drivers: Debian's `wrk` (C, with a Lua body script) and the asyncio generator (`bench.load`).

Both run as their own process, pinned to the client-side CPUs, and return the
same summary dict as `bench.load.summarise`. wrk drives the non-streamed
points (it costs the shared client core ~16 us per request against ~120 us
for an aiohttp client); the asyncio generator drives the streamed points,
where it reads every SSE line to time the first content token, and stands in
for wrk where wrk is not installed.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.load import BodyMaker, LoadSpec
from bench.procs import pinned

WRK_MARK = "WRKJSON "


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(raw: bytes) -> str:
    """A Lua long-bracket literal that cannot be closed by the content."""
    text = raw.decode()
    level = 1
    while ("]" + "=" * level + "]") in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def wrk_script(spec: LoadSpec) -> str:
    """The Lua script: method, headers, body (a counter spliced in per request when `unique`), JSON summary."""
    maker = BodyMaker(spec)
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    if spec.api_key:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {spec.api_key}"')
    if spec.unique:
        lines += [f"local head = {_lua_string(maker.head)}", f"local tail = {_lua_string(maker.tail)}",
                  "local counter = 0",
                  "request = function()",
                  "  counter = counter + 1",
                  "  return wrk.format(nil, nil, nil, head .. counter .. tail)",
                  "end"]
    else:
        lines.append(f"wrk.body = {_lua_string(maker.fixed)}")
    lines += [
        "done = function(summary, latency, requests)",
        "  local e = summary.errors",
        f'  io.write(string.format("{WRK_MARK}{{\\"requests\\":%d,\\"duration_us\\":%d,\\"connect\\":%d,'
        '\\"read\\":%d,\\"write\\":%d,\\"status\\":%d,\\"timeout\\":%d,\\"p50\\":%d,\\"p90\\":%d,\\"p99\\":%d,'
        '\\"mean\\":%.3f,\\"max\\":%d}\\n", summary.requests, summary.duration, e.connect, e.read, e.write, '
        "e.status, e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), "
        "latency.mean, latency.max))",
        "end",
    ]
    return "\n".join(lines) + "\n"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(spec: LoadSpec, cpus: str | None, workdir: Path) -> dict[str, Any]:
    """One wrk invocation of `spec.duration_s` seconds (no warm-up: the suite runs that separately)."""
    script = workdir / "wrk_body.lua"
    script.write_text(wrk_script(spec))
    argv = pinned(["wrk", "-t1", f"-c{spec.concurrency}", f"-d{max(1, round(spec.duration_s))}s",
                   f"--timeout={int(spec.timeout_s)}s", "-s", str(script), spec.url], cpus)
    cpu_before = _children_cpu()
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=spec.duration_s + spec.timeout_s + 30)
    wall = time.monotonic() - started
    client_cpu = _children_cpu() - cpu_before
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(WRK_MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    raw = json.loads(line[len(WRK_MARK):])
    duration = raw["duration_us"] / 1e6
    errors = {k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]}
    ms = {k: raw[k] / 1000 for k in ("p50", "p90", "p99", "mean", "max")}
    return {
        "driver": "wrk",
        "spec": asdict(spec) | {"api_key": "***" if spec.api_key else None},
        "requests": raw["requests"],
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "rps": raw["requests"] / duration if duration else 0.0,
        "latency_ms": ms,
        "ttft_ms": None,
        "client_cpu_s": client_cpu,
        "wall_s": wall,
        "argv": argv,
    }


def run_asyncio(spec: LoadSpec, cpus: str | None, workdir: Path) -> dict[str, Any]:
    """One `python -m bench.load` invocation, recording from its start (warm-up: a separate call)."""
    argv = [sys.executable, "-m", "bench.load", "--url", spec.url, "--concurrency", str(spec.concurrency),
            "--duration", str(spec.duration_s), "--warmup", "0", "--prompt-bytes", str(spec.prompt_bytes),
            "--model", spec.model]
    if spec.stream:
        argv.append("--stream")
    if spec.unique:
        argv.append("--unique")
    shown = list(argv)
    if spec.api_key:
        argv += ["--api-key", spec.api_key]
        shown += ["--api-key", "$BENCH_KEY"]
    argv = pinned(argv, cpus)
    cpu_before = _children_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=spec.duration_s + spec.timeout_s + 30,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"bench.load failed ({done.returncode}): {done.stderr[-1500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # the child's own number covers the recorded window only; use the whole process (import included) for
    # the client-core check only when it reports nothing
    result["client_cpu_s"] = result.get("client_cpu_s") or (_children_cpu() - cpu_before)
    result["driver"] = "asyncio"
    result["argv"] = pinned(shown, cpus)
    return result


def run_point(spec: LoadSpec, driver: str, cpus: str | None, workdir: Path) -> dict[str, Any]:
    if driver == "wrk":
        return run_wrk(spec, cpus, workdir)
    return run_asyncio(spec, cpus, workdir)


def warm_up(spec: LoadSpec, driver: str, cpus: str | None, workdir: Path, seconds: float) -> None:
    """Load the target for `seconds` and throw the numbers away."""
    if seconds > 0:
        run_point(replace(spec, duration_s=seconds), driver, cpus, workdir)
