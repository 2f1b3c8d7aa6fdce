"""Runs the benchmark plan: one shared upstream, each row started in turn, each point loaded and measured."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import drivers, machine
from bench.load import LoadSpec
from bench.procs import NotReady, ProcGroup, free_port, wait_ready
from bench.targets import BENCH_KEY, LITELLM_VENV, REPO, Env, Placement, Row, Running, Skip, available_stream_modes, launch, rows


@dataclass
class Options:
    """Everything that shapes a run; recorded in the report."""

    quick: bool = False
    only: list[str] | None = None
    duration_s: float = 5.0
    warmup_s: float = 1.0
    rounds: int = 2  # windows per point, far apart in time; the one with the higher throughput is kept
    concurrency: tuple[int, ...] = (1, 32, 128)
    stream_concurrency: tuple[int, ...] = (1, 32)
    answer_bytes: int = 1024
    prompt_bytes: int = 256
    chunks: int = 32
    chunk_delay_ms: float = 2.0
    driver: str = "auto"  # auto (wrk when installed) | wrk | asyncio
    log_level: str = "warning"
    profile: bool = True
    profile_s: float = 10.0
    profile_row: str = "guardstream-rules"
    command: str = "python -m bench"

    def plain_driver(self) -> str:
        if self.driver == "auto":
            return "wrk" if drivers.wrk_available() else "asyncio"
        return self.driver


@dataclass
class SuiteResult:
    options: dict[str, Any]
    machine: dict[str, Any]
    placement: dict[str, Any]
    upstream: dict[str, Any]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    started: str = ""
    finished: str = ""


def select_rows(all_rows: list[Row], only: list[str] | None) -> list[Row]:
    """Rows whose key matches any pattern of `only` (shell-style, e.g. 'guardstream-*'), in suite order."""
    if not only:
        return all_rows
    unknown = [p for p in only if not any(fnmatch.fnmatch(r.key, p) for r in all_rows)]
    if unknown:
        keys = ", ".join(r.key for r in all_rows)
        raise SystemExit(f"--only: no row matches {', '.join(unknown)} (rows: {keys})")
    return [r for r in all_rows if any(fnmatch.fnmatch(r.key, p) for p in only)]


def _start_upstream(opts: Options, placement: Placement, workdir: Path) -> tuple[ProcGroup, str, list[str]]:
    port, group = free_port(), ProcGroup()
    argv = [sys.executable, "-m", "bench.upstream", "--port", str(port), "--answer-bytes", str(opts.answer_bytes),
            "--chunks", str(opts.chunks), "--chunk-delay-ms", str(opts.chunk_delay_ms)]
    proc = group.start("upstream", argv, workdir, cpus=placement.client, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/v1/chat/completions", {"model": "demo-model", "messages": [{"role": "user", "content": "hi"}]},
               {}, [proc], 30)
    return group, url, proc.argv


def _start_redis(placement: Placement, workdir: Path, group: ProcGroup) -> str | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    proc = group.start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(workdir)], workdir, cpus=placement.client)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if ping.stdout.strip() == "PONG":
            return f"redis://127.0.0.1:{port}/0"
        if not proc.alive():
            return None
        time.sleep(0.1)
    return None


def plan(opts: Options) -> list[Row]:
    return select_rows(rows(available_stream_modes()), opts.only)


def run_suite(opts: Options, console: Console | None = None) -> SuiteResult:
    console = console or Console(stderr=True)
    placement = Placement.detect()
    selected = plan(opts)
    workdir = Path(tempfile.mkdtemp(prefix="guardstream-bench-"))
    result = SuiteResult(options=asdict(opts), machine=machine.describe(REPO, LITELLM_VENV),
                         placement=asdict(placement), upstream={}, started=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    result.options["plain_driver"] = opts.plain_driver()
    result.options["stream_modes"] = list(available_stream_modes())
    services = ProcGroup()
    upstream_group, upstream_url, upstream_argv = _start_upstream(opts, placement, workdir)
    result.upstream = {"argv": upstream_argv, "processes": f"1 process, CPU {placement.client or 'unpinned'}"}
    needs_redis = any(r.guard == "cache-redis" for r in selected)
    redis_url = _start_redis(placement, workdir, services) if needs_redis else None
    env = Env(workdir=workdir, upstream_url=upstream_url, placement=placement, log_level=opts.log_level,
              redis_url=redis_url)
    rounds = max(1, opts.rounds)
    phases = [([r for r in selected if not r.stream], opts.concurrency),
              ([r for r in selected if r.stream], opts.stream_concurrency)]
    total = sum(len(group) * len(concs) for group, concs in phases) * rounds
    try:
        with Progress(TextColumn("{task.description:<48}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            task = progress.add_task("starting", total=total)
            for group, concs in phases:
                running = _start_rows(group, env, result, progress, task, console)
                try:
                    for concurrency in concs:
                        result.points.extend(_measure_rounds(group, running, concurrency, rounds, opts, env,
                                                             upstream_group, progress, task))
                finally:
                    for started in running.values():
                        started.group.stop()
            if opts.profile:
                progress.update(task, description=f"profiling {opts.profile_row}")
                from bench.profiling import profile_guardstream

                profiled = next(r for r in rows(available_stream_modes()) if r.key == opts.profile_row)
                result.profile = profile_guardstream(env, opts, profiled)
    finally:
        services.stop()
        upstream_group.stop()
    result.machine["load_after"] = machine.load_average()
    result.finished = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    result.options["workdir"] = str(workdir)
    return result


def _start_rows(group: list[Row], env: Env, result: SuiteResult, progress: Progress, task: Any,
                console: Console) -> dict[str, Running]:
    """Start every row of a phase, each paused (SIGSTOP) once ready; skips and failures go in the report."""
    running: dict[str, Running] = {}
    for row in group:
        progress.update(task, description=f"{row.key}: starting")
        info: dict[str, Any] = {"label": row.label, "system": row.system, "stream": row.stream,
                                "stream_mode": row.stream_mode, "guard": row.guard}
        result.rows[row.key] = info
        try:
            started = launch(row, env)
        except Skip as exc:
            info["skipped"] = str(exc)
            continue
        except NotReady as exc:
            info["error"] = str(exc)[-2000:]
            console.print(f"[red]{row.key} did not start:[/red] {str(exc)[:500]}")
            continue
        info.update(processes=started.processes, commands=started.commands, notes=started.notes,
                    config=started.config)
        started.group.pause()
        running[row.key] = started
    return running


def _measure_rounds(group: list[Row], running: dict[str, Running], concurrency: int, rounds: int, opts: Options,
                    env: Env, upstream: ProcGroup, progress: Progress, task: Any) -> list[dict[str, Any]]:
    """`rounds` passes over the rows at one concurrency; per row, the window with the higher throughput."""
    windows: dict[str, list[dict[str, Any]]] = {}
    for n in range(rounds):
        for row in group:
            started = running.get(row.key)
            if started is not None:
                progress.update(task, description=f"{row.key} @ {concurrency} (window {n + 1}/{rounds})")
                started.group.resume()
                try:
                    windows.setdefault(row.key, []).append(measure(row, started, concurrency, opts, env, upstream))
                finally:
                    started.group.pause()
            progress.advance(task)
    points = []
    for measured in windows.values():
        best = dict(max(measured, key=lambda p: p["rps"]))
        best["windows"] = [{"rps": p["rps"], "latency_ms": p["latency_ms"], "ttft_ms": p["ttft_ms"],
                            "cpu_per_1k": p["cpu_per_1k"], "errors": p["errors"]} for p in measured]
        best["errors"] = sum(p["errors"] for p in measured)
        points.append(best)
    return points


def measure(row: Row, running: Running, concurrency: int, opts: Options, env: Env,
            upstream: ProcGroup) -> dict[str, Any]:
    """Warm up, then one recorded run, with the CPU time of the proxy and upstream processes around it."""
    driver = "asyncio" if row.stream else opts.plain_driver()
    spec = LoadSpec(url=running.url, concurrency=concurrency, duration_s=opts.duration_s, stream=row.stream,
                    unique=row.unique, api_key=running.api_key, prompt_bytes=opts.prompt_bytes)
    drivers.warm_up(spec, driver, env.placement.client, env.workdir, opts.warmup_s)
    proxy_before, upstream_before = running.group.cpu_seconds(), upstream.cpu_seconds()
    point = drivers.run_point(spec, driver, env.placement.client, env.workdir)
    proxy_cpu, upstream_cpu = running.group.cpu_seconds() - proxy_before, upstream.cpu_seconds() - upstream_before
    if row.system == "direct":
        proxy_cpu = upstream_cpu  # no proxy: report what the upstream itself costs
    done = point["requests"] or 1
    if not point["requests"]:  # nothing completed in the window: no latency to speak of
        point["latency_ms"] = {k: None for k in point["latency_ms"]}
    client_cpus = len(env.placement.client.split(",")) if env.placement.client else 1
    point.update(
        row=row.key, concurrency=concurrency, stream=row.stream, stream_mode=row.stream_mode,
        proxy_cpu_s=proxy_cpu, cpu_per_1k=proxy_cpu / done * 1000, upstream_cpu_s=upstream_cpu,
        client_busy=(upstream_cpu + point["client_cpu_s"]) / max(point["wall_s"], 1e-9) / client_cpus,
    )
    point["argv"] = [a if a != BENCH_KEY else "$BENCH_KEY" for a in point["argv"]]
    return point
