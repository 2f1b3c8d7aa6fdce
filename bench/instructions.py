"""Instructions per request of each proxy under callgrind: a load-independent twin of `bench.hotpath`.

    python -m bench.instructions [--requests 300] [--concurrency 8] [--stream [--chunk-delay-ms MS]]
                                 [--variants ...] [--json]

Each target (direct, the plain relay, guardstream rows) runs in its own process under
`valgrind --tool=callgrind --collect-atstart=no`, set up exactly as `bench.hotpath` sets it up (upstream,
target and client on one uvloop event loop, the collector tuned): after a warm-up, collection is switched on
for `--requests` requests and off again, through callgrind's client requests (a few lines of C compiled
here with the system's `callgrind.h`). Instruction counts do not move with the machine's load, so two
runs of the same code agree to a fraction of a per cent; a proxy's own count is its process's less the
direct row's (client and upstream cost the same in every process). Needs valgrind, its headers and a C
compiler (Debian: `apt-get install valgrind gcc`). `--chunk-delay-ms` paces the streamed chunks (one event an
upstream read, as a model streams them; the default sends them back to back, as `bench.hotpath` does).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import aiohttp

from bench import hotpath, passthrough
from bench._loop import install_uvloop
from bench.load import BodyMaker, LoadSpec
from bench.targets import BENCH_KEY, Env, Placement, guardstream_config
from bench.upstream import fixed_answer

_TOGGLE_C = """
#include <valgrind/callgrind.h>
void gs_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
"""


def _toggler(workdir: Path) -> Callable[[], None]:
    """callgrind's CALLGRIND_TOGGLE_COLLECT as a Python function (a no-op outside valgrind)."""
    src, lib = workdir / "toggle.c", workdir / "toggle.so"
    src.write_text(_TOGGLE_C)
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    fn = ctypes.CDLL(str(lib)).gs_toggle
    fn.restype = None
    return fn  # type: ignore[no-any-return]  # a ctypes function: typed by its restype only


async def _child(target: str, requests: int, concurrency: int, stream: bool, warmup: int,
                 chunk_delay_ms: float = 0.0) -> None:
    """One target, set up as bench.hotpath sets it up; collection on for `requests` requests."""
    from proxy.app import create_app
    from proxy.config import Settings
    from proxy.demo_upstream import DemoUpstream
    from proxy.gc_tuning import tune_gc
    from proxy.logs import configure_logging

    workdir = Path(tempfile.mkdtemp(prefix="guardstream-instr-"))
    toggle = _toggler(workdir)
    text = fixed_answer(1024)
    upstream = DemoUpstream(answer=lambda body: text, chunks=hotpath.STREAM_CHUNKS, record=False,
                            chunk_delay_s=chunk_delay_ms / 1000)
    up_runner, up_url = await upstream.start()
    runners = [up_runner]
    key: str | None = None
    unique = True
    try:
        if target == "direct":
            url = up_url
        elif target == "passthrough":
            runner, url = await hotpath._serve(passthrough.create_app(up_url))
            runners.append(runner)
        else:
            row = hotpath.VARIANTS[target]
            env = Env(workdir=workdir, upstream_url=up_url, placement=Placement(None, None, None))
            cfg, _ = guardstream_config(replace(row, stream_mode="buffered" if stream else None), env, 0)
            settings = Settings.model_validate(cfg)
            configure_logging(settings.logging)
            runner, url = await hotpath._serve(create_app(settings))
            runners.append(runner)
            key, unique = BENCH_KEY, row.unique
        tune_gc()
        url += "/v1/chat/completions"
        spec = LoadSpec(url=url, concurrency=concurrency, duration_s=0, unique=unique, stream=stream)
        bodies = BodyMaker(spec)
        headers = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            await hotpath.send(session, url, bodies, headers, warmup, concurrency)
            toggle()
            await hotpath.send(session, url, bodies, headers, requests, concurrency)
            toggle()
    finally:
        for r in reversed(runners):
            await r.cleanup()


_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.M)


def count(target: str, requests: int, concurrency: int, stream: bool, warmup: int, chunk_delay_ms: float = 0.0) -> float:
    """Instructions per request of the whole process serving `target` (run under callgrind)."""
    with tempfile.TemporaryDirectory(prefix="guardstream-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out}",
                sys.executable, "-m", "bench.instructions", "--child", target, "--requests", str(requests),
                "--concurrency", str(concurrency), "--warmup", str(warmup), "--chunk-delay-ms", str(chunk_delay_ms)]
        argv += ["--stream"] if stream else []
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        match = _TOTALS.search(out.read_bytes())
        if match is None:
            raise RuntimeError(f"no totals in {out}")
        return int(match.group(1)) / requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=160)
    parser.add_argument("--stream", action="store_true", help=f"streamed answers, {hotpath.STREAM_CHUNKS} chunks")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="pace the streamed chunks")
    parser.add_argument("--variants", default="guardstream-none,guardstream-rules")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        install_uvloop()
        asyncio.run(_child(args.child, args.requests, args.concurrency, args.stream, args.warmup, args.chunk_delay_ms))
        return 0
    targets = ["direct", "passthrough", *args.variants.split(",")]
    result = {t: count(t, args.requests, args.concurrency, args.stream, args.warmup, args.chunk_delay_ms)
              for t in targets}
    if args.json:
        print(json.dumps(result))
        return 0
    hotpath.print_ratios(result, ("k instr/req", "own k instr"), scale=1e-3, digits=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
