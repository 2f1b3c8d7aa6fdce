"""docs/benchmarks.md from a suite result: targets, machine, method, tables with ratios, figures, profile."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.plots import make_plots
from bench.suite import SuiteResult
from bench.targets import BENCH_KEY

BENCH_KEY_SHA = hashlib.sha256(BENCH_KEY.encode()).hexdigest()

PROFILE_NOTES = Path(__file__).with_name("PROFILE_NOTES.md")
Points = dict[tuple[str, int], dict[str, Any]]


def _n(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _x(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}×"


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


def _get(points: Points, row: str, c: int, *keys: str) -> float | None:
    value: Any = points.get((row, c))
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _sub(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


class Report:
    def __init__(self, result: SuiteResult, out: Path, img_dir: Path) -> None:
        self.r = result
        self.out = out
        self.img_dir = img_dir
        self.points: Points = {(p["row"], p["concurrency"]): p for p in result.points}
        self.plain = [k for k, v in result.rows.items() if not v["stream"]]
        self.streamed = [k for k, v in result.rows.items() if v["stream"]]
        self.conc = list(result.options["concurrency"])
        self.sconc = list(result.options["stream_concurrency"])

    def measured(self, rows: list[str]) -> list[str]:
        return [k for k in rows if any((k, c) in self.points for c in self.conc + self.sconc)]

    # ---------------------------------------------------------------- targets
    def targets(self) -> list[tuple[str, str, str, str]]:
        p, out = self.points, []
        rules_c1, direct_c1 = _get(p, "guardstream-rules", 1, "latency_ms", "p50"), _get(p, "direct", 1, "latency_ms",
                                                                                         "p50")
        added = _sub(rules_c1, direct_c1)
        out.append(("Added p50 latency at concurrency 1, rule evaluators in+out (< 0.5 ms)",
                    f"{_n(added, 3)} ms (guardstream-rules {_n(rules_c1, 3)} ms − direct {_n(direct_c1, 3)} ms)",
                    _verdict(added, lambda v: v < 0.5), ""))
        c = 32 if 32 in self.conc else (self.conc[-1] if self.conc else 0)
        pt = _get(p, "passthrough", c, "rps")
        for row in ("guardstream-rules", "guardstream-none"):
            gs = _get(p, row, c, "rps")
            ratio = _ratio(gs, pt)
            cap = _ratio(_get(p, "passthrough", c, "cpu_per_1k"), _get(p, row, c, "cpu_per_1k"))
            out.append((f"Throughput at concurrency {c}, {row}, vs the minimal aiohttp pass-through (≥ 0.80×)",
                        f"{_n(gs)} req/s vs {_n(pt)} req/s = {_x(ratio)}; by CPU per request (capacity at equal "
                        f"CPU): {_x(cap)}", _verdict(ratio, lambda v: v >= 0.8), ""))
        for gs_row, ll_row in (("guardstream-rules", "litellm-1"), ("guardstream-rules-x2", "litellm-nproc")):
            gs, ll = _get(p, gs_row, c, "rps"), _get(p, ll_row, c, "rps")
            ratio = _ratio(gs, ll)
            cap = _ratio(_get(p, ll_row, c, "cpu_per_1k"), _get(p, gs_row, c, "cpu_per_1k"))
            out.append((f"Throughput at concurrency {c}, {gs_row} vs {ll_row} (≥ 5×)",
                        f"{_n(gs)} req/s vs {_n(ll)} req/s = {_x(ratio)}; by CPU per request: {_x(cap)}",
                        _verdict(ratio, lambda v: v >= 5), ""))
        for mode in ("optimistic", "buffered", "final", "off"):
            row = f"stream-guardstream-{mode}"
            t, d = _get(p, row, 1, "ttft_ms", "p50"), _get(p, "stream-direct", 1, "ttft_ms", "p50")
            added = _sub(t, d)
            target = " (< 1 ms)" if mode == "optimistic" else ""
            out.append((f"Added time to first token at concurrency 1, stream mode {mode}{target}",
                        f"{_n(added, 3)} ms ({_n(t, 3)} ms − direct {_n(d, 3)} ms)" if added is not None else
                        ("not measured: " + self.r.rows.get(row, {}).get("skipped", "mode not built yet")
                         if row not in self.r.rows or row not in self.measured([row]) else "n/a"),
                        _verdict(added, lambda v: v < 1.0) if mode == "optimistic" else "info", ""))
        return out

    # ---------------------------------------------------------------- sections
    def header(self) -> list[str]:
        r, o = self.r, self.r.options
        m = r.machine
        shared = (f"The machine was **shared with other jobs** during the run (load average {m['load_before']} "
                  f"before, {m.get('load_after', '?')} after): absolute numbers carry that noise; ratios are "
                  "measured in the same run, point after point, so they carry less of it.")
        lines = [
            "# guardstream benchmarks", "",
            f"Generated by `{o['command']}` ({'quick smoke run, not for comparison' if o['quick'] else 'full run'}) "
            f"from {r.started} to {r.finished}, commit {m['commit']}.",
            "Re-run with `make bench` (or `.venv/bin/python -m bench`); raw numbers: "
            f"[`{self.json_name()}`]({self.json_name()}).", "",
        ]
        if os.environ.get("BENCH_SHARED_MACHINE", "1") != "0":
            lines += [f"> {shared}", ""]
        return lines

    def json_name(self) -> str:
        return self.out.with_suffix(".json").name

    def targets_section(self) -> list[str]:
        lines = ["## Targets", "", "| Target | Measured (same run) | Verdict |", "|---|---|---|"]
        for name, measured, verdict, _ in self.targets():
            lines.append(f"| {name} | {measured} | {verdict} |")
        notes = PROFILE_NOTES.with_name("TARGET_NOTES.md")
        if notes.exists():
            lines += ["", notes.read_text().strip()]
        return lines + [""]

    def machine_section(self) -> list[str]:
        m, pl = self.r.machine, self.r.placement
        v, t = m["versions"], m["tools"]
        lines = ["## Machine and software", "", "| | |", "|---|---|",
                 f"| CPU | {m['cpu']}, {m['cores']} cores |", f"| RAM | {m['ram_gib']} GiB |",
                 f"| Kernel | {m['kernel']} |",
                 f"| Python | {v['python']} (uvloop event loop in every Python process) |",
                 "| Packages | " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "python") + " |",
                 f"| nginx | {t['nginx']} |", f"| wrk | {t['wrk']} |", f"| LiteLLM | {t['litellm']} |",
                 f"| Load average | {m['load_before']} before, {m.get('load_after', '?')} after |", ""]
        lines += [f"Only {m['cores']} cores: the placement below keeps the proxy under test alone on CPU "
                  f"{pl['proxy']} (pinned with `taskset`), and the upstream and the load generator on CPU "
                  f"{pl['client']}. Rows at their recommended worker count spread over CPUs {pl['every']} and share "
                  "them with the upstream and the load generator: those rows show what the box does as a whole, "
                  "not a per-process cost. The `client core busy` column says how busy the upstream + load "
                  "CPU was; near 100 % the client side, not the proxy, limits throughput.", ""]
        return lines

    def method_section(self) -> list[str]:
        o = self.r.options
        plain = o["plain_driver"]
        tool = ("Debian's **wrk** (C, one thread, a Lua script sets the JSON body and the key; a counter makes each "
                "prompt distinct where caches must miss)" if plain == "wrk" else
                "the **asyncio load generator** `bench/load.py` (aiohttp client on uvloop)")
        return [
            "## Method", "",
            f"- **Upstream**: `python -m bench.upstream` (`proxy.demo_upstream.DemoUpstream` on uvloop), one process: "
            f"a fixed {o['answer_bytes']}-byte answer; streamed answers come in {o['chunks']} content chunks, "
            f"{o['chunk_delay_ms']:g} ms apart. Command: `{' '.join(self.r.upstream.get('argv', []))}`.",
            f"- **Load**: separate processes, closed loop at fixed concurrency (connections). Non-streamed points: "
            f"{tool}. Streamed points: the asyncio load generator `bench/load.py` (aiohttp client, uvloop), which "
            "reads every SSE line to time the first content token and the whole stream.",
            f"- **Points**: concurrency {', '.join(map(str, self.conc))} "
            f"(streamed: {', '.join(map(str, self.sconc))}); "
            f"each point: {o.get('rounds', 1)} recorded window(s) of {o['duration_s']:g} s, each after "
            f"{o['warmup_s']:g} s of warm-up (discarded)" + (
                ", taken in separate passes over all the rows; the window with the higher "
                "throughput is reported (both are in the JSON), so a burst of other jobs' work hits one window, "
                "not the point" if o.get("rounds", 1) > 1 else "") + ". Rows waiting for their turn are paused "
            "(SIGSTOP), so an idle system cannot take CPU from the one being measured.",
            f"- **Requests**: `POST /v1/chat/completions`, model `demo-model`, one user message of {o['prompt_bytes']} "
            "bytes; every row answers 200 with the same body (errors are counted and shown).",
            "- **Noise**: other jobs on the machine are not pinned and take CPU time from every core, the proxy's "
            "included; requests/s and latencies carry that, while **CPU s / 1k req** (CPU the proxy itself used per "
            "request) carries much less of it, so the targets table also gives the throughput ratio implied by CPU "
            "per request (capacity at equal CPU).",
            "- **Latency** is send-to-last-byte per request; **added latency** is the row's percentile minus the "
            "`direct` row's at the same concurrency. **CPU s / 1k req** is utime+stime of the row's processes "
            "(all workers; for `direct`, the upstream's) from /proc/PID/stat around the recorded window, per 1,000 "
            "completed requests. Ratios (×) compare with a baseline measured in the same run.",
            f"- guardstream runs with `logging.level: {o['log_level']}` (no per-request log line, like LiteLLM's "
            "recommended `LITELLM_LOG=ERROR`), client-key auth on, audit to a local JSONL file, Prometheus metrics on. "
            "nginx runs with `access_log off`.", "",
        ]

    def rows_section(self) -> list[str]:
        lines = ["## Rows (systems under test)", "", "| Row | What | Processes, workers, CPUs | Notes |",
                 "|---|---|---|---|"]
        for key, info in self.r.rows.items():
            what = info["label"]
            if info.get("skipped"):
                lines.append(f"| `{key}` | {what} | not run | {info['skipped']} |")
            elif info.get("error"):
                lines.append(f"| `{key}` | {what} | failed to start | {info['error'][:200]!r} |")
            else:
                lines.append(f"| `{key}` | {what} | {info.get('processes', '')} | {'; '.join(info.get('notes', []))} |")
        return lines + [""]

    def plain_section(self, figures: dict[str, Path]) -> list[str]:
        rows = self.measured(self.plain)
        if not rows:
            return []
        lines = ["## Non-streamed requests", ""]
        for c in self.conc:
            lines += [f"### Concurrency {c}", "",
                      "| Row | req/s | × pass-through | × LiteLLM (1 worker) | p50 ms | p99 ms | added p50 ms | "
                      "added p99 ms | CPU s / 1k req | × pass-through CPU | errors | client core busy |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for row in rows:
                p = self.points.get((row, c))
                if p is None:
                    continue
                lat = p["latency_ms"]
                lines.append("| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0f} % |".format(
                    row, _n(p["rps"]), _x(_ratio(p["rps"], _get(self.points, "passthrough", c, "rps"))),
                    _x(_ratio(p["rps"], _get(self.points, "litellm-1", c, "rps"))),
                    _n(lat["p50"], 3), _n(lat["p99"], 3),
                    _signed(_sub(lat["p50"], _get(self.points, "direct", c, "latency_ms", "p50"))),
                    _signed(_sub(lat["p99"], _get(self.points, "direct", c, "latency_ms", "p99"))),
                    _n(p["cpu_per_1k"], 3), _x(_ratio(p["cpu_per_1k"], _get(self.points, "passthrough", c,
                                                                              "cpu_per_1k"))),
                    p["errors"], 100 * p["client_busy"]))
            lines.append("")
        for name, title in (("rps", "Requests/s"), ("ratio", "Requests/s relative to the pass-through"),
                            ("latency", "Latency p50"), ("cpu", "CPU per 1,000 requests")):
            if name in figures:
                lines += [f"![{title}]({self.rel(figures[name])})", ""]
        return lines

    def stream_section(self, figures: dict[str, Path]) -> list[str]:
        rows = self.measured(self.streamed)
        if not rows:
            return []
        o = self.r.options
        lines = ["## Streamed requests", "",
                 f"Each stream: a role chunk, {o['chunks']} content chunks {o['chunk_delay_ms']:g} ms apart, the "
                 "finish chunk, `[DONE]`. guardstream rows run the rule evaluators on the prompt and, per the "
                 "stream mode, on the answer; the mode is the only difference between them. Total stream times "
                 "are set by the upstream's paced chunks and by how promptly the event loops get a CPU: on this "
                 "shared machine they move by tens of ms between repeated runs, so compare time to first token "
                 "and CPU per stream. `buffered` holds the first window (`chunk_size` 64 tokens) until it is "
                 "judged, which its TTFT shows by design.", ""]
        for c in self.sconc:
            lines += [f"### Concurrency {c}", "",
                      "| Row | mode | TTFT p50 ms | TTFT p99 ms | added TTFT p50 ms | added TTFT p99 ms | "
                      "total p50 ms | added total p50 ms | streams/s | CPU s / 1k streams | errors | "
                      "client core busy |",
                      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for row in rows:
                p = self.points.get((row, c))
                if p is None:
                    continue
                t, lat = p["ttft_ms"] or {}, p["latency_ms"]
                lines.append("| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0f} % |".format(
                    row, p.get("stream_mode") or "-", _n(t.get("p50"), 3), _n(t.get("p99"), 3),
                    _signed(_sub(t.get("p50"), _get(self.points, "stream-direct", c, "ttft_ms", "p50"))),
                    _signed(_sub(t.get("p99"), _get(self.points, "stream-direct", c, "ttft_ms", "p99"))),
                    _n(lat["p50"], 2), _signed(_sub(lat["p50"], _get(self.points, "stream-direct", c, "latency_ms",
                                                                     "p50"))),
                    _n(p["rps"]), _n(p["cpu_per_1k"], 3), p["errors"], 100 * p["client_busy"]))
            lines.append("")
        if "ttft" in figures:
            lines += [f"![Time to first token]({self.rel(figures['ttft'])})", ""]
        return lines

    def profile_section(self) -> list[str]:
        lines = ["## Profile", ""]
        prof = self.r.profile
        if prof and not prof.get("skipped"):
            lines += [f"py-spy on the `{prof['row']}` process at concurrency {prof['concurrency']} "
                      f"({_n(prof.get('rps'))} req/s while sampled), {prof['samples']} busy samples. Command: "
                      f"`{prof['command']}`.", "",
                      "Where the busy CPU goes, by owner of the innermost frame:", "", "| Owner | % of samples |",
                      "|---|---:|"]
            lines += [f"| {name} | {pct} |" for name, pct in prof["areas"]]
            lines += ["", "Top functions by own time:", "", "| Function | % self |", "|---|---:|"]
            lines += [f"| `{name}` | {pct} |" for name, pct in prof["self"]]
            lines += ["", "guardstream's functions by inclusive time:", "", "| Function | % inclusive |", "|---|---:|"]
            lines += [f"| `{name}` | {pct} |" for name, pct in prof["inclusive_ours"]]
            lines.append("")
        elif prof:
            lines += [f"Not profiled in this run: {prof['skipped']}", ""]
        else:
            lines += ["Not profiled in this run (`--quick` skips it; `--profile` forces it).", ""]
        if PROFILE_NOTES.exists():
            lines += [PROFILE_NOTES.read_text().strip(), ""]
        return lines

    def commands_section(self) -> list[str]:
        lines = ["## Exact commands", "", f"Suite: `{self.r.options['command']}`", "",
                 f"Upstream: `{' '.join(self.r.upstream.get('argv', []))}`", ""]
        for key, info in self.r.rows.items():
            for cmd in info.get("commands", []):
                lines.append(f"- `{key}`: `{cmd}`")
        seen = set()
        lines += ["", "Load commands (one recorded point per row kind; `$BENCH_KEY` is the bench client key):", ""]
        for p in self.r.points:
            kind = (p["driver"], p["stream"])
            if kind not in seen:
                seen.add(kind)
                lines.append(f"- {p['driver']}{' (streamed)' if p['stream'] else ''}: `{' '.join(p['argv'])}`")
        return lines + [""]

    def configs_section(self) -> list[str]:
        """One generated config per kind of row (ports and temp paths differ from run to run)."""
        lines = ["## Generated configs", "",
                 "The suite writes these into a temporary folder per run; one of each kind:", ""]
        seen: set[tuple[str, str]] = set()
        for key, info in self.r.rows.items():
            kind = (info["system"], info["guard"] if info["system"] == "guardstream" else "")
            if not info.get("config") or kind in seen:
                continue
            seen.add(kind)
            lang = "nginx" if info["system"] == "nginx" else "yaml"
            lines += [f"<details><summary><code>{key}</code></summary>", "", f"```{lang}",
                      info["config"].replace(BENCH_KEY_SHA, "<sha256 of $BENCH_KEY>").rstrip()
                      .replace(BENCH_KEY, "$BENCH_KEY"), "```", "", "</details>", ""]
        return lines

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.out.parent)

    def render(self) -> str:
        figures = make_plots(self.img_dir, self.measured(self.plain), self.measured(self.streamed), self.conc,
                             self.sconc, self.points)
        parts = (self.header() + self.targets_section() + self.machine_section() + self.method_section()
                 + self.rows_section() + self.plain_section(figures) + self.stream_section(figures)
                 + self.profile_section() + self.commands_section() + self.configs_section()
                 + self.components_section())
        return "\n".join(parts).rstrip() + "\n"

    def components_section(self) -> list[str]:
        """The component benchmarks (cache, audit, streaming, evaluators): kept by hand beside this report."""
        path = self.out.parent / "benchmarks_components.md"
        return ["", path.read_text().rstrip(), ""] if path.exists() else []


def _verdict(value: float | None, ok: Callable[[float], bool]) -> str:
    if value is None:
        return "not measured"
    return "**met**" if ok(value) else "**not met** (see notes)"


def write_report(result: SuiteResult, out: Path, img_dir: Path) -> Path:
    """Write the markdown report, its figures, and the raw results as JSON next to it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(Report(result, out, img_dir).render())
    raw = asdict(result)
    text = json.dumps(raw, indent=1, default=str).replace(BENCH_KEY, "$BENCH_KEY")
    out.with_suffix(".json").write_text(text + "\n")
    return out
