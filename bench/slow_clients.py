"""Bounded resources: 1,000 concurrent slow streams plus 1,000 slow clients against `guardstream serve`.

    python -m bench.slow_clients [--streams 1000] [--slow 1000] [--out bench/results/slow_clients.json]

The proxy and the upstream run as their own processes (the proxy's memory is its own); this process is the
clients. Traffic, all at once:
- `streams` streaming requests whose answers trickle for ~20 s (40 chunks, 0.5 s apart), read normally;
- slow clients, in four equal groups: slowloris headers (a header byte per second, never finished), slow
  bodies (Content-Length announced, a body byte per second), slow readers (a 4 MB answer read at 16 kB/s)
  and stalled readers (read the first bytes of a 4 MB answer, then nothing).
Reported: the proxy's RSS (sampled, and its kernel high-water mark VmHWM), open fds, how long the server
took to close slowloris connections (keepalive_timeout_s), the 408s for slow bodies (body_timeout_s), the
stalled readers disconnected (write_timeout_s) and how much of their answers the upstream got out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

KEEPALIVE_S, BODY_S, WRITE_S = 5.0, 5.0, 8.0
CONFIG = f"""
server: {{keepalive_timeout_s: {KEEPALIVE_S}, body_timeout_s: {BODY_S}, write_timeout_s: {WRITE_S},
          shutdown_grace_s: 2}}
upstream: {{pool_size: 4096, read_timeout_s: 30}}
evaluators:
  secrets: {{type: "tests.keyword_evaluator:create", options: {{words: [hunter2], category: secret}}}}
policies:
  default: {{input: {{evaluators: [secrets]}}, output: {{evaluators: [secrets]}}}}
audit: {{jsonl_path: AUDIT}}
logging: {{level: warning}}
"""


# -- the upstream process ------------------------------------------------------------------------------
class TrickleUpstream:
    """Streams `model` = "trickle-N-D" (N chunks, D s apart) or "big-N" (N x 1 kB chunks, as fast as taken)."""

    def __init__(self) -> None:
        self.stats = Counter[str]()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.stats))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        kind, *params = str(body.get("model")).split("-")
        count, delay, piece = (int(params[0]), float(params[1]), "tick ") if kind == "trickle" else \
            (int(params[0]), 0.0, "x" * 1000)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        if kind == "big":  # a small send buffer: what the upstream got out is what the proxy took (+ 64 kB)
            request.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        chunk = ("data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                        "choices": [{"index": 0, "delta": {"content": piece},
                                                     "finish_reason": None}]}) + "\n\n").encode()
        try:
            for _ in range(count):
                await response.write(chunk)
                self.stats[f"{kind}_bytes"] += len(chunk)
                if delay:
                    await asyncio.sleep(delay)
            await response.write(b"data: [DONE]\n\n")
            self.stats[f"{kind}_finished"] += 1
        except (ConnectionResetError, asyncio.CancelledError):
            self.stats[f"{kind}_disconnected"] += 1
            raise
        return response


def serve_upstream(port: int) -> None:
    _raise_fd_limit()
    web.run_app(TrickleUpstream().app(), host="127.0.0.1", port=port, access_log=None, print=None,
                handler_cancellation=True, backlog=4096)


# -- the clients ---------------------------------------------------------------------------------------
def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


async def _sampler(pid: int, samples: list[dict[str, Any]], stop: asyncio.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        try:
            samples.append({"t": round(time.monotonic() - started, 1), **_proc_status(pid)})
        except OSError:
            return
        await asyncio.sleep(0.5)


def _request(model: str, body_extra: str = "") -> bytes:
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "go" + body_extra}]})
    return body.encode()


async def normal_stream(port: int, results: Counter[str]) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = _request("trickle-40-0.5")
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        data = await asyncio.wait_for(reader.read(), timeout=120)
        results["stream_ok" if b"data: [DONE]" in data else "stream_incomplete"] += 1
        writer.close()
    except (TimeoutError, OSError) as exc:
        results[f"stream_error:{type(exc).__name__}"] += 1


async def slowloris(port: int, closes: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    try:
        for i in range(600):
            writer.write(b"X-Slow-%d: a\r\n" % i)
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), timeout=1.0) == b"":
                    break
            except TimeoutError:
                continue
    except OSError:
        pass
    closes.append(time.monotonic() - started)
    writer.close()


async def slow_body(port: int, results: Counter[str], took: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = _request("trickle-1-0")
    started = time.monotonic()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body))
    status = b""
    try:
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                status = await asyncio.wait_for(reader.read(12), timeout=1.0)
                break
            except TimeoutError:
                continue
    except OSError:
        pass
    took.append(time.monotonic() - started)
    results[f"slow_body_{status.decode(errors='replace').strip() or 'closed'}"] += 1
    writer.close()


async def slow_reader(port: int, stall: bool, results: Counter[str], big_kb: int = 4000) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=16384)
    transport = writer.transport
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    body = _request(f"big-{big_kb}")
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    got = 0
    started = time.monotonic()
    try:
        got += len(await reader.read(16384))
        if stall:
            transport.pause_reading()
            await asyncio.sleep(WRITE_S + 6)
            transport.resume_reading()
            try:
                rest = await asyncio.wait_for(reader.read(), timeout=10)
            except ConnectionResetError:
                rest = b""
            results["stalled_disconnected" if b"[DONE]" not in rest else "stalled_served"] += 1
            return
        while time.monotonic() - started < 20:  # 16 kB/s for 20 s: slow but making progress
            chunk = await reader.read(16384)
            if not chunk:
                break
            got += len(chunk)
            await asyncio.sleep(1.0)
        results["slow_reader_alive" if got > 100_000 else "slow_reader_alive_under_100kB"] += 1
    except (TimeoutError, OSError) as exc:
        results[f"reader_error:{type(exc).__name__}"] += 1
    finally:
        writer.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    fd_limit = _raise_fd_limit()
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    up_port, proxy_port = _free_port(), _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="gs-slow-"))
    config = tmp / "guardstream.yaml"
    config.write_text(CONFIG.replace("AUDIT", str(tmp / "audit.jsonl")))
    upstream = subprocess.Popen([sys.executable, "-m", "bench.slow_clients", "--serve-upstream", str(up_port)],
                                env=env, cwd=root)
    proxy = subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve", "--port", str(proxy_port), "--upstream",
                              f"http://127.0.0.1:{up_port}", "--config", str(config)], env=env, cwd=root,
                             stderr=open(tmp / "proxy.log", "w"))
    from tests.services import wait_for_port

    wait_for_port(up_port, 20)
    wait_for_port(proxy_port, 20)
    await asyncio.sleep(0.5)
    idle = _proc_status(proxy.pid)
    samples: list[dict[str, Any]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sampler(proxy.pid, samples, stop))
    results: Counter[str] = Counter()
    closes: list[float] = []
    body_took: list[float] = []
    quarter = args.slow // 4
    started = time.monotonic()
    after_round: list[float] = []
    for _ in range(args.rounds):
        tasks = [normal_stream(proxy_port, results) for _ in range(args.streams)]
        tasks += [slowloris(proxy_port, closes) for _ in range(quarter)]
        tasks += [slow_body(proxy_port, results, body_took) for _ in range(quarter)]
        tasks += [slow_reader(proxy_port, False, results, args.big_kb) for _ in range(quarter)]
        tasks += [slow_reader(proxy_port, True, results, args.big_kb) for _ in range(quarter)]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        results.update(f"task_error:{type(o).__name__}" for o in outcomes if isinstance(o, BaseException))
        await asyncio.sleep(1)
        after_round.append(round(_proc_status(proxy.pid)["VmRSS"] / 2**20, 1))
    elapsed = time.monotonic() - started
    stop.set()
    await sampler
    final = _proc_status(proxy.pid)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{up_port}/stats") as r:
            upstream_stats = await r.json()
        async with s.get(f"http://127.0.0.1:{proxy_port}/metrics") as r:
            metrics = await r.text()
    slow_disconnects = next((float(line.split()[-1]) for line in metrics.splitlines()
                             if line.startswith("guardstream_slow_client_disconnects_total ")), 0.0)
    proxy.send_signal(signal.SIGTERM)
    rc = proxy.wait(timeout=30)
    upstream.terminate()
    upstream.wait(timeout=10)
    peak_rss = max(s["VmRSS"] for s in samples) if samples else 0
    report = {
        "benchmark": "slow_clients", "ts": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg_1m_at_end": os.getloadavg()[0], "fd_limit": fd_limit},
        "config": {"keepalive_timeout_s": KEEPALIVE_S, "body_timeout_s": BODY_S, "write_timeout_s": WRITE_S,
                   "read_bufsize": 65536, "max_header_bytes": 8190},
        "load": {"rounds": args.rounds, "big_answer_kb": args.big_kb, "streams": args.streams, "slowloris": quarter,
                 "slow_bodies": quarter, "slow_readers": quarter,
                 "stalled_readers": quarter, "seconds": round(elapsed, 1)},
        "results": dict(results),
        "proxy": {"rss_idle_mb": round(idle["VmRSS"] / 2**20, 1), "rss_peak_sampled_mb": round(peak_rss / 2**20, 1),
                  "vmhwm_mb": round(final["VmHWM"] / 2**20, 1), "rss_after_each_round_mb": after_round,
                  "fds_peak": max(s["fds"] for s in samples) if samples else 0,
                  "kb_per_connection_at_peak": round((peak_rss - idle["VmRSS"]) / 1024 /
                                                     max(1, args.streams + args.slow), 1),
                  "slow_client_disconnects": slow_disconnects, "exit_code": rc},
        "slowloris_closed_after_s": _spread(closes),
        "slow_body_answered_after_s": _spread(body_took),
        "upstream": upstream_stats,
        "upstream_mb_per_big_reader": round(upstream_stats.get("big_bytes", 0) / 2**20
                                            / max(1, 2 * quarter * args.rounds), 2),
        "rss_samples": samples[:: max(1, len(samples) // 60)],
    }
    return report


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"n": len(values), "min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "max": round(max(values), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=1000, help="slow clients, split in four kinds")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole load (a leak grows per round)")
    parser.add_argument("--big-kb", type=int, default=4000, help="answer size for slow and stalled readers")
    parser.add_argument("--out", default="bench/results/slow_clients.json")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    report = asyncio.run(run(args))
    from rich.console import Console

    Console().print_json(data={k: v for k, v in report.items() if k != "rss_samples"})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
