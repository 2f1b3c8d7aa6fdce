"""Llama Guard on the transformers backend, CPU, tiny model: evaluations/s and latency by batch size.

    python -m bench.llama_guard_bench                 # rich table, JSON, docs/llama_guard.md section, PNG
    python -m bench.llama_guard_bench --seconds 1 --repeat 1 --sizes 1 4 16 --no-write
    python -m bench.llama_guard_bench --torch-threads 1  # on a shared / oversubscribed CPU

Two measurements per batch size B:
- `forward`: the backend's batched first-token pass called directly on B prompts
  (what one micro-batch costs: tokenise, left-pad, one forward, top-k);
- `evaluator`: 2*B concurrent callers, each awaiting `evaluate([item])` in a loop, with
  `max_batch_size=B`, `max_wait_ms=2`: the MicroBatcher groups them into shared forward
  passes. One item in four is unsafe and pays the extra greedy decode of its categories.
The model is the tiny programmed Llama of tests/tiny_models.py (hidden 32, 2 layers, a
~630-token vocabulary): the numbers measure guardstream's work around a model (prompt
rendering, tokenising, padding, batching, scoring, parsing), not a real Llama Guard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.markers import replace_marked_section

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "llama_guard.md"
PNG = ROOT / "docs" / "img" / "llama_guard_bench.png"
START, END = "<!-- bench:llama_guard:start -->", "<!-- bench:llama_guard:end -->"

WORDS = ("please explain how the city water system works and why the river floods every spring while the old "
         "bridge still stands after many years of heavy traffic and storms").split()


def items(n: int = 64) -> list[Any]:
    """A fixed mix: 10-80 word prompts and answers, a third of them 3-turn conversations, a quarter unsafe."""
    from evaluators.base import EvalItem, Turn

    out = []
    for i in range(n):
        text = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(10 + (i * 13) % 70))
        if i % 4 == 0:
            text += " and how to build a bomb"
        if i % 3 == 0:
            out.append(EvalItem(turns=(Turn("user", "hello"), Turn("assistant", "Hi, how can I help?"),
                                       Turn("user", text)), stage="input"))
        else:
            out.append(EvalItem.of_text(text, "input" if i % 2 else "output"))
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def bench_forward(ev: Any, prompts: list[str], size: int, seconds: float) -> dict[str, float]:
    """Direct batched first-token passes of `size` prompts, in the backend's worker thread."""
    backend = ev.backend
    lat: list[float] = []
    done = i = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(lat) < 3:
        batch = [prompts[(i + k) % len(prompts)] for k in range(size)]
        i += size
        t = time.perf_counter()
        backend._executor.submit(backend._first_tokens, batch).result()
        lat.append((time.perf_counter() - t) * 1000)
        done += size
    wall = time.perf_counter() - start
    return {"evals_per_s": done / wall, "batch_p50_ms": pct(lat, 50), "batch_p95_ms": pct(lat, 95)}


async def bench_evaluator(ev: Any, work: list[Any], size: int, seconds: float) -> dict[str, float]:
    """2*size concurrent callers of evaluate([item]) through the micro-batcher."""
    backend = ev.backend
    backend.first_token_batcher.max_batch_size = size
    backend._decode_batcher.max_batch_size = size
    backend.first_token_batcher.batch_sizes.clear()
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    calls = 0

    async def client(offset: int) -> None:
        nonlocal calls
        k = offset
        while time.perf_counter() < stop:
            item = work[k % len(work)]
            k += 7
            t = time.perf_counter()
            await ev.evaluate([item])
            lat.append((time.perf_counter() - t) * 1000)
            calls += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(2 * size)))
    wall = time.perf_counter() - start
    sizes = backend.first_token_batcher.batch_sizes
    return {"evals_per_s": calls / wall, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99),
            "mean_batch": statistics.fmean(sizes) if sizes else 0.0, "calls": calls}


def machine() -> dict[str, Any]:
    import torch
    import transformers

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, IndexError, ValueError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "os": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(), "load_before": round(os.getloadavg()[0], 2)}


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The repetition with the median throughput (the machine is shared: single runs are noisy)."""
    return sorted(runs, key=lambda r: r["evals_per_s"])[len(runs) // 2]


def run(sizes: list[int], seconds: float, torch_threads: int | None = None, repeat: int = 3) -> dict[str, Any]:
    from rich.progress import Progress

    from evaluators.llama_guard import LlamaGuardEvaluator
    from tests.tiny_models import build_llama_guard_model, build_tokenizer

    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    info = machine()
    work = items()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = build_llama_guard_model(Path(tmp) / "guard", build_tokenizer())
        ev = LlamaGuardEvaluator("bench", {"backend": "transformers", "model": str(path), "device": "cpu",
                                           "batch": {"max_batch_size": max(sizes), "max_wait_ms": 2}})
        prompts = [ev.cache_context(it) for it in work]
        tokens = [len(ev.tokenizer.encode(p, add_special_tokens=False)) for p in prompts]
        info["prompt_tokens_mean"] = round(statistics.fmean(tokens))
        with Progress() as progress:
            task = progress.add_task("llama guard bench", total=2 * len(sizes) * repeat)
            for size in sizes:
                fwd, evs = [], []
                for _ in range(repeat):
                    fwd.append(bench_forward(ev, prompts, size, seconds))
                    progress.advance(task)
                    evs.append(asyncio.run(bench_evaluator(ev, work, size, seconds)))
                    progress.advance(task)
                rows.append({"batch": size, "forward": _median_run(fwd), "evaluator": _median_run(evs)})
        asyncio.run(ev.aclose())
    info["load_after"] = round(os.getloadavg()[0], 2)
    return {"machine": info, "seconds": seconds, "repeat": repeat, "rows": rows}


def table_md(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}; Python {m['python']}, "
        f"torch {m['torch']} ({m['torch_threads']} intra-op thread{'s' if m['torch_threads'] != 1 else ''}), "
        f"transformers {m['transformers']}. "
        f"Load average {m['load_before']} before the run and {m['load_after']} after (a shared machine: other jobs "
        f"were running). Tiny model (hidden 32, 2 layers), prompts of {m['prompt_tokens_mean']} tokens on average. "
        f"Each cell: the median of {result['repeat']} runs of {result['seconds']:g} s.",
        "",
        "| max batch | forward evals/s | forward batch p50 ms | forward batch p95 ms | evaluator evals/s | "
        "evaluator p50 ms | evaluator p95 ms | evaluator p99 ms | mean batch formed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        f, e = r["forward"], r["evaluator"]
        lines.append(f"| {r['batch']} | {f['evals_per_s']:.0f} | {f['batch_p50_ms']:.1f} | {f['batch_p95_ms']:.1f} | "
                     f"{e['evals_per_s']:.0f} | {e['p50_ms']:.1f} | {e['p95_ms']:.1f} | {e['p99_ms']:.1f} | "
                     f"{e['mean_batch']:.1f} |")
    return "\n".join(lines)


def show(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Llama Guard, transformers backend, CPU, tiny model")
    for col in ("max batch", "fwd evals/s", "fwd p50 ms", "fwd p95 ms", "eval evals/s", "eval p50 ms",
                "eval p95 ms", "eval p99 ms", "mean batch"):
        t.add_column(col, justify="right")
    for r in result["rows"]:
        f, e = r["forward"], r["evaluator"]
        t.add_row(str(r["batch"]), f"{f['evals_per_s']:.0f}", f"{f['batch_p50_ms']:.1f}", f"{f['batch_p95_ms']:.1f}",
                  f"{e['evals_per_s']:.0f}", f"{e['p50_ms']:.1f}", f"{e['p95_ms']:.1f}", f"{e['p99_ms']:.1f}",
                  f"{e['mean_batch']:.1f}")
    Console().print(t)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["batch"] for r in result["rows"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(sizes, [r["forward"]["evals_per_s"] for r in result["rows"]], "o-", label="forward pass only")
    a.plot(sizes, [r["evaluator"]["evals_per_s"] for r in result["rows"]], "s-", label="evaluator, concurrent")
    a.set(xscale="log", xlabel="max batch size", ylabel="evaluations / s", title="Throughput")
    b.plot(sizes, [r["evaluator"]["p50_ms"] for r in result["rows"]], "o-", label="p50")
    b.plot(sizes, [r["evaluator"]["p95_ms"] for r in result["rows"]], "s-", label="p95")
    b.set(xscale="log", xlabel="max batch size", ylabel="ms per evaluate() call", title="Evaluator latency")
    for ax in (a, b):
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Llama Guard, transformers backend on CPU (tiny model)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def write_doc(result: dict[str, Any]) -> None:
    """Replace the benchmark section of docs/llama_guard.md (between the markers)."""
    replace_marked_section(DOC, START, END, f"{table_md(result)}\n\n![throughput and latency](img/{PNG.name})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    result = run(args.sizes, args.seconds, args.torch_threads, args.repeat)
    show(result)
    print(json.dumps(result, indent=1))
    if not args.no_write:
        plot(result, PNG)
        write_doc(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
