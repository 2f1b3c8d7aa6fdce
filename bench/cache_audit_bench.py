"""Benchmark: verdict-cache hit latency against a direct rule evaluation; audit throughput to Kafka with the
broker up, the spool's write rate with it down, and the replay rate once it is back.

    python -m bench.cache_audit_bench [--quick] [--out bench/results/cache_audit.json]

Uses REDIS_URL / KAFKA_BOOTSTRAP when set, else starts a redis-server and a tansu broker (tests/services.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evaluators.base import BaseEvaluator, EvalItem, Evaluator, Verdict

TEXT = ("Hi, I'm planning a trip to Lisbon next month with my family. Could you suggest a three-day itinerary "
        "with museums, a day trip to Sintra and some good places for seafood? My email is not needed.")


class RegexPII(BaseEvaluator):
    """Stand-in rule evaluator (used when evaluators.rules.pii is not installed): email, phone, card."""

    name, version = "regex-pii", "bench"
    _patterns = [re.compile(p) for p in (r"[\w.+-]+@[\w-]+\.[\w.]+", r"\+?\d[\d ()-]{7,}\d", r"\b(?:\d[ -]?){13,19}\b")]

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        out = []
        for item in items:
            hit = any(p.search(item.text) for p in self._patterns)
            out.append(Verdict(safe=not hit, evaluator=self.name, version=self.version,
                               categories=["pii"] if hit else []))
        return out


def rule_evaluator() -> Evaluator:
    try:
        from evaluators.registry import factory_for

        return factory_for("pii")("pii", {})
    except Exception:  # noqa: BLE001 - the rules engine is another branch: fall back to the stand-in
        return RegexPII()


def _stats_us(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"n": len(samples), "mean_us": statistics.fmean(samples) * 1e6,
            "p50_us": samples[len(samples) // 2] * 1e6, "p99_us": samples[int(len(samples) * 0.99)] * 1e6}


async def _timed(fn: Callable[[], Awaitable[Any]], n: int) -> dict[str, float]:
    for _ in range(min(200, n)):  # warm-up
        await fn()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - started)
    return _stats_us(samples)


async def bench_cache(redis_url: str, n: int) -> list[dict[str, Any]]:
    from proxy.cache import MemoryVerdictCache, cache_key
    from proxy.cache_redis import RedisVerdictCache
    from tests.services import unique_name

    ev = rule_evaluator()
    item = EvalItem.of_text(TEXT)

    async def compute() -> Verdict:
        return (await ev.evaluate([item]))[0]

    rows = [{"case": f"direct evaluation ({ev.name})", **await _timed(compute, n)}]
    memory = MemoryVerdictCache()
    rows.append({"case": "memory hit (key + lookup)",
                 **await _timed(lambda: memory.get_or_compute(cache_key(ev, "bench", item), compute, 3600), n)})
    redis_cache = RedisVerdictCache(redis_url, key_prefix=unique_name("gs-bench") + ":", op_timeout_ms=200)
    await redis_cache.start()
    rows.append({"case": "redis hit (key + GET)",
                 **await _timed(lambda: redis_cache.get_or_compute(cache_key(ev, "bench", item), compute, 3600), n)})
    counter = iter(range(10**9))

    async def miss() -> Verdict:
        fresh = EvalItem.of_text(f"{TEXT} {next(counter)}")
        return await redis_cache.get_or_compute(cache_key(ev, "bench", fresh), compute, 60)

    rows.append({"case": "redis miss (GET, lock, eval, store)", **await _timed(miss, max(200, n // 5))})
    await redis_cache.close()
    return rows


async def bench_audit(bootstrap: str, n: int) -> list[dict[str, Any]]:
    from proxy.audit_kafka import KafkaAuditSink
    from tests.services import free_port, unique_name
    from tests.test_audit_kafka import make_event

    events = [make_event(i) for i in range(n)]
    size = len(json.dumps(events[0]))
    rows = []

    async def drain(sink: KafkaAuditSink, done: Callable[[], bool], timeout: float = 120) -> float:
        started = time.perf_counter()
        deadline = started + timeout
        while not done() and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        return time.perf_counter() - started

    with tempfile.TemporaryDirectory() as spool_dir:
        topic = unique_name("gs-bench")
        sink = KafkaAuditSink(bootstrap, topic, spool_dir=spool_dir)
        await sink.start()
        while not sink.state()["broker_up"]:
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        for event in events:
            sink.emit(dict(event))
        emit_s = time.perf_counter() - started
        total = emit_s + await drain(sink, lambda: sink.counts["sent"] + sink.counts["replayed"] >= n)
        await sink.close()
        rows.append({"case": "kafka up: acked (acks=all, gzip)", "events": n, "seconds": total,
                     "events_per_s": n / total, "emit_us": emit_s / n * 1e6, "event_bytes": size})

        for fsync in ("batch", "always"):
            down = f"127.0.0.1:{free_port()}"
            sink = KafkaAuditSink(down, f"{topic}-{fsync}", spool_dir=spool_dir, spool_fsync=fsync)  # type: ignore[arg-type]
            await sink.start()
            started = time.perf_counter()
            for event in events:
                sink.emit(dict(event))
            emit_s = time.perf_counter() - started
            total = emit_s + await drain(sink, lambda s=sink: s.state()["spool_depth"] >= n)
            await sink.close()
            rows.append({"case": f"broker down: spooled (fsync={fsync})", "events": n, "seconds": total,
                         "events_per_s": n / total, "emit_us": emit_s / n * 1e6, "event_bytes": size})

        sink = KafkaAuditSink(bootstrap, f"{topic}-batch", spool_dir=spool_dir)
        started = time.perf_counter()
        await sink.start()
        total = await drain(sink, lambda: sink.counts["replayed"] >= n)
        await sink.close()
        rows.append({"case": "broker back: spool replayed", "events": n, "seconds": total,
                     "events_per_s": n / total, "emit_us": 0.0, "event_bytes": size})
    return rows


def _print(cache_rows: list[dict[str, Any]], audit_rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="verdict cache: one lookup (hit) vs evaluating directly")
    for col in ("case", "n", "mean µs", "p50 µs", "p99 µs"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in cache_rows:
        table.add_row(r["case"], str(r["n"]), f"{r['mean_us']:.1f}", f"{r['p50_us']:.1f}", f"{r['p99_us']:.1f}")
    console.print(table)
    table = Table(title="audit events")
    for col in ("case", "events", "seconds", "events/s", "emit() µs", "bytes/event"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in audit_rows:
        table.add_row(r["case"], str(r["events"]), f"{r['seconds']:.2f}", f"{r['events_per_s']:,.0f}",
                      f"{r['emit_us']:.1f}", str(r["event_bytes"]))
    console.print(table)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import structlog

    from tests import services

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up
    started: list[services.ManagedServer] = []
    redis_url = services.env_redis_url()
    if not redis_url:
        server = services.start_redis()
        started.append(server)
        redis_url = f"redis://127.0.0.1:{server.port}/0"
    bootstrap = services.env_kafka_bootstrap()
    if not bootstrap:
        server = services.start_kafka()
        started.append(server)
        bootstrap = f"127.0.0.1:{server.port}"
    try:
        n_cache = 2000 if args.quick else 10000
        n_events = 5000 if args.quick else 50000
        cache_rows = await bench_cache(redis_url, n_cache)
        audit_rows = await bench_audit(bootstrap, n_events)
    finally:
        for server in started:
            server.stop()
    _print(cache_rows, audit_rows)
    return {"benchmark": "cache_audit", "ts": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count(), "loadavg_1m_at_end": os.getloadavg()[0]},
            "servers": {"redis": "own redis-server" if not services.env_redis_url() else "REDIS_URL",
                        "kafka": "own tansu (memory storage)" if not services.env_kafka_bootstrap() else "KAFKA_BOOTSTRAP"},
            "cache": cache_rows, "audit": audit_rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--out", default="bench/results/cache_audit.json")
    args = parser.parse_args(argv)
    try:
        import uvloop  # the proxy's loop where installed

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(main_async(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
