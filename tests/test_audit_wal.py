"""Nothing lost on a crash: every emitted event is in the write-ahead log before `emit` returns, so a proxy
SIGKILLed at any moment (broker up: events sent but not yet acknowledged; broker down: events waiting) loses
nothing; the next process on the same spool directory delivers them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest

from proxy.audit_kafka import KafkaAuditSink
from tests import services
from tests.test_audit_kafka import consume, wait_until

ROOT = Path(__file__).resolve().parents[1]

EMITTING_CHILD = textwrap.dedent("""
    import asyncio, sys
    from proxy.audit_kafka import KafkaAuditSink
    from tests.test_audit_kafka import make_event

    async def main(bootstrap, topic, spool_dir, n):
        sink = KafkaAuditSink(bootstrap, topic, spool_dir=spool_dir, spool_fsync="never", delivery_timeout_ms=5000)
        await sink.start()
        if sys.argv[5] == "up":
            while not sink.state()["broker_up"]:
                await asyncio.sleep(0.01)
        events = [make_event(i, request_id=f"wal-{i}") for i in range(n)]
        for event in events:
            sink.emit(event)
        acked = sink.counts["sent"] + sink.counts["replayed"]
        print(f"EMITTED {acked}", flush=True)  # SIGKILLed as soon as the parent reads this
        await asyncio.sleep(60)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
""")


def run_and_kill(bootstrap: str, topic: str, spool_dir: Path, n: int, broker: str) -> int:
    """Start a child that emits n events, SIGKILL it right after; returns how many it had acknowledged."""
    child = subprocess.Popen([sys.executable, "-c", EMITTING_CHILD, bootstrap, topic, str(spool_dir), str(n), broker],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert child.stdout is not None
        line = ""
        for line in child.stdout:  # structlog's default output goes to stdout too
            if line.startswith("EMITTED"):
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert line.startswith("EMITTED"), line
    return int(line.split()[1])


@pytest.mark.parametrize("broker", ["up", "down"])
async def test_sigkilled_emitter_loses_nothing(broker: str, kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    n = 2000
    target = kafka_bootstrap if broker == "up" else f"127.0.0.1:{services.free_port()}"
    acked_at_kill = await asyncio.to_thread(run_and_kill, target, topic, tmp_path, n, broker)
    assert acked_at_kill < n, acked_at_kill  # killed inside the window where events were sent (or waiting) but not acknowledged
    sink = KafkaAuditSink(kafka_bootstrap, topic, spool_dir=tmp_path, delivery_timeout_ms=2000)
    await sink.start()
    await wait_until(lambda: sink.state()["spool_depth"] == 0 and sink.counts["replayed"] > 0, timeout=20)
    await sink.close()
    got = await asyncio.to_thread(consume, kafka_bootstrap, topic, n)
    ids = {event["request_id"] for _, _, event in got}
    assert ids == {f"wal-{i}" for i in range(n)}  # duplicates allowed (at least once), none missing


CONFIG = """
evaluators:
  secrets: {type: "tests.keyword_evaluator:create", on_error: fail_closed,
            options: {words: [hunter2], category: secret}}
policies:
  default:
    input: {evaluators: [secrets]}
    output: {evaluators: [secrets]}
audit:
  topic: TOPIC
  spool_dir: SPOOL
  spool_fsync: never
"""


def start_serve(tmp_path: Path, bootstrap: str, topic: str, upstream: str) -> tuple[subprocess.Popen[bytes], int]:
    port = services.free_port()
    config = tmp_path / "guardstream.yaml"
    config.write_text(CONFIG.replace("TOPIC", topic).replace("SPOOL", str(tmp_path / "spool")))
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve", "--port", str(port), "--upstream", upstream,
                             "--config", str(config), "--kafka-bootstrap", bootstrap, "--log-level", "warning"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    services.wait_for_port(port, timeout=20)
    return proc, port


async def test_sigkilled_proxy_every_block_the_client_saw_is_delivered(kafka_bootstrap: str, topic: str,
                                                                       tmp_path: Path) -> None:
    """End to end: a client got 400 content_filter for each request; the proxy is SIGKILLed right after the
    last answer; the restarted proxy delivers one audit event per blocked request."""
    upstream = f"http://127.0.0.1:{services.free_port()}"  # never reached: every prompt is blocked at input
    proc, port = await asyncio.to_thread(start_serve, tmp_path, kafka_bootstrap, topic, upstream)
    n = 60
    try:
        async with aiohttp.ClientSession() as session:
            async def blocked(i: int) -> int:
                body = {"model": "m", "messages": [{"role": "user", "content": f"hunter2 {i}"}]}
                async with session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                                        headers={"x-request-id": f"kill-{i}"}) as r:
                    return r.status

            assert await asyncio.gather(*(blocked(i) for i in range(n))) == [400] * n
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    started = time.monotonic()
    again, _ = await asyncio.to_thread(start_serve, tmp_path, kafka_bootstrap, topic, upstream)
    try:
        got = await asyncio.to_thread(consume, kafka_bootstrap, topic, n, 20.0)
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=20)
    ids = {event["request_id"] for _, _, event in got}
    assert ids == {f"kill-{i}" for i in range(n)}, f"missing {sorted({f'kill-{i}' for i in range(n)} - ids)}"
    assert time.monotonic() - started < 25
