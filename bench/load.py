"""Closed-loop HTTP load from its own process: an asyncio (aiohttp client, uvloop) load generator.

    python -m bench.load --url http://127.0.0.1:9100/v1/chat/completions --concurrency 32 \
        --duration 10 --warmup 2 [--stream] [--unique] [--api-key KEY]

`--concurrency` connections each send one chat completion after another for
`--warmup` seconds (not recorded), then for `--duration` seconds (recorded).
Per request it records the latency (send to last byte) and, for streams, the
time to the first content token. It prints one JSON object: counts, errors,
requests/s, latency and TTFT percentiles, and its own CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from bench._loop import install_uvloop

PROMPT_SENTENCE = "Please summarise the notes from our weekly planning meeting in three short bullet points. "


@dataclass(frozen=True)
class LoadSpec:
    url: str
    concurrency: int
    duration_s: float
    warmup_s: float = 1.0
    stream: bool = False
    unique: bool = False  # a different prompt per request (defeats verdict caches)
    api_key: str | None = None
    prompt_bytes: int = 256
    model: str = "demo-model"
    timeout_s: float = 60.0


class BodyMaker:
    """Request bodies: the same bytes every time, or with a request counter spliced into the prompt."""

    MARK = "\u0000COUNTER\u0000"

    def __init__(self, spec: LoadSpec) -> None:
        prompt = (PROMPT_SENTENCE * (spec.prompt_bytes // len(PROMPT_SENTENCE) + 1))[:spec.prompt_bytes]
        body: dict[str, Any] = {"model": spec.model, "messages": [{"role": "user", "content": prompt}],
                                "stream": spec.stream}
        if spec.unique:
            body["messages"][0]["content"] = prompt + " Request " + self.MARK + "."
        encoded = json.dumps(body).encode()
        self.unique = spec.unique
        self.fixed = encoded
        mark = json.dumps(self.MARK)[1:-1].encode()
        self.head, _, self.tail = encoded.partition(mark)
        self.count = 0

    def next(self) -> bytes:
        if not self.unique:
            return self.fixed
        self.count += 1
        return self.head + str(self.count).encode() + self.tail


@dataclass
class Sample:
    started: float
    finished: float
    ttft: float | None = None


def has_content(line: bytes) -> bool:
    """True for an SSE data line that carries answer text (not the role chunk, not [DONE])."""
    if not line.startswith(b"data:"):
        return False
    data = line[5:].strip()
    if not data or data == b"[DONE]":
        return False
    try:
        payload = json.loads(data)
    except ValueError:
        return False
    for choice in payload.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or choice.get("text"):
            return True
    return False


async def _one(session: aiohttp.ClientSession, spec: LoadSpec, body: bytes, headers: dict[str, str]) -> Sample:
    started = time.perf_counter()
    ttft: float | None = None
    async with session.post(spec.url, data=body, headers=headers) as response:
        if response.status != 200:
            await response.read()
            raise HTTPStatusError(response.status)
        if not spec.stream:
            payload = await response.read()
            if b'"choices"' not in payload:
                raise BadResponse("no choices in the answer")
        else:
            done = False
            async for line in response.content:
                if ttft is None and has_content(line):
                    ttft = time.perf_counter() - started
                elif line.startswith(b"data: [DONE]"):
                    done = True
            if not done or ttft is None:
                raise BadResponse("stream ended without content or [DONE]")
    return Sample(started, time.perf_counter(), ttft)


class HTTPStatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.kind = f"http_{status}"


class BadResponse(Exception):
    kind = "bad_response"


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Drive the target for warm-up + duration; return the summary of the recorded window."""
    headers = {"content-type": "application/json"}
    if spec.api_key:
        headers["authorization"] = f"Bearer {spec.api_key}"
    bodies = BodyMaker(spec)
    samples: list[Sample] = []
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    t_start = loop.time()
    measure_from = time.perf_counter() + spec.warmup_s
    stop_at = measure_from + spec.duration_s

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop_at:
            sent = time.perf_counter()
            try:
                sample = await _one(session, spec, bodies.next(), headers)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is counted, none stops the run
                if sent >= measure_from:
                    kind = getattr(exc, "kind", type(exc).__name__)
                    errors[kind] = errors.get(kind, 0) + 1
                await asyncio.sleep(0.001)
                continue
            if sample.started >= measure_from and sample.finished <= stop_at:
                samples.append(sample)

    connector = aiohttp.TCPConnector(limit=spec.concurrency, limit_per_host=spec.concurrency)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(spec.concurrency)]
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu_before = time.process_time()
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        cpu_after = time.process_time()
        done, pending = await asyncio.wait(tasks, timeout=spec.timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return summarise(spec, samples, errors, cpu_after - cpu_before, loop.time() - t_start)


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/mean/max in milliseconds (nearest rank), None when there are no values."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    ordered = sorted(values)
    n = len(ordered)

    def rank(q: float) -> float:
        return ordered[min(n - 1, max(0, int(round(q * n + 0.5)) - 1))] * 1000

    return {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "mean": sum(ordered) / n * 1000,
            "max": ordered[-1] * 1000}


def summarise(spec: LoadSpec, samples: list[Sample], errors: dict[str, int], client_cpu_s: float,
              wall_s: float) -> dict[str, Any]:
    latencies = [s.finished - s.started for s in samples]
    ttfts = [s.ttft for s in samples if s.ttft is not None]
    return {
        "spec": asdict(spec) | {"api_key": "***" if spec.api_key else None},
        "requests": len(samples),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "rps": len(samples) / spec.duration_s,
        "latency_ms": percentiles(latencies),
        "ttft_ms": percentiles(ttfts) if spec.stream else None,
        "client_cpu_s": client_cpu_s,
        "wall_s": wall_s,
    }


def parse_args(argv: list[str] | None) -> LoadSpec:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="recorded seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before recording")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--unique", action="store_true", help="a different prompt per request")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--prompt-bytes", type=int, default=256)
    parser.add_argument("--model", default="demo-model")
    a = parser.parse_args(argv)
    return LoadSpec(url=a.url, concurrency=a.concurrency, duration_s=a.duration, warmup_s=a.warmup, stream=a.stream,
                    unique=a.unique, api_key=a.api_key, prompt_bytes=a.prompt_bytes, model=a.model)


def main(argv: list[str] | None = None) -> int:
    spec = parse_args(argv)
    install_uvloop()
    result = asyncio.run(run_load(spec))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
