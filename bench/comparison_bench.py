"""Benchmark: what comparing a candidate model on shadow traffic costs the client.

    python -m bench.comparison_bench [--quick] [--rounds 2] [--out bench/results/comparison.json]

One policy (the built-in PII and secret rules on both stages) is served by `guardstream serve` five ways: with
no `compare:` at all (the baseline), and with a candidate compared on a share of 0, 0.1 and 1.0 of the requests
(`max_inflight` 64, so at 1.0 nearly every request is compared). The upstream and the candidate are
`bench.upstream` processes (the candidate answers after `--candidate-delay-ms`, like a model); the judge is a
reward model behind a vLLM-shaped pooling server (tests/fake_vllm_pooling.py, in its own process). Each
configuration gets a fresh proxy and `bench.load` (its own process) sends distinct prompts (no verdict cache
hits) at a fixed concurrency. Requests/s, latency and the proxy's CPU time per request are reported with their
ratio to the baseline measured in the same round; configurations are interleaved over `--rounds` and the
median per configuration is kept. On a shared machine req/s drifts with the neighbours' load; CPU per request
much less.
Comparisons done and skipped are read from the proxy's /metrics after each run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.procs import ProcGroup, free_port, wait_ready

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-client-key-0001"
CONFIGS: tuple[tuple[str, float | None], ...] = (("no compare", None), ("sample 0", 0.0), ("sample 0.1", 0.1),
                                                 ("sample 1.0", 1.0))


def serve_reward(port: int) -> None:
    """The judge's reward model server (a vLLM pooling API look-alike), run as its own process."""
    from aiohttp import web

    from bench._loop import install_uvloop
    from tests.fake_vllm_pooling import FakeVLLMPooling

    install_uvloop()
    web.run_app(FakeVLLMPooling().app(), host="127.0.0.1", port=port, access_log=None, print=None)


def config(port: int, upstream: str, candidate: str, reward: str, sample: float | None, workdir: Path
           ) -> dict[str, Any]:
    policy: dict[str, Any] = {"input": {"evaluators": ["pii", "secrets"]},
                              "output": {"evaluators": ["pii", "secrets"]},
                              "actions": {"pii": "flag", "default": "block"}}
    evaluators: dict[str, Any] = {"pii": {"type": "pii"}, "secrets": {"type": "secrets"}}
    if sample is not None:
        evaluators["rm"] = {"type": "reward_model", "timeout_ms": 5000,
                            "options": {"backend": "vllm", "url": reward, "model": "rm"}}
        policy["compare"] = {"name": "bench-candidate", "candidate": {"url": candidate, "model": "cand"},
                             "sample": sample, "max_inflight": 64, "judge": {"reward_model": "rm"}}
    return {"server": {"host": "127.0.0.1", "port": port}, "upstream": {"url": upstream},
            "client_keys": [{"sha256": hashlib.sha256(KEY.encode()).hexdigest()}],
            "evaluators": evaluators, "policies": {"default": policy},
            "audit": {"jsonl_path": str(workdir / f"audit-{port}.jsonl"), "content": "hash"},
            "logging": {"level": "warning"}}


def comparison_counts(metrics_url: str) -> dict[str, float]:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    out: dict[str, float] = {}
    for result, value in re.findall(r'guardstream_comparison_runs_total\{[^}]*result="([a-z_]+)"[^}]*\} ([0-9.e+]+)',
                                    text):
        out[result] = out.get(result, 0.0) + float(value)
    return out


def run_one(name: str, sample: float | None, env: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    port, group, workdir = free_port(), ProcGroup(), env["workdir"]
    path = workdir / f"proxy-{port}.yaml"
    path.write_text(yaml.safe_dump(config(port, env["upstream"], env["candidate"], env["reward"], sample, workdir)))
    proxy = group.start(f"proxy-{port}", [sys.executable, "-m", "proxy.cli", "serve", "--config", str(path)],
                        workdir, cwd=REPO)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        wait_ready(url, {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                   {"authorization": f"Bearer {KEY}"}, group.procs)
        cpu_before = proxy.cpu_seconds()
        load = subprocess.run([sys.executable, "-m", "bench.load", "--url", url, "--concurrency",
                               str(args.concurrency), "--duration", str(args.duration), "--warmup", str(args.warmup),
                               "--unique", "--api-key", KEY], capture_output=True, text=True, cwd=REPO, check=True)
        result = json.loads(load.stdout)
        time.sleep(0.5)  # comparisons still running finish (they are not the client's)
        # the proxy's CPU per request (load-independent, unlike req/s on a shared machine); the warm-up's requests
        # are estimated at the recorded rate
        served = result["requests"] * (args.duration + args.warmup) / args.duration
        cpu_ms = (proxy.cpu_seconds() - cpu_before) * 1000 / max(served, 1)
        counts = comparison_counts(f"http://127.0.0.1:{port}/metrics") if sample is not None else {}
    finally:
        group.stop()
    return {"config": name, "sample": sample, "rps": result["rps"], "latency_ms": result["latency_ms"],
            "errors": result["errors"], "requests": result["requests"], "comparisons": counts,
            "proxy_cpu_ms_per_request": cpu_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.comparison_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, one round (a smoke test)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--candidate-delay-ms", type=float, default=50.0, help="the candidate's time to answer")
    parser.add_argument("--serve-reward", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/comparison.json")
    args = parser.parse_args(argv)
    if args.serve_reward is not None:
        serve_reward(args.serve_reward)
        return 0
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3.0, 1.0
    workdir = Path(tempfile.mkdtemp(prefix="comparison-bench-"))
    servers = ProcGroup()
    ports = {k: free_port() for k in ("upstream", "candidate", "reward")}
    servers.start("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(ports["upstream"])], workdir,
                  cwd=REPO)
    servers.start("candidate", [sys.executable, "-m", "bench.upstream", "--port", str(ports["candidate"]),
                                "--delay-ms", str(args.candidate_delay_ms)], workdir, cwd=REPO)
    servers.start("reward", [sys.executable, "-m", "bench.comparison_bench", "--serve-reward",
                             str(ports["reward"])], workdir, cwd=REPO)
    env = {"workdir": workdir, **{k: f"http://127.0.0.1:{p}" for k, p in ports.items()}}
    time.sleep(2.0)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in CONFIGS}
    try:
        for round_no in range(args.rounds):
            for name, sample in CONFIGS:
                runs[name].append(run_one(name, sample, env, args))
                print(f"round {round_no + 1} {name}: {runs[name][-1]['rps']:.0f} req/s", flush=True)
    finally:
        servers.stop()
    report = summarise(runs, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    return 0


def summarise(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    """Per configuration: medians over the rounds, and the median of each round's ratio to that round's baseline
    (the machine's load drifts between rounds; a ratio within one round is the fairer comparison)."""
    base = runs[CONFIGS[0][0]]
    rows = []
    for name, sample in CONFIGS:
        rs = runs[name]
        counts: dict[str, float] = {}
        for r in rs:
            for k, v in r["comparisons"].items():
                counts[k] = counts.get(k, 0.0) + v
        rows.append({
            "config": name, "sample": sample,
            "rps": statistics.median(r["rps"] for r in rs),
            "rps_ratio": statistics.median(r["rps"] / b["rps"] for r, b in zip(rs, base)),
            "p50_ms": statistics.median(r["latency_ms"]["p50"] for r in rs),
            "p50_added_ms": _median_added(rs, base, "p50"),
            "p99_ms": statistics.median(r["latency_ms"]["p99"] for r in rs),
            "p99_added_ms": _median_added(rs, base, "p99"),
            "cpu_ms": statistics.median(r["proxy_cpu_ms_per_request"] for r in rs),
            "cpu_ratio": statistics.median(r["proxy_cpu_ms_per_request"] / b["proxy_cpu_ms_per_request"]
                                           for r, b in zip(rs, base)),
            "errors": sum(r["errors"] for r in rs), "comparisons": counts, "runs": rs})
    return {"created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "load_average_at_end": os.getloadavg()},
            "settings": {k: getattr(args, k) for k in ("rounds", "duration", "warmup", "concurrency",
                                                       "candidate_delay_ms")},
            "rows": rows}


def _median_added(rs: list[dict[str, Any]], base: list[dict[str, Any]], q: str) -> float:
    return statistics.median(r["latency_ms"][q] - b["latency_ms"][q] for r, b in zip(rs, base))


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Shadow comparison: the client's requests/s and latency (medians over rounds; ratios and "
                        "added latency against the same round's run without compare:)")
    for col in ("config", "req/s", "vs no compare", "p50 ms", "p50 added", "p99 ms", "p99 added",
                "proxy CPU ms/req", "CPU vs no compare", "compared", "skipped busy", "errors"):
        table.add_column(col, justify="left" if col == "config" else "right")
    for r in report["rows"]:
        c = r["comparisons"]
        table.add_row(r["config"], f"{r['rps']:.0f}", f"{r['rps_ratio']:.2f}x", f"{r['p50_ms']:.1f}",
                      f"{r['p50_added_ms']:+.1f}", f"{r['p99_ms']:.1f}", f"{r['p99_added_ms']:+.1f}",
                      f"{r['cpu_ms']:.2f}", f"{r['cpu_ratio']:.2f}x",
                      f"{c.get('compared', 0):.0f}", f"{c.get('skipped_busy', 0):.0f}", str(r["errors"]))
    Console().print(table)


if __name__ == "__main__":
    raise SystemExit(main())
