"""The Kafka audit sink against a real Kafka-protocol broker (tansu): events arrive valid and keyed; a broker
outage keeps them in the write-ahead log and they are replayed in order, none lost; a log left by a closed or
killed proxy is drained by the next one (tests/test_audit_wal.py: killed with the broker up, too).

tansu keeps messages in memory: a restarted broker has lost what it held. Tests therefore consume what
was delivered before stopping it, and compare what arrives afterwards with what was emitted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from proxy.audit import build_audit
from proxy.audit_kafka import KafkaAuditSink
from proxy.config import AuditConfig
from proxy.metrics import REGISTRY
from proxy.schemas.events import content_digest, new_event, validation_errors
from tests import services


def make_event(seq: int, request_id: str | None = None) -> dict[str, Any]:
    """A valid v1 event; `seq` records emission order."""
    messages = [{"role": "user", "content": f"prompt {seq}"}]
    return new_event(
        request_id=request_id or f"req-{seq % 7}", tenant="acme", policy="default", stage="input",
        action="block", mode="enforce", route="/v1/chat/completions", categories=["pii"],
        verdicts=[{"evaluator": "pii", "version": "1", "safe": False, "categories": ["pii"], "score": None,
                   "latency_ms": 0.2, "cached": False, "error": None}],
        model="tiny", upstream="http://127.0.0.1:8000",
        content={"mode": "hash", "sha256": content_digest(messages, None)}, latency_ms=1.5, seq=seq)


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[tuple[int, bytes, dict]]:
    """(partition, key, event) for everything in the topic, waiting until `expected` arrived."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, max_poll_interval_ms=5000)
    got: list[tuple[int, bytes, dict]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                got.extend((r.partition, r.key, json.loads(r.value)) for r in records)
            if len(got) >= expected:
                for records in consumer.poll(timeout_ms=300).values():  # anything extra (duplicates)?
                    got.extend((r.partition, r.key, json.loads(r.value)) for r in records)
                break
    finally:
        consumer.close()
    return got


def assert_delivered_in_order(got: list[tuple[int, bytes, dict]], emitted: list[dict[str, Any]]) -> None:
    """Every emitted event arrived (duplicates only of the same event_id), in emission order per partition."""
    seen: dict[str, dict] = {}
    per_partition: dict[int, list[int]] = {}
    for partition, key, event in got:
        assert key == event["request_id"].encode()
        if event["event_id"] in seen:
            continue  # at-least-once: consumers dedupe on event_id
        seen[event["event_id"]] = event
        per_partition.setdefault(partition, []).append(event["seq"])
    assert set(seen) == {e["event_id"] for e in emitted}, (
        f"missing {len({e['event_id'] for e in emitted} - set(seen))}, "
        f"unexpected {len(set(seen) - {e['event_id'] for e in emitted})}")
    for partition, seqs in per_partition.items():
        assert seqs == sorted(seqs), f"partition {partition} out of order: {seqs}"


async def wait_until(pred: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def counter(outcome: str) -> float:
    return REGISTRY.get_sample_value("guardstream_audit_events_total", {"outcome": outcome}) or 0.0


def sink_for(bootstrap: str, topic: str, spool_dir: Path, **kwargs: Any) -> KafkaAuditSink:
    options = {"spool_dir": spool_dir, "delivery_timeout_ms": 1500, "reconnect_max_s": 0.5,
               "flush_timeout_s": 3.0, **kwargs}
    return KafkaAuditSink(bootstrap, topic, **options)


def acked(sink: KafkaAuditSink) -> int:
    return sink.counts["sent"] + sink.counts["replayed"]


async def test_events_arrive_valid_keyed_and_compressed(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    sink = build_audit(AuditConfig(kafka_bootstrap=kafka_bootstrap, topic=topic, spool_dir=str(tmp_path)))
    assert isinstance(sink, KafkaAuditSink) and topic in sink.destination
    await sink.start()
    emitted = [make_event(i) for i in range(20)]
    for event in emitted:
        assert validation_errors(event) == []
        sink.emit(event)
    await wait_until(lambda: acked(sink) == 20)
    state = sink.state()
    assert state["ok"] and state["broker_up"] and state["mode"] == "direct" and state["spool_depth"] == 0
    config = sink._producer.config  # the producer guarantees asked for
    assert (config["acks"], config["enable_idempotence"], config["compression_type"]) == (-1, True, "gzip")
    await sink.close()
    got = consume(kafka_bootstrap, topic, 20)
    assert [validation_errors(event) for _, _, event in got] == [[]] * 20
    assert_delivered_in_order(got, emitted)


async def test_broker_outage_spools_then_replays_in_order(kafka_server: services.ManagedServer | None,
                                                          kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    if kafka_server is None:
        pytest.skip("KAFKA_BOOTSTRAP points at a shared broker: the outage test needs one we can stop")
    spooled_before, replayed_before = counter("spooled"), counter("replayed")
    sink = sink_for(kafka_bootstrap, topic, tmp_path, spool_fsync="always")
    await sink.start()
    first = [make_event(i) for i in range(30)]
    for event in first:
        sink.emit(event)
    await wait_until(lambda: acked(sink) == 30)
    assert_delivered_in_order(consume(kafka_bootstrap, topic, 30), first)

    kafka_server.stop()
    try:
        during = [make_event(i) for i in range(30, 90)]
        for i, event in enumerate(during):
            sink.emit(event)
            if i % 10 == 0:
                await asyncio.sleep(0.05)  # a stream, not one burst
        await wait_until(lambda: sink.state()["spool_depth"] == 60 and not sink.state()["broker_up"], timeout=10)
        state = sink.state()
        assert state["mode"] == "spooling"
        assert len(sink._spool.pending_bytes().splitlines()) == 60
    finally:
        kafka_server.start()
    await wait_until(lambda: sink.state()["spool_depth"] == 0 and sink.state()["pending"] == 0)
    after = [make_event(i) for i in range(90, 100)]
    for event in after:
        sink.emit(event)
    await sink.close()
    assert sink.counts["dropped"] == 0 and sink.state()["spool_bytes"] == 0
    # emitted before the outage was detected: in the log, not counted "spooled"; all acknowledged as "replayed"
    assert counter("spooled") - spooled_before >= 0 and counter("replayed") - replayed_before >= 60
    assert_delivered_in_order(consume(kafka_bootstrap, topic, 70), during + after)


async def test_closed_with_spool_next_producer_drains_it_first(kafka_bootstrap: str, topic: str,
                                                               tmp_path: Path) -> None:
    down = f"127.0.0.1:{services.free_port()}"  # nothing listens: the broker is "down"
    first = sink_for(down, topic, tmp_path, spool_fsync="batch")
    await first.start()
    spooled = [make_event(i) for i in range(25)]
    for event in spooled:
        first.emit(event)
    await first.close()  # flush deadline passes with no broker: everything is in the spool
    assert first.state()["spool_depth"] == 25 and first.counts["spooled"] == 25

    second = sink_for(kafka_bootstrap, topic, tmp_path)
    fresh = [make_event(i) for i in range(25, 35)]
    for event in fresh:  # emitted before start: must still go out after the old spool
        second.emit(event)
    await second.start()
    await wait_until(lambda: second.counts["replayed"] == 35)
    await second.close()
    assert_delivered_in_order(consume(kafka_bootstrap, topic, 35), spooled + fresh)


SPOOLING_CHILD = textwrap.dedent("""
    import asyncio, sys, time
    from proxy.audit_kafka import KafkaAuditSink
    from tests.test_audit_kafka import make_event

    async def main(bootstrap, topic, spool_dir, n):
        sink = KafkaAuditSink(bootstrap, topic, spool_dir=spool_dir, spool_fsync="always")
        await sink.start()
        for i in range(n):
            sink.emit(make_event(i))
        while sink.state()["spool_depth"] < n:
            await asyncio.sleep(0.01)
        print("SPOOLED", flush=True)
        await asyncio.sleep(60)  # killed here, never closed

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
""")


async def test_proxy_killed_with_spool_restart_drains(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    down = f"127.0.0.1:{services.free_port()}"
    child = subprocess.Popen([services.python(), "-c", SPOOLING_CHILD, down, topic, str(tmp_path), "40"],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), timeout=20)
        assert line.strip() == "SPOOLED"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    sink = sink_for(kafka_bootstrap, topic, tmp_path)
    await sink.start()
    await wait_until(lambda: sink.counts["replayed"] == 40)
    await sink.close()
    got = consume(kafka_bootstrap, topic, 40)
    assert {e["event_id"] for _, _, e in got} and len({e["event_id"] for _, _, e in got}) == 40
    seqs_by_partition: dict[int, list[int]] = {}
    for partition, _, event in got:
        seqs_by_partition.setdefault(partition, []).append(event["seq"])
    assert sorted(s for seqs in seqs_by_partition.values() for s in seqs) == list(range(40))
    assert all(seqs == sorted(seqs) for seqs in seqs_by_partition.values())


async def test_emit_never_raises_and_readyz_state_without_broker(tmp_path: Path) -> None:
    sink = sink_for(f"127.0.0.1:{services.free_port()}", "gs-test-none", tmp_path, flush_timeout_s=0.5)
    sink.emit({"request_id": "r", "odd": {1, 2}})  # not JSON-serialisable as such: stringified, not raised
    await sink.start()
    await wait_until(lambda: sink.state()["spool_depth"] == 1 and sink.state()["last_error"] is not None)
    state = sink.state()
    assert state["backend"] == "kafka" and state["ok"] is False and state["last_error"]
    await sink.close()
    sink.emit(make_event(1))  # after close: counted as dropped, never raised
    assert sink.counts["dropped"] == 1
    assert json.loads(Path(state["spool_path"]).read_text())["odd"] in ("{1, 2}", "{2, 1}")


async def test_event_too_large_is_dropped_not_spooled_forever(kafka_bootstrap: str, topic: str,
                                                              tmp_path: Path) -> None:
    sink = sink_for(kafka_bootstrap, topic, tmp_path)
    await sink.start()
    await wait_until(lambda: sink.state()["broker_up"])
    huge = make_event(0)
    huge["content"]["completion"] = "x" * (2 << 20)  # over the producer's 1 MiB request limit
    normal = [make_event(i) for i in range(1, 6)]
    for event in [huge, *normal]:
        sink.emit(event)
    await wait_until(lambda: acked(sink) == 5)
    await sink.close()
    assert sink.counts["dropped"] == 1 and sink.state()["spool_depth"] == 0
    assert_delivered_in_order(consume(kafka_bootstrap, topic, 5), normal)
