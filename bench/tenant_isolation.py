"""Tenant isolation: one tenant opening more long streams than the upstream pool holds, another tenant asking.

    python -m bench.tenant_isolation [--streams 300] [--stream-s 12] [--out bench/results/tenant_isolation.json]

The proxy (default `upstream.pool_size` 256, two tenants' client keys, no evaluators) runs in front of a demo
upstream whose answers trickle for `--stream-s` seconds. Tenant a opens `--streams` streams at once; meanwhile
tenant b sends one non-streamed request every 0.5 s until a's streams end. Reported: a's statuses, and b's status
and latency over time. Without per-tenant limits a's streams take every pool connection and b waits for one
until `connect_timeout_s` (504); with them a gets 429 beyond its share and b is answered at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from proxy.auth import hash_key
from proxy.config import LoggingConfig, Settings
from proxy.demo_upstream import DemoUpstream
from proxy.logs import configure_logging
from tests.proxy_harness import ProxyHarness

WORDS = 120


async def probe(h: ProxyHarness, streams: int, stream_s: float) -> dict[str, Any]:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    a_statuses: Counter[str] = Counter()

    async def stream(session: aiohttp.ClientSession) -> None:
        try:
            async with session.post(h.base_url + "/v1/chat/completions", json=body,
                                    headers={"authorization": "Bearer key-a"}) as r:
                a_statuses[str(r.status)] += 1
                await r.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            a_statuses[type(exc).__name__] += 1

    b: list[dict[str, Any]] = []
    timeout = aiohttp.ClientTimeout(total=stream_s * 4)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        tasks = [asyncio.create_task(stream(session)) for _ in range(streams)]
        started = time.perf_counter()
        while time.perf_counter() - started < stream_s:
            await asyncio.sleep(0.5)
            sent = time.perf_counter()
            async with session.post(h.base_url + "/v1/chat/completions", json={**body, "stream": False},
                                    headers={"authorization": "Bearer key-b"}) as r:
                await r.read()
                b.append({"at_s": round(sent - started, 1), "status": r.status,
                          "latency_s": round(time.perf_counter() - sent, 3)})
        await asyncio.gather(*tasks)
    ok = [x["latency_s"] for x in b if x["status"] == 200]
    return {"tenant_a_statuses": dict(a_statuses), "tenant_b_requests": b,
            "tenant_b_ok": len(ok), "tenant_b_failed": len(b) - len(ok),
            "tenant_b_median_s": statistics.median(ok) if ok else None, "tenant_b_max_s": max(ok) if ok else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tenant_isolation", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--stream-s", type=float, default=12.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="guardstream-tenants-"))
    configure_logging(LoggingConfig(level="warning"))
    settings = Settings.model_validate({
        "client_keys": [{"sha256": hash_key("key-a"), "tenant": "a"}, {"sha256": hash_key("key-b"), "tenant": "b"}],
        "policies": {"default": {"input": {"evaluators": []}, "output": {"evaluators": []}}},
        "audit": {"jsonl_path": str(workdir / "audit.jsonl")}})
    answer = " ".join(f"w{i}" for i in range(WORDS))
    upstream = DemoUpstream(answer=lambda body: answer, chunk_delay_s=args.stream_s / WORDS, record=False)
    h = ProxyHarness(settings, upstream).start()
    try:
        result = h.call(probe(h, args.streams, args.stream_s), timeout=args.stream_s * 10 + 60)
    finally:
        h.stop()
    result = {"streams": args.streams, "stream_s": args.stream_s, "pool_size": settings.upstream.pool_size,
              "tenant_limit": settings.tenant_limits()[0], **result}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
