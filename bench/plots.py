"""PNG figures for docs/benchmarks.md (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _bars(path: Path, title: str, ylabel: str, labels: list[str], series: dict[str, list[float | None]],
          log: bool = False, lines: tuple[float, ...] = ()) -> Path:
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 4.2), dpi=110)
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        ys = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, ys, width, label=name)
        for bar, v in zip(bars, values):
            if v is not None:
                ax.annotate(f"{v:,.0f}" if v >= 100 else f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, v),
                            ha="center", va="bottom", fontsize=6, rotation=90, xytext=(0, 2),
                            textcoords="offset points")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    for y in lines:
        ax.axhline(y, color="grey", linestyle="--", linewidth=0.8)
    ax.margins(y=0.18)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _value(points: dict[tuple[str, int], dict[str, Any]], row: str, c: int, *keys: str) -> float | None:
    point = points.get((row, c))
    value: Any = point
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def make_plots(img_dir: Path, plain_rows: list[str], stream_rows: list[str], concurrency: list[int],
               stream_concurrency: list[int], points: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Path]:
    """Throughput, latency, CPU per request and time to first token; returns name -> file."""
    img_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    if plain_rows:
        out["rps"] = _bars(img_dir / "bench_rps.png", "Requests/s by concurrency (non-streamed)", "requests/s",
                           plain_rows, {f"c={c}": [_value(points, r, c, "rps") for r in plain_rows]
                                        for c in concurrency})
        out["latency"] = _bars(img_dir / "bench_latency.png", "Latency p50 by concurrency (non-streamed, log scale)",
                               "ms", plain_rows,
                               {f"c={c}": [_value(points, r, c, "latency_ms", "p50") for r in plain_rows]
                                for c in concurrency}, log=True)
        if any((r, c) in points for r in ("passthrough",) for c in concurrency):
            def ratio(row: str, c: int) -> float | None:
                a, b = _value(points, row, c, "rps"), _value(points, "passthrough", c, "rps")
                return a / b if a is not None and b else None

            out["ratio"] = _bars(img_dir / "bench_ratio.png", "Requests/s relative to the minimal aiohttp "
                                 "pass-through, same run (dashed: 1.0 and 0.8)", "× pass-through", plain_rows,
                                 {f"c={c}": [ratio(r, c) for r in plain_rows] for c in concurrency},
                                 lines=(1.0, 0.8))
        out["cpu"] = _bars(img_dir / "bench_cpu.png", "Proxy CPU seconds per 1,000 requests (non-streamed)",
                           "CPU s / 1k requests", plain_rows,
                           {f"c={c}": [_value(points, r, c, "cpu_per_1k") for r in plain_rows] for c in concurrency})
    if stream_rows:
        out["ttft"] = _bars(img_dir / "bench_ttft.png", "Time to first content token, p50 (streamed, log scale)",
                            "ms", stream_rows,
                            {f"c={c}": [_value(points, r, c, "ttft_ms", "p50") for r in stream_rows]
                             for c in stream_concurrency}, log=True)
    return out
