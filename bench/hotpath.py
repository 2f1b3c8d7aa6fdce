"""CPU microseconds per request of the proxy path, in one process: steadier than the suite on a busy machine.

    python -m bench.hotpath [--requests 4000] [--concurrency 32] [--repeat 5] [--stream] [--json]

Upstream (`DemoUpstream`), proxy and an aiohttp client share one uvloop event
loop; the process's CPU time per request is measured for the minimal
pass-through and for guardstream rows (no evaluators, rules, rules behind
cache hits). Client and upstream cost the same in every variant, so the
differences are the proxies' own costs, and their ratio to the pass-through's
is what the issue's targets are stated in. `--stream`: streamed answers of 20
chunks sent back to back, guardstream in its default `buffered` mode. Median of
`--repeat` rounds, each round measuring every target in turn (drift on a busy
machine hits them alike). This is the tool behind the before/after numbers of
the hot-path fixes (docs/benchmarks.md, "Profile").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
from aiohttp import web

from bench import passthrough
from bench._loop import install_uvloop
from bench.load import BodyMaker, LoadSpec
from bench.targets import BENCH_KEY, Env, Placement, Row, guardstream_config
from bench.upstream import fixed_answer

#: content chunks of a streamed answer (sent back to back)
STREAM_CHUNKS = 20

VARIANTS = {
    "guardstream-none": Row("guardstream-none", "guardstream", "", guard="none"),
    "guardstream-rules": Row("guardstream-rules", "guardstream", "", guard="rules"),
    "guardstream-cache": Row("guardstream-cache", "guardstream", "", guard="cache"),
}


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


async def _drive(url: str, key: str | None, unique: bool, requests: int, concurrency: int,
                 stream: bool = False) -> float:
    """CPU seconds per request for `requests` requests at `concurrency`."""
    spec = LoadSpec(url=url, concurrency=concurrency, duration_s=0, unique=unique, stream=stream)
    bodies = BodyMaker(spec)
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await send(session, url, bodies, headers, concurrency * 20, concurrency)  # warm-up
        started = time.process_time()
        await send(session, url, bodies, headers, requests, concurrency)
        return (time.process_time() - started) / requests


async def send(session: aiohttp.ClientSession, url: str, bodies: BodyMaker, headers: dict[str, str], count: int,
               concurrency: int) -> None:
    """`count` requests from `concurrency` workers, each answer read whole and checked to be a 200."""
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.post(url, data=bodies.next(), headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(variants: list[str], requests: int, concurrency: int, repeat: int,
                  stream: bool = False, gc_tuning: bool = True) -> dict[str, float]:
    from proxy.app import create_app
    from proxy.config import Settings
    from proxy.demo_upstream import DemoUpstream
    from proxy.gc_tuning import tune_gc
    from proxy.logs import configure_logging

    text = fixed_answer(1024)
    upstream = DemoUpstream(answer=lambda body: text, chunks=STREAM_CHUNKS, record=False)
    up_runner, up_url = await upstream.start()
    workdir = Path(tempfile.mkdtemp(prefix="guardstream-hotpath-"))
    env = Env(workdir=workdir, upstream_url=up_url, placement=Placement(None, None, None))
    targets: dict[str, tuple[str, str | None, bool]] = {"direct": (up_url, None, True)}
    runners = [up_runner]
    try:
        runner, url = await _serve(passthrough.create_app(up_url))
        runners.append(runner)
        targets["passthrough"] = (url, None, True)
        for name in variants:
            row = VARIANTS[name]
            cfg, _ = guardstream_config(replace(row, stream_mode="buffered" if stream else None), env, 0)
            settings = Settings.model_validate(cfg)
            configure_logging(settings.logging)
            runner, url = await _serve(create_app(settings))
            runners.append(runner)
            targets[name] = (url, BENCH_KEY, row.unique)
        if gc_tuning:  # what `guardstream serve` does after start-up; one process here, so every row gets it
            tune_gc()
        # rounds over all targets, median per target: drift on a busy machine hits every target alike
        costs: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(repeat):
            for name, (url, key, unique) in targets.items():
                costs[name].append(await _drive(url + "/v1/chat/completions", key, unique, requests, concurrency,
                                                stream))
        out = {name: statistics.median(values) for name, values in costs.items()}
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stream", action="store_true", help=f"streamed answers, {STREAM_CHUNKS} chunks")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-gc-tuning", action="store_true",
                        help="CPython's default collector settings (guardstream serve tunes them, proxy/gc_tuning.py)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    install_uvloop()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    result = asyncio.run(measure(args.variants.split(","), args.requests, args.concurrency, args.repeat,
                                 args.stream, not args.no_gc_tuning))
    if args.json:
        print(json.dumps(result))
        return 0
    print_ratios(result, ("CPU us/req", "proxy us/req"), scale=1e6, digits=1)
    return 0


def print_ratios(result: dict[str, float], columns: tuple[str, str], *, scale: float, digits: int) -> None:
    """A row per target: its cost, its own cost (less the client's, the `direct` row) and that as a multiple of
    the plain relay's own cost (`passthrough`); `scale` turns a cost into the columns' unit."""
    floor = result["direct"]
    base = result["passthrough"] - floor
    print(f"{'variant':<22}{columns[0]:>12}{columns[1]:>14}{'x pass-through':>16}")
    for name, value in result.items():
        own = value - floor
        ratio = f"{own / base:.2f}" if name != "direct" else ""
        print(f"{name:<22}{value * scale:>12.{digits}f}{own * scale:>14.{digits}f}{ratio:>16}")


if __name__ == "__main__":
    raise SystemExit(main())
