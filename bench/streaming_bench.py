"""Streaming moderation benchmark: time to first token and total time, direct vs through the proxy.

    python -m bench.streaming_bench [--requests 7] [--chunks 200] [--chunk-delay-ms 5] [--quick]

Three processes: the demo upstream (answers of `--chunks` one-word chunks, `--chunk-delay-ms` apart), the proxy
(one policy per streaming mode and evaluator, picked by client key; verdict cache off so every window is
really evaluated; no input evaluators, so only output moderation is measured) and this one, the asyncio
client that measures. Evaluators: the keyword evaluator with no delay ("cheap") and with a fixed 20 ms
latency ("20ms"). Then evaluator calls per answer against answer length (read from the proxy's
`guardstream_stream_windows_evaluated_total` counter). Prints rich tables, writes
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
EVALUATORS = {"cheap": 0.0, "20ms": 20.0}
CHUNK_SIZE, CONTEXT_SIZE = 64, 32


def _answer(body: dict[str, Any]) -> str:
    n = int(body.get("max_tokens") or 200)
    return " ".join(f"w{i}" for i in range(n))


def _install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass


def _serve_upstream(conn: Any, chunk_delay_s: float) -> None:
    _install_uvloop()
    from proxy.demo_upstream import DemoUpstream

    async def main() -> None:
        upstream = DemoUpstream(answer=_answer, chunk_delay_s=chunk_delay_s, record=False)
        _, url = await upstream.start()
        conn.send(url)
        await asyncio.Event().wait()

    asyncio.run(main())


def _key(mode: str, evaluator: str) -> str:
    return f"bench-{mode}-{evaluator}"


def _proxy_settings(upstream_url: str) -> Any:
    from proxy.auth import hash_key
    from proxy.config import Settings

    evaluators = {name: {"type": "tests.keyword_evaluator:create", "timeout_ms": 5000,
                         "options": {"words": ["hunter2"], "category": "secret", "delay_ms": delay}}
                  for name, delay in EVALUATORS.items()}
    policies: dict[str, Any] = {}
    keys = []
    for mode in MODES:
        for ev in EVALUATORS:
            name = f"{mode}-{ev}"
            policies[name] = {"mode": "enforce", "cache_ttl_s": 0, "input": {"evaluators": []},
                              "output": {"evaluators": [ev], "streaming": {
                                  "mode": mode, "chunk_size": CHUNK_SIZE, "context_size": CONTEXT_SIZE}}}
            keys.append({"sha256": hash_key(_key(mode, ev)), "policy": name})
    return Settings.model_validate({
        "upstream": {"url": upstream_url}, "evaluators": evaluators, "policies": policies, "client_keys": keys,
        "audit": {"jsonl_path": str(Path(tempfile.gettempdir()) / "guardstream-bench-audit.jsonl")},
        "logging": {"level": "warning"}})


def _serve_proxy(conn: Any, upstream_url: str) -> None:
    _install_uvloop()
    from aiohttp import web

    from proxy.app import create_app
    from proxy.server import make_runner
    from proxy.logs import configure_logging

    settings = _proxy_settings(upstream_url)
    configure_logging(settings.logging)

    async def main() -> None:
        runner = make_runner(create_app(settings), settings.server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
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

async def _one(session: Any, url: str, key: str, tokens: int) -> tuple[float, float, int]:
    """(time to first content token, total time, content chunks) of one streamed chat completion."""
    from proxy.sse import SSEParser

    body = {"model": "demo-model", "messages": [{"role": "user", "content": "tell me a story"}],
            "stream": True, "max_tokens": tokens}
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


async def _windows_evaluated(session: Any, proxy_url: str) -> dict[str, float]:
    async with session.get(proxy_url + "/metrics") as resp:
        text = await resp.text()
    return {m: float(v) for m, v in re.findall(
        r'guardstream_stream_windows_evaluated_total\{mode="(\w+)"\} ([0-9.e+]+)', text)}


async def _measure(upstream_url: str, proxy_url: str, args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp
    from rich.progress import Progress

    targets = [("direct", "-", upstream_url, "none")]
    targets += [(mode, ev, proxy_url, _key(mode, ev)) for mode in MODES for ev in EVALUATORS]
    rows: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(2):  # warm-up: connections, imports, JIT-free but cache-cold paths
            await _one(session, upstream_url, "none", 20)
            await _one(session, proxy_url, _key("optimistic", "cheap"), 20)
        with Progress(transient=True) as progress:
            task = progress.add_task("latency", total=len(targets) * args.requests)
            samples: dict[int, list[tuple[float, float, int]]] = {i: [] for i in range(len(targets))}
            order = list(range(len(targets)))
            for _ in range(args.requests):  # interleaved, in a new order each round: drift hits all alike
                rng.shuffle(order)
                for i in order:
                    samples[i].append(await _one(session, targets[i][2], targets[i][3], args.chunks))
                    progress.advance(task)
            for i, (mode, ev, _, _) in enumerate(targets):
                ttft = [s[0] * 1000 for s in samples[i]]
                total = [s[1] * 1000 for s in samples[i]]
                assert all(s[2] == args.chunks for s in samples[i]), f"{mode}/{ev}: chunks lost"
                rows.append({"target": "direct" if mode == "direct" else "proxy", "mode": mode, "evaluator": ev,
                             "ttft_ms_median": statistics.median(ttft), "ttft_ms_p90": _p90(ttft),
                             "total_ms_median": statistics.median(total), "total_ms_p90": _p90(total),
                             "requests": len(ttft)})
            ttft = await _ttft_precise(session, upstream_url, proxy_url, args, progress)
            task = progress.add_task("calls per answer", total=len(args.lengths) * len(EVALUATORS) * 2)
            for ev in EVALUATORS:
                for mode in ("buffered", "optimistic"):
                    for length in args.lengths:
                        before = await _windows_evaluated(session, proxy_url)
                        await _one(session, proxy_url, _key(mode, ev), length)
                        after = await _windows_evaluated(session, proxy_url)
                        calls = after.get(mode, 0) - before.get(mode, 0)
                        sweep.append({"mode": mode, "evaluator": ev, "tokens": length, "calls": int(calls),
                                      "windows": -(-length // CHUNK_SIZE)})
                        progress.advance(task, 0.5)
    return {"latency": rows, "ttft": ttft, "calls": sweep}


async def _ttft_precise(session: Any, upstream_url: str, proxy_url: str, args: argparse.Namespace,
                        progress: Any) -> list[dict[str, Any]]:
    """Time to first token alone, from many short answers: the proxy hop and what each mode adds to it."""
    targets = [("direct", "-", upstream_url, "none")]
    targets += [(mode, ev, proxy_url, _key(mode, ev)) for mode, ev in (
        ("off", "cheap"), ("final", "cheap"), ("optimistic", "cheap"), ("optimistic", "20ms"))]
    samples: dict[int, list[float]] = {i: [] for i in range(len(targets))}
    task = progress.add_task("time to first token", total=len(targets) * args.ttft_requests)
    order = list(range(len(targets)))
    for _ in range(args.ttft_requests):
        rng.shuffle(order)
        for i in order:
            samples[i].append((await _one(session, targets[i][2], targets[i][3], 4))[0] * 1000)
            progress.advance(task)
    return [{"target": "direct" if mode == "direct" else "proxy", "mode": mode, "evaluator": ev,
             "ttft_ms_median": statistics.median(samples[i]), "ttft_ms_p90": _p90(samples[i]),
             "requests": len(samples[i])} for i, (mode, ev, _, _) in enumerate(targets)]


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


# -- reporting ---------------------------------------------------------------------------------------

def _report(results: dict[str, Any], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    direct = results["latency"][0]
    table = Table(title=f"Streaming: {args.chunks} chunks, {args.chunk_delay_ms} ms apart; windows of {CHUNK_SIZE} "
                        f"tokens (+{CONTEXT_SIZE} context); median (p90) of {args.requests} requests")
    for col in ("target", "mode", "evaluator", "TTFT ms", "+TTFT vs direct", "total ms", "+total vs direct",
                "+total vs off"):
        table.add_column(col, justify="right" if "ms" in col or "+" in col else "left")
    off = {r["evaluator"]: r for r in results["latency"] if r["mode"] == "off"}
    for row in results["latency"]:
        base = off.get(row["evaluator"])
        table.add_row(row["target"], row["mode"], row["evaluator"],
                      f"{row['ttft_ms_median']:.2f} ({row['ttft_ms_p90']:.2f})",
                      f"{row['ttft_ms_median'] - direct['ttft_ms_median']:+.2f}",
                      f"{row['total_ms_median']:.1f} ({row['total_ms_p90']:.1f})",
                      f"{row['total_ms_median'] - direct['total_ms_median']:+.1f}",
                      f"{row['total_ms_median'] - base['total_ms_median']:+.1f}" if base else "")
    console.print(table)
    calls = Table(title="Evaluator calls per answer (windows of 64 tokens)")
    for col in ("mode", "evaluator", *[str(n) for n in args.lengths]):
        calls.add_column(col if col.isalpha() else f"{col} tok", justify="right")
    for ev in EVALUATORS:
        for mode in ("buffered", "optimistic"):
            got = {r["tokens"]: r for r in results["calls"] if r["mode"] == mode and r["evaluator"] == ev}
            calls.add_row(mode, ev, *[f"{got[n]['calls']} / {got[n]['windows']}" for n in args.lengths])
    console.print(calls)
    precise = Table(title=f"Time to first token, {args.ttft_requests} short answers per target (median, p90)")
    for col in ("target", "mode", "evaluator", "TTFT ms", "p90 ms", "+ vs direct", "+ vs proxy off"):
        precise.add_column(col, justify="right" if "ms" in col or "+" in col else "left")
    base, off = results["ttft"][0], results["ttft"][1]
    for row in results["ttft"]:
        precise.add_row(row["target"], row["mode"], row["evaluator"], f"{row['ttft_ms_median']:.3f}",
                        f"{row['ttft_ms_p90']:.3f}", f"{row['ttft_ms_median'] - base['ttft_ms_median']:+.3f}",
                        f"{row['ttft_ms_median'] - off['ttft_ms_median']:+.3f}" if row is not base else "")
    console.print(precise)
    added = results["target"]["optimistic_added_ttft_ms"]
    verdict = "[green]met[/]" if added < 1.0 else "[red]missed[/]"
    console.print(f"Target: optimistic adds < 1 ms to time to first token: {added:+.3f} ms {verdict} "
                  f"(the proxy hop, mode off: {results['target']['proxy_hop_ttft_ms']:+.3f} ms; optimistic over off: "
                  f"{results['target']['optimistic_over_off_ttft_ms']:+.3f} ms)")


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = results["latency"]
    labels = [r["mode"] if r["mode"] == "direct" else f"{r['mode']}\n{r['evaluator']}" for r in rows]
    xs = range(len(rows))
    ax1.bar([x - 0.2 for x in xs], [r["ttft_ms_median"] for r in rows], 0.4, label="time to first token")
    ax1.bar([x + 0.2 for x in xs], [r["total_ms_median"] for r in rows], 0.4, label="total")
    ax1.set_xticks(list(xs), labels, fontsize=7)
    ax1.set_ylabel("ms (median)")
    ax1.set_title("Latency, direct vs through the proxy")
    ax1.legend()
    for ev in EVALUATORS:
        for mode in ("buffered", "optimistic"):
            pts = [(r["tokens"], r["calls"]) for r in results["calls"] if r["mode"] == mode and r["evaluator"] == ev]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{mode}, {ev}")
    ax2.set_xlabel("answer length (tokens)")
    ax2.set_ylabel("evaluator calls")
    ax2.set_title("Evaluator calls per answer")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=7, help="requests per target")
    parser.add_argument("--chunks", type=int, default=200, help="chunks (tokens) per answer")
    parser.add_argument("--chunk-delay-ms", type=float, default=5.0, help="upstream delay between chunks")
    parser.add_argument("--lengths", default="64,128,256,512,1024", help="answer lengths for the calls sweep")
    parser.add_argument("--ttft-requests", type=int, default=60, help="short answers per target for the TTFT table")
    parser.add_argument("--quick", action="store_true", help="3 requests, short sweep (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "streaming.json")
    args = parser.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",")]
    if args.quick:
        args.requests, args.lengths, args.ttft_requests = 3, [64, 128, 256], 15
    RESULTS.mkdir(parents=True, exist_ok=True)
    _install_uvloop()
    upstream_proc, upstream_url = _spawn(_serve_upstream, args.chunk_delay_ms / 1000)
    proxy_proc, proxy_url = _spawn(_serve_proxy, upstream_url)
    try:
        results = asyncio.run(_measure(upstream_url, proxy_url, args))
    finally:
        for proc in (proxy_proc, upstream_proc):
            proc.terminate()
            proc.join(5)
    direct, off = results["ttft"][0], results["ttft"][1]
    optimistic = next(r for r in results["ttft"] if r["mode"] == "optimistic" and r["evaluator"] == "cheap")
    added = optimistic["ttft_ms_median"] - direct["ttft_ms_median"]
    results["target"] = {"optimistic_added_ttft_ms": round(added, 3), "met": added < 1.0,
                         "proxy_hop_ttft_ms": round(off["ttft_ms_median"] - direct["ttft_ms_median"], 3),
                         "optimistic_over_off_ttft_ms": round(optimistic["ttft_ms_median"] - off["ttft_ms_median"], 3)}
    results["config"] = {"chunks": args.chunks, "chunk_delay_ms": args.chunk_delay_ms, "requests": args.requests,
                         "chunk_size": CHUNK_SIZE, "context_size": CONTEXT_SIZE, "evaluators_delay_ms": EVALUATORS,
                         "machine": f"{platform.machine()}, {mp.cpu_count()} cores, Python {platform.python_version()}"}
    args.out.write_text(json.dumps(results, indent=2))
    _plot(results, args.out.with_suffix(".png"))
    _report(results, args)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
