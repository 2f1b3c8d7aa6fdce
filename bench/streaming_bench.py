"""Streaming moderation benchmark: time to first token through the proxy, against a plain relay, same run.

    python -m bench.streaming_bench [--requests 15] [--chunks 100] [--chunk-delay-ms 5] [--quick]

Four processes: the demo upstream (a fixed English answer in `--chunks` pieces, `--chunk-delay-ms` apart, cut
anywhere like subword tokens), the plain aiohttp relay (`bench/passthrough.py`: the baseline), the proxy (one
policy per streaming mode and judge kind, picked by client key; verdict cache off) and this one, the asyncio
client that measures. Judges: the built-in policy's output rules (secrets blocks, PII and hidden Unicode
flag: incremental judges), and a model stand-in (the keyword evaluator with a fixed `--model-ms` latency: a
window judge). Targets (issue #17): with the rules, `buffered` within 5 ms of the relay's time to first token;
with the model, within one evaluator call plus the first window. Then added latency of one non-streamed
request at a time (the built-in policy on prompt and answer) against the relay's, and evaluator calls per
answer against answer length. Interleaved rounds, medians. Prints rich tables, writes
bench/results/streaming.json and bench/results/streaming.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import platform
import random
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")
rng = random.Random(20240605)
MODES = ("off", "final", "optimistic", "buffered")
JUDGES = ("rules", "model")
FIRST_CHUNK, CHUNK_SIZE, CONTEXT_SIZE = 4, 64, 32


def _install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass


def _serve_upstream(conn: Any, chunks: int, chunk_delay_s: float) -> None:
    _install_uvloop()
    from bench.upstream import fixed_answer
    from proxy.demo_upstream import DemoUpstream

    def answer(body: dict[str, Any]) -> str:
        n = int(body.get("max_tokens") or 0)
        return " ".join(f"w{i}" for i in range(n)) if n else fixed_answer(10 * chunks)  # 10-character pieces

    async def main() -> None:
        upstream = DemoUpstream(answer=answer, chunks=chunks, chunk_delay_s=chunk_delay_s, record=False)
        _, url = await upstream.start()
        conn.send(url)
        await asyncio.Event().wait()

    asyncio.run(main())


def _serve_relay(conn: Any, upstream_url: str) -> None:
    _install_uvloop()
    from aiohttp import web

    from bench import passthrough

    async def main() -> None:
        runner = web.AppRunner(passthrough.create_app(upstream_url), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


def _key(mode: str, judges: str) -> str:
    return f"bench-{mode}-{judges}"


def _proxy_settings(upstream_url: str, model_ms: float) -> Any:
    from bench.targets import rule_evaluators
    from proxy.auth import hash_key
    from proxy.config import Settings, StreamingConfig

    evaluators, inputs, outputs, actions, _ = rule_evaluators()
    evaluators["model"] = {"type": "tests.keyword_evaluator:create", "timeout_ms": 5000,
                           "options": {"words": ["hunter2"], "category": "unsafe", "delay_ms": model_ms}}
    policies: dict[str, Any] = {}
    keys = []
    streaming = {"chunk_size": CHUNK_SIZE, "context_size": CONTEXT_SIZE}
    if "first_chunk_size" in StreamingConfig.model_fields:  # (older versions: fixed windows; for before/after)
        streaming["first_chunk_size"] = FIRST_CHUNK
    for mode in MODES:
        for judges in JUDGES:
            policies[f"{mode}-{judges}"] = {
                "mode": "enforce", "cache_ttl_s": 0, "input": {"evaluators": []}, "actions": actions,
                "output": {"evaluators": outputs if judges == "rules" else ["model"],
                           "streaming": {"mode": mode, **streaming}}}
            keys.append({"sha256": hash_key(_key(mode, judges)), "policy": f"{mode}-{judges}"})
    policies["builtin"] = {"mode": "enforce", "input": {"evaluators": inputs}, "actions": actions,
                           "output": {"evaluators": outputs}}
    keys.append({"sha256": hash_key("bench-builtin"), "policy": "builtin"})
    return Settings.model_validate({
        "upstream": {"url": upstream_url}, "evaluators": evaluators, "policies": policies, "client_keys": keys,
        "audit": {"jsonl_path": str(Path(tempfile.gettempdir()) / "guardstream-bench-audit.jsonl")},
        "logging": {"level": "warning"}})


def _serve_proxy(conn: Any, upstream_url: str, model_ms: float) -> None:
    _install_uvloop()
    from aiohttp import web

    from proxy.app import create_app
    from proxy.gc_tuning import tune_gc
    from proxy.logs import configure_logging
    from proxy.server import make_runner

    settings = _proxy_settings(upstream_url, model_ms)
    configure_logging(settings.logging)

    async def main() -> None:
        runner = make_runner(create_app(settings), settings.server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        tune_gc()  # as `guardstream serve` does once it listens (the relay, a plain aiohttp app, keeps the defaults)
        conn.send(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


def _spawn(target: Any, *args: Any) -> tuple[Any, str]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, *args), daemon=True)
    proc.start()
    if not parent.poll(60):
        proc.kill()
        raise RuntimeError(f"{target.__name__} did not start")
    return proc, parent.recv()


# -- the measuring client ------------------------------------------------------------------------------

async def _one(session: Any, url: str, key: str, tokens: int = 0) -> tuple[float, float, int]:
    """(time to first content token, total time, content chunks) of one streamed chat completion."""
    from proxy.sse import SSEParser

    body: dict[str, Any] = {"model": "demo-model", "messages": [{"role": "user", "content": "tell me a story"}],
                            "stream": True}
    if tokens:
        body["max_tokens"] = tokens
    parser = SSEParser()
    first, chunks = None, 0
    started = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=body,
                            headers={"authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 200, await resp.text()
        async for data in resp.content.iter_any():
            for event in parser.feed(data):
                if event.data is None or event.is_done:
                    continue
                for choice in json.loads(event.data).get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        chunks += 1
                        if first is None:
                            first = time.perf_counter() - started
    total = time.perf_counter() - started
    return (first if first is not None else total), total, chunks


async def _plain(session: Any, url: str, key: str) -> float:
    """Seconds for one non-streamed chat completion."""
    body = {"model": "demo-model", "messages": [{"role": "user", "content": "Summarise our planning notes."}]}
    started = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=body,
                            headers={"authorization": f"Bearer {key}"}) as resp:
        await resp.read()
        assert resp.status == 200
    return time.perf_counter() - started


async def _windows_evaluated(session: Any, proxy_url: str) -> dict[str, float]:
    async with session.get(proxy_url + "/metrics") as resp:
        text = await resp.text()
    return {m: float(v) for m, v in re.findall(
        r'guardstream_stream_windows_evaluated_total\{mode="(\w+)"\} ([0-9.e+]+)', text)}


async def _measure(urls: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp
    from rich.progress import Progress

    targets = [("direct", "-", urls["upstream"], "none"), ("relay", "-", urls["relay"], "none")]
    targets += [(mode, judges, urls["proxy"], _key(mode, judges)) for judges in JUDGES for mode in MODES]
    rows: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(2):  # warm-up: connections, imports, first-call paths
            for _, _, url, key in targets:
                await _one(session, url, key, 8)
        with Progress(transient=True) as progress:
            task = progress.add_task("streams", total=len(targets) * args.requests)
            samples: dict[int, list[tuple[float, float, int]]] = {i: [] for i in range(len(targets))}
            order = list(range(len(targets)))
            for _ in range(args.requests):  # interleaved, in a new order each round: drift hits all alike
                rng.shuffle(order)
                for i in order:
                    samples[i].append(await _one(session, targets[i][2], targets[i][3]))
                    progress.advance(task)
            for i, (mode, judges, _, _) in enumerate(targets):
                ttft = [s[0] * 1000 for s in samples[i]]
                total = [s[1] * 1000 for s in samples[i]]
                assert all(s[2] == args.chunks for s in samples[i]), f"{mode}/{judges}: chunks lost"
                rows.append({"target": mode if judges == "-" else "proxy", "mode": mode, "judges": judges,
                             "ttft_ms_median": statistics.median(ttft), "ttft_ms_p90": _p90(ttft),
                             "total_ms_median": statistics.median(total), "requests": len(ttft)})
            plain = await _latency(session, urls, args, progress)
            calls = await _calls(session, urls["proxy"], args, progress)
    return {"latency": rows, "plain": plain, "calls": calls}


async def _latency(session: Any, urls: dict[str, str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    """Median seconds of one non-streamed request at a time: direct, through the relay, through the proxy."""
    targets = {"direct": (urls["upstream"], "none"), "relay": (urls["relay"], "none"),
               "guardstream": (urls["proxy"], "bench-builtin")}
    samples: dict[str, list[float]] = {name: [] for name in targets}
    task = progress.add_task("one request at a time", total=len(targets) * args.plain_requests)
    names = list(targets)
    for _ in range(args.plain_requests):
        rng.shuffle(names)
        for name in names:
            samples[name].append(await _plain(session, *targets[name]) * 1000)
            progress.advance(task)
    return {name: statistics.median(values) for name, values in samples.items()}


async def _calls(session: Any, proxy_url: str, args: argparse.Namespace, progress: Any) -> list[dict[str, Any]]:
    """Model calls per answer against answer length (growing windows: first_chunk_size doubling to chunk_size)."""
    sweep = []
    task = progress.add_task("calls per answer", total=len(args.lengths) * 2)
    for mode in ("buffered", "optimistic"):
        for length in args.lengths:
            before = await _windows_evaluated(session, proxy_url)
            await _one(session, proxy_url, _key(mode, "model"), length)
            after = await _windows_evaluated(session, proxy_url)
            sweep.append({"mode": mode, "tokens": length, "calls": int(after.get(mode, 0) - before.get(mode, 0))})
            progress.advance(task)
    return sweep


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def targets_of(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The issue's targets, from one run's numbers."""
    rows = {(r["mode"], r["judges"]): r for r in results["latency"]}
    relay = rows[("relay", "-")]["ttft_ms_median"]
    rules = rows[("buffered", "rules")]["ttft_ms_median"]
    model = rows[("buffered", "model")]["ttft_ms_median"]
    first_window_ms = (FIRST_CHUNK - 1) * args.chunk_delay_ms
    model_bound = relay + args.model_ms + first_window_ms
    plain = results["plain"]
    return {
        "relay_ttft_ms": round(relay, 3),
        "rules_buffered_ttft_ms": round(rules, 3), "rules_buffered_over_relay_ms": round(rules - relay, 3),
        "rules_buffered_ttft_ratio": round(rules / relay, 3), "rules_met": rules - relay <= 5.0,
        "model_buffered_ttft_ms": round(model, 3), "model_bound_ms": round(model_bound, 3),
        "model_buffered_over_bound_ms": round(model - model_bound, 3), "model_met": model <= model_bound + 5.0,
        "relay_added_latency_ms": round(plain["relay"] - plain["direct"], 3),
        "guardstream_added_latency_ms": round(plain["guardstream"] - plain["direct"], 3),
        "latency_met": plain["guardstream"] - plain["direct"] <= 0.5,
    }


# -- reporting ---------------------------------------------------------------------------------------

def _report(results: dict[str, Any], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    relay = next(r for r in results["latency"] if r["mode"] == "relay")
    table = Table(title=f"Streaming: {args.chunks} chunks, {args.chunk_delay_ms} ms apart; windows of {FIRST_CHUNK} "
                        f"tokens doubling to {CHUNK_SIZE} (+{CONTEXT_SIZE} context); model {args.model_ms:g} ms a "
                        f"call; median of {args.requests} requests")
    for col in ("target", "mode", "judges", "TTFT ms (p90)", "TTFT − relay ms", "TTFT ÷ relay", "total ms",
                "total − relay ms"):
        table.add_column(col, justify="left" if col in ("target", "mode", "judges") else "right")
    for row in results["latency"]:
        table.add_row(row["target"], row["mode"], row["judges"],
                      f"{row['ttft_ms_median']:.2f} ({row['ttft_ms_p90']:.2f})",
                      f"{row['ttft_ms_median'] - relay['ttft_ms_median']:+.2f}",
                      f"{row['ttft_ms_median'] / relay['ttft_ms_median']:.2f}",
                      f"{row['total_ms_median']:.1f}", f"{row['total_ms_median'] - relay['total_ms_median']:+.1f}")
    console.print(table)
    t = results["target"]
    ok = {True: "[green]met[/]", False: "[red]missed[/]"}
    console.print(f"Rules, buffered: TTFT {t['rules_buffered_ttft_ms']:.2f} ms, relay {t['relay_ttft_ms']:.2f} ms: "
                  f"{t['rules_buffered_over_relay_ms']:+.2f} ms (target ≤ +5 ms) {ok[t['rules_met']]}")
    console.print(f"Model, buffered: TTFT {t['model_buffered_ttft_ms']:.2f} ms; relay + one call + first window = "
                  f"{t['model_bound_ms']:.2f} ms ({t['model_buffered_over_bound_ms']:+.2f}) {ok[t['model_met']]}")
    console.print(f"One non-streamed request at a time, built-in policy: +{t['guardstream_added_latency_ms']:.3f} ms "
                  f"over direct (relay +{t['relay_added_latency_ms']:.3f} ms; target ≤ 0.5 ms) {ok[t['latency_met']]}")
    calls = Table(title=f"Model calls per answer (windows of {FIRST_CHUNK} doubling to {CHUNK_SIZE} tokens)")
    calls.add_column("mode")
    for n in args.lengths:
        calls.add_column(f"{n} tok", justify="right")
    for mode in ("buffered", "optimistic"):
        got = {r["tokens"]: r["calls"] for r in results["calls"] if r["mode"] == mode}
        calls.add_row(mode, *[str(got[n]) for n in args.lengths])
    console.print(calls)


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = results["latency"]
    labels = [r["mode"] if r["judges"] == "-" else f"{r['mode']}\n{r['judges']}" for r in rows]
    xs = range(len(rows))
    ax1.bar(list(xs), [r["ttft_ms_median"] for r in rows], 0.6)
    ax1.set_xticks(list(xs), labels, fontsize=7)
    ax1.set_ylabel("time to first token, ms (median)")
    ax1.set_title("Time to first token: direct, relay, proxy")
    for mode in ("buffered", "optimistic"):
        pts = [(r["tokens"], r["calls"]) for r in results["calls"] if r["mode"] == mode]
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=mode)
    ax2.set_xlabel("answer length (tokens)")
    ax2.set_ylabel("model calls")
    ax2.set_title("Model calls per answer")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=15, help="streams per target")
    parser.add_argument("--chunks", type=int, default=100, help="chunks per answer")
    parser.add_argument("--chunk-delay-ms", type=float, default=5.0, help="upstream delay between chunks")
    parser.add_argument("--model-ms", type=float, default=20.0, help="the model stand-in's latency per call")
    parser.add_argument("--plain-requests", type=int, default=200, help="non-streamed requests per target")
    parser.add_argument("--lengths", default="64,128,256,512,1024", help="answer lengths for the calls sweep")
    parser.add_argument("--quick", action="store_true", help="few requests, short sweep (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "streaming.json")
    args = parser.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",")]
    if args.quick:
        args.requests, args.lengths, args.plain_requests = 3, [64, 128], 20
    RESULTS.mkdir(parents=True, exist_ok=True)
    _install_uvloop()
    procs = []
    try:
        proc, upstream = _spawn(_serve_upstream, args.chunks, args.chunk_delay_ms / 1000)
        procs.append(proc)
        proc, relay = _spawn(_serve_relay, upstream)
        procs.append(proc)
        proc, proxy = _spawn(_serve_proxy, upstream, args.model_ms)
        procs.append(proc)
        results = asyncio.run(_measure({"upstream": upstream, "relay": relay, "proxy": proxy}, args))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.join(5)
    results["target"] = targets_of(results, args)
    results["config"] = {"chunks": args.chunks, "chunk_delay_ms": args.chunk_delay_ms, "requests": args.requests,
                         "model_ms": args.model_ms, "first_chunk_size": FIRST_CHUNK, "chunk_size": CHUNK_SIZE,
                         "context_size": CONTEXT_SIZE,
                         "machine": f"{platform.machine()}, {mp.cpu_count()} cores, Python {platform.python_version()}"}
    args.out.write_text(json.dumps(results, indent=2))
    _plot(results, args.out.with_suffix(".png"))
    _report(results, args)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
