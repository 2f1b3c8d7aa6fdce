"""A learned evaluator under load: the proxy's requests/s and the evaluator's judged items/s, against rules only.

    python -m bench.learned_load [--seconds 10] [--concurrency 32] [--type classifier] [--stream]

The demo upstream, the proxy and an aiohttp load client share one uvloop loop (as `bench/hotpath.py`): the
client runs `--concurrency` requests at a time, each with a distinct prompt (no verdict cache hits), for
`--seconds`, against the proxy with the built-in rules and with the rules plus the learned evaluator
(`type: classifier` by default, whatever that type loads) on both stages. Requests from many streams share
batched model calls (evaluators/batching.py): the table shows items judged per second and the mean batch. Torch
is held to `--torch-threads` threads (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench._loop import install_uvloop
from bench.hotpath import _serve
from bench.load import BodyMaker, LoadSpec
from bench.targets import BENCH_KEY, rule_evaluators
from bench.upstream import fixed_answer


def _config(upstream_url: str, learned: str | None, workdir: Path) -> dict[str, Any]:
    import hashlib

    evaluators, inputs, outputs, actions, _ = rule_evaluators()
    for entry in evaluators.values():
        entry["cache"] = False
    if learned:
        evaluators["learned"] = {"type": learned, "timeout_ms": 30_000, "cache": False}
        inputs, outputs = [*inputs, "learned"], [*outputs, "learned"]
    return {"upstream": {"url": upstream_url},
            "client_keys": [{"sha256": hashlib.sha256(BENCH_KEY.encode()).hexdigest()}],
            "evaluators": evaluators,
            "policies": {"default": {"input": {"evaluators": inputs}, "output": {"evaluators": outputs},
                                     "actions": {**actions, "unsafe": "flag"}}},
            "audit": {"jsonl_path": str(workdir / "audit.jsonl")}, "logging": {"level": "warning"}}


async def _load(url: str, seconds: float, concurrency: int, stream: bool) -> tuple[int, float]:
    spec = LoadSpec(url=url, concurrency=concurrency, duration_s=seconds, unique=True, stream=stream)
    bodies = BodyMaker(spec)
    headers = {"content-type": "application/json", "authorization": f"Bearer {BENCH_KEY}"}
    done = 0
    deadline = time.perf_counter() + seconds

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.post(url, data=bodies.next(), headers=headers) as response:
                    await response.read()
                    assert response.status == 200, response.status
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done, time.perf_counter() - started


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from proxy.app import create_app
    from proxy.config import Settings
    from proxy.demo_upstream import DemoUpstream
    from proxy.logs import configure_logging
    from proxy.state import STATE

    upstream = DemoUpstream(answer=lambda body: fixed_answer(256), chunks=16, record=False)
    up_runner, up_url = await upstream.start()
    workdir = Path(tempfile.mkdtemp(prefix="guardstream-learned-"))
    out: dict[str, Any] = {}
    try:
        for row, learned in (("rules", None), (f"rules+{args.type}", args.type)):
            settings = Settings.model_validate(_config(up_url, learned, workdir))
            configure_logging(settings.logging)
            app = create_app(settings)
            runner, url = await _serve(app)
            try:
                url += "/v1/chat/completions"
                await _load(url, 2.0, args.concurrency, args.stream)  # warm-up (model load, first batches)
                counting = _instrument(app[STATE].evaluators.get("learned"))
                cpu = time.process_time()
                requests, elapsed = await _load(url, args.seconds, args.concurrency, args.stream)
                cpu = time.process_time() - cpu
                out[row] = {"requests_per_s": round(requests / elapsed, 1), "requests": requests,
                            "cpu_ms_per_request": round(cpu / requests * 1000, 3)}
                if counting is not None:
                    out[row].update(items_per_s=round(counting.items / elapsed, 1),
                                    mean_batch=round(counting.items / max(counting.calls, 1), 2))
            finally:
                await runner.cleanup()
    finally:
        await up_runner.cleanup()
    return out


class _Counting:
    """Wraps a micro-batcher's model call: items judged and calls made."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.items, self.calls = fn, 0, 0

    def __call__(self, batch: list[Any]) -> Any:
        self.items += len(batch)
        self.calls += 1
        return self.fn(batch)


def _instrument(evaluator: Any) -> _Counting | None:
    batcher = getattr(evaluator, "_batcher", None) or getattr(evaluator, "batcher", None)
    if batcher is None:
        return None
    counting = batcher.fn = _Counting(batcher.fn)
    return counting


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.learned_load", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--type", default="classifier", help="the learned evaluator's `type`")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch

        torch.set_num_threads(args.torch_threads)
    except ImportError:
        pass
    install_uvloop()
    print(json.dumps(asyncio.run(measure(args)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
