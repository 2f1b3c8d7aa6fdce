"""Faults under load: a steady mix of streaming and non-streaming traffic from two tenants (one policy
fail_open, one fail_closed) while one part of the system fails and recovers; loopback only.

    python -m bench.faults [--phase-s 10] [--concurrency 16] [--only kafka_killed ...] [--out FILE]

Each scenario: warm (phase_s), fault (phase_s), recovery (phase_s); then the topic is read back and every
audit event the proxy produced must be there (ids compared; duplicates allowed: at least once). The proxy runs
in-process (tests/proxy_harness.py) with a real redis-server, a real tansu broker behind a TCP relay
(tests/netfault.py: "killed" = every connection reset and the port refusing, "hung" = no bytes moving; the
broker keeps its log as a disk-backed Kafka does through a restart), and a demo upstream that can be made slow,
failing or cutting streams. The fast version of every scenario runs in tests/test_faults.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.fault_load import Load, during_fault, summarise
from proxy.auth import hash_key
from proxy.config import Settings
from proxy.demo_upstream import DemoUpstream
from tests import services
from tests.netfault import TcpRelay
from tests.proxy_harness import ProxyHarness

READ_TIMEOUT_S = 1.0
SLOW_ANSWER_S, SLOW_CHUNK_S = 0.3, 0.1  # "slow": late, but never past the read timeout
EVALUATOR_TIMEOUT_MS = 150
KEYS = {"open": "key-tenant-open", "closed": "key-tenant-closed"}


class FaultyUpstream(DemoUpstream):
    """The demo upstream with a switch: `fault` None, "slow" (every answer and stream chunk late, within the
    read timeout), "stalled" (no answer within it), "5xx" (503 errors) or "cut" (connections dropped,
    streams halfway)."""

    fault: str | None = None

    def __init__(self) -> None:
        super().__init__(record=False, chunks=8)

    @property  # type: ignore[override]
    def chunk_delay_s(self) -> float:
        return SLOW_CHUNK_S if self.fault == "slow" else 0.005

    @chunk_delay_s.setter
    def chunk_delay_s(self, value: float) -> None:  # the dataclass __init__ sets it: the switch decides
        pass

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        fault = self.fault
        if fault == "5xx":
            await request.read()
            return web.json_response({"error": {"message": "overloaded", "type": "server_error", "param": None,
                                                "code": "upstream_503"}}, status=503)
        if fault in ("slow", "stalled"):
            await asyncio.sleep(SLOW_ANSWER_S if fault == "slow" else READ_TIMEOUT_S + 0.5)
        if fault == "cut":
            body = await request.json()
            if not body.get("stream"):
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            return await self._stream(request, body, [self.answer(body)], chat, "cut-stream")
        return await super()._generate(request, chat)


def rig_settings(tmp: Path, redis_port: int, bootstrap: str, topic: str) -> Settings:
    def evaluators(on_error: str) -> dict[str, Any]:
        common = {"type": "tests.keyword_evaluator:create", "on_error": on_error, "timeout_ms": EVALUATOR_TIMEOUT_MS,
                  "cache": True}
        return {f"secrets_{on_error}": {**common, "options": {"words": ["hunter2"], "category": "secret"}},
                f"pii_{on_error}": {**common, "options": {"words": ["@example.com"], "category": "pii"}}}

    def policy(on_error: str) -> dict[str, Any]:
        names = [f"secrets_{on_error}", f"pii_{on_error}"]
        return {"input": {"evaluators": names}, "output": {"evaluators": names},
                "actions": {"secret": "block", "pii": "flag", "default": "block"}}

    return Settings.model_validate({
        "server": {"shutdown_grace_s": 2},
        "upstream": {"url": "http://127.0.0.1:9", "api_key": "sk-upstream-faults", "read_timeout_s": READ_TIMEOUT_S},
        "client_keys": [{"sha256": hash_key(KEYS["open"]), "tenant": "open", "policy": "fail_open"},
                        {"sha256": hash_key(KEYS["closed"]), "tenant": "closed", "policy": "fail_closed"}],
        "evaluators": {**evaluators("fail_open"), **evaluators("fail_closed")},
        "policies": {"fail_open": policy("fail_open"), "fail_closed": policy("fail_closed")},
        "cache": {"redis_url": f"redis://127.0.0.1:{redis_port}/0", "op_timeout_ms": 50,
                  "key_prefix": services.unique_name("gs-faults") + ":"},
        "audit": {"kafka_bootstrap": bootstrap, "topic": topic, "spool_dir": str(tmp / "spool"), "content": "hash",
                  "delivery_timeout_ms": 1000, "flush_timeout_s": 5},
    })


@dataclass
class Rig:
    """Redis, a Kafka broker behind a relay, a faulty upstream and the proxy, started once."""

    tmp: Path
    redis: services.ManagedServer = field(init=False)
    broker: services.ManagedServer = field(init=False)
    relay: TcpRelay = field(init=False)
    upstream: FaultyUpstream = field(init=False)
    harness: ProxyHarness = field(init=False)
    topic: str = field(default_factory=lambda: services.unique_name("gs-faults"))
    produced: list[str] = field(default_factory=list)

    def start(self) -> Rig:
        self.redis = services.start_redis()
        relay_port = services.free_port()
        self.broker = services.start_kafka(advertised_port=relay_port)
        self.relay = TcpRelay(self.broker.port, relay_port).start()
        self.upstream = FaultyUpstream()
        settings = rig_settings(self.tmp, self.redis.port, f"127.0.0.1:{relay_port}", self.topic)
        self.harness = ProxyHarness(settings, self.upstream).start()
        sink = self.state.audit
        emit = sink.emit

        def recording_emit(event: dict[str, Any]) -> None:
            self.produced.append(event["event_id"])
            emit(event)

        sink.emit = recording_emit  # type: ignore[method-assign]
        return self

    @property
    def state(self) -> Any:
        assert self.harness.state is not None
        return self.harness.state

    def stop(self) -> None:
        self.harness.stop()
        self.relay.stop()
        self.broker.stop()
        self.redis.stop()

    def set_evaluators(self, **attrs: Any) -> None:
        for evaluator in self.state.evaluators.values():
            for name, value in attrs.items():
                setattr(evaluator, name, value)

    def audit_state(self) -> dict[str, Any]:
        return self.state.audit.state()


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    inject: Callable[[Rig], None]
    recover: Callable[[Rig], None]
    expect: str


def _upstream(fault: str | None) -> Callable[[Rig], None]:
    def switch(rig: Rig) -> None:
        rig.upstream.fault = fault
    return switch


SCENARIOS = [
    Scenario("redis_killed", "redis-server SIGKILLed, restarted on the same port",
             lambda r: r.redis.stop(), lambda r: r.redis.start(),
             "served without the cache (circuit open), nothing fails; cache used again after restart"),
    Scenario("kafka_killed", "broker connections reset, port refusing; then listening again",
             lambda r: r.relay.cut(), lambda r: r.relay.restore(),
             "served; events wait in the write-ahead log and are delivered after recovery"),
    Scenario("kafka_hung", "broker connections open but no byte moving; then flowing again",
             lambda r: r.relay.freeze(), lambda r: r.relay.thaw(),
             "served; unacknowledged after delivery_timeout_ms = outage; events delivered after recovery"),
    Scenario("evaluator_slow", f"every evaluator takes 3x its {EVALUATOR_TIMEOUT_MS} ms timeout",
             lambda r: r.set_evaluators(delay_ms=EVALUATOR_TIMEOUT_MS * 3), lambda r: r.set_evaluators(delay_ms=0),
             "fail_open tenant served (error audited), fail_closed tenant blocked (evaluator_error)"),
    Scenario("evaluator_failing", "every evaluator raises",
             lambda r: r.set_evaluators(fail="raise"), lambda r: r.set_evaluators(fail=None),
             "fail_open tenant served (error audited), fail_closed tenant blocked (evaluator_error)"),
    Scenario("upstream_slow", f"answers {SLOW_ANSWER_S:g} s late, each stream chunk {SLOW_CHUNK_S:g} s late",
             _upstream("slow"), _upstream(None), "served, slower"),
    Scenario("upstream_stalled", f"no answer within the {READ_TIMEOUT_S:g} s read timeout",
             _upstream("stalled"), _upstream(None), "504 upstream_timeout (OpenAI-shaped); blocked prompts unaffected"),
    Scenario("upstream_5xx", "upstream answers 503", _upstream("5xx"), _upstream(None),
             "503 relayed as sent; blocked prompts unaffected"),
    Scenario("upstream_cuts", "upstream drops connections, streams halfway", _upstream("cut"), _upstream(None),
             "502 upstream_unreachable; streams end with an upstream_stream_interrupted error event"),
]


async def run_scenario(rig: Rig, scenario: Scenario, phase_s: float, concurrency: int) -> dict[str, Any]:
    """warm, fault, recovery under load; then wait for the log to drain and read the topic back."""
    produced_before = len(rig.produced)
    load = Load(rig.harness.base_url, KEYS, concurrency=concurrency, tag=scenario.name)
    task = asyncio.create_task(load.run())
    await asyncio.sleep(phase_s)
    load.phase = "fault"
    await asyncio.to_thread(scenario.inject, rig)
    await asyncio.sleep(phase_s)
    load.phase = "recovery"
    await asyncio.to_thread(scenario.recover, rig)
    await asyncio.sleep(phase_s)
    load.stop()
    await task
    started = time.monotonic()
    while time.monotonic() - started < 30:
        state = rig.audit_state()
        if state["spool_depth"] == 0 and state["broker_up"]:
            break
        await asyncio.sleep(0.1)
    drained_s = time.monotonic() - started
    produced = rig.produced[produced_before:]
    consumed = await asyncio.to_thread(consume_ids, f"127.0.0.1:{rig.relay.port}", rig.topic, set(rig.produced))
    delivered = set(produced) & set(consumed)
    report = {"scenario": scenario.name, "fault": scenario.what, "expected": scenario.expect,
              **summarise(load.outcomes), "during_fault": during_fault(summarise(load.outcomes)["by_phase"]),
              "events": {"produced": len(produced), "delivered": len(delivered),
                         "missing": len(set(produced) - delivered),
                         "duplicates_in_topic": len(consumed) - len(set(consumed)),
                         "unknown_in_topic": len(set(consumed) - set(rig.produced)),
                         "seconds_to_drain_after_recovery": round(drained_s, 2)},
              "audit": {k: rig.audit_state()[k] for k in ("sent", "replayed", "spooled", "dropped")},
              "cache": rig.state.cache.state().get("ok")}
    return report


def consume_ids(bootstrap: str, topic: str, want: set[str], timeout_s: float = 20.0) -> list[str]:
    """Every event id in the topic (with repeats), reading until all of `want` arrived or the timeout."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, max_poll_interval_ms=5000)
    ids: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                ids.extend(json.loads(r.value)["event_id"] for r in records)
            if want <= set(ids):
                for records in consumer.poll(timeout_ms=300).values():  # late duplicates
                    ids.extend(json.loads(r.value)["event_id"] for r in records)
                break
    finally:
        consumer.close()
    return ids


def print_table(reports: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="faults under load (warm / fault / recovery)")
    for col in ("scenario", "requests", "during the fault", "recovery", "p50 ms warm/fault/recov",
                "events produced/delivered"):
        table.add_column(col)
    for r in reports:
        fault = ", ".join(f"{k} {v}" for k, v in sorted(during_fault(r["by_phase"]).items()))
        recovery = ", ".join(f"{k} {v}" for k, v in sorted(r["by_phase"].get("recovery", {}).items()))
        lat = "/".join(str(r["latency_ms"].get(p, {}).get("p50", "-")) for p in ("warm", "during_fault", "recovery"))
        ev = r["events"]
        table.add_row(r["scenario"], str(r["requests"]), fault, recovery, lat, f"{ev['produced']}/{ev['delivered']}")
    Console(width=200).print(table)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        rig = await asyncio.to_thread(Rig(Path(tmp)).start)
        try:
            reports = []
            for scenario in chosen:
                print(f"scenario {scenario.name}: {scenario.what}", flush=True)
                reports.append(await run_scenario(rig, scenario, args.phase_s, args.concurrency))
        finally:
            await asyncio.to_thread(rig.stop)
    print_table(reports)
    return {"benchmark": "faults", "ts": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count(), "loadavg_1m_at_end": os.getloadavg()[0]},
            "phase_s": args.phase_s, "concurrency": args.concurrency, "scenarios": reports}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase-s", type=float, default=10.0, help="seconds per phase (warm, fault, recovery)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", nargs="*", help="scenario names")
    parser.add_argument("--out", default="bench/results/faults.json")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
