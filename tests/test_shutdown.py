"""Graceful shutdown of `guardstream serve` (a real process): SIGTERM flushes the audit producer (events
emitted just before it are on the Kafka topic when the process has exited 0), answers new requests on open
connections with an OpenAI-shaped 503 while draining, and ends a stream still running at the deadline with
a last error event and a clean end of the body, closing its upstream. (Streams that finish within the
deadline: tests/test_cli_serve.py::test_sigterm_lets_in_flight_streams_finish.)
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from proxy.spool import Spool
from tests.test_audit_kafka import consume
from tests.test_cli_serve import start_serve, upstream_url  # noqa: F401 - fixture


def test_sigterm_flushes_audit_events_to_kafka(tmp_path: Path, upstream_url, kafka_bootstrap: str,  # type: ignore[no-untyped-def] # noqa: F811
                                               topic: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = upstream_url
    monkeypatch.setenv("GUARDSTREAM__AUDIT__TOPIC", topic)
    monkeypatch.setenv("GUARDSTREAM__AUDIT__SPOOL_DIR", str(tmp_path / "spool"))
    proc, port = start_serve(tmp_path, url, "--kafka-bootstrap", kafka_bootstrap)
    n = 40
    try:
        async def burst() -> list[int]:
            async with aiohttp.ClientSession() as s:
                async def one(i: int) -> int:
                    body = {"model": "m", "messages": [{"role": "user", "content": f"hunter2 #{i}"}]}
                    async with s.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                                      headers={"x-request-id": f"term-{i}"}) as r:
                        return r.status
                return await asyncio.gather(*(one(i) for i in range(n)))

        assert asyncio.run(burst()) == [400] * n
    finally:
        proc.send_signal(signal.SIGTERM)  # at once: the events may not have been acknowledged yet
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    closed = [json.loads(line) for line in err.splitlines() if '"audit_closed"' in line]
    assert closed and closed[0]["spool_depth"] == 0  # everything acknowledged before exit
    got = consume(kafka_bootstrap, topic, n)
    assert {event["request_id"] for _, _, event in got} == {f"term-{i}" for i in range(n)}
    spool = Spool(tmp_path / "spool", topic)
    spool.open()
    assert spool.depth == 0  # nothing left over for the next start
    spool.close()


def test_stream_running_at_the_deadline_is_ended_cleanly(tmp_path: Path, upstream_url,  # type: ignore[no-untyped-def] # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    url, upstream = upstream_url
    upstream.answer = lambda body: "tick " * 400
    upstream.chunk_delay_s = 0.02  # ~8 s of streaming, far past the deadline
    monkeypatch.setenv("GUARDSTREAM__SERVER__SHUTDOWN_GRACE_S", "1")
    proc, port = start_serve(tmp_path, url)
    base = f"http://127.0.0.1:{port}"

    async def scenario() -> tuple[bytes, float, int, dict]:
        async with aiohttp.ClientSession() as keepalive, aiohttp.ClientSession() as streaming:
            async with keepalive.get(base + "/healthz") as r:  # leaves an idle keep-alive connection
                assert r.status == 200
            body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
            async with streaming.post(base + "/v1/chat/completions", json=body) as r:
                raw = await r.content.readuntil(b"\n\n")
                proc.send_signal(signal.SIGTERM)
                sent = time.monotonic()
                await asyncio.sleep(0.3)
                async with keepalive.get(base + "/healthz") as late:  # a new request while draining
                    late_status, late_body = late.status, await late.json()
                raw += await r.read()  # raises if the body does not end cleanly
                return raw, time.monotonic() - sent, late_status, late_body

    try:
        raw, took, late_status, late_body = asyncio.run(scenario())
    finally:
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
    assert late_status == 503 and late_body["error"]["code"] == "server_shutting_down"
    events = [e for e in raw.decode().split("\n\n") if e.strip()]
    assert len(events) >= 2 and b"[DONE]" not in raw  # (buffered mode drops text not yet judged)
    assert json.loads(events[0].removeprefix("data: "))["object"] == "chat.completion.chunk"
    assert json.loads(events[-1].removeprefix("data: "))["error"]["code"] == "server_shutting_down"
    assert 0.8 < took < 3.0  # shutdown_grace_s = 1
    assert upstream.disconnects == 1 and upstream.streams_finished == 0  # generation stopped upstream
    assert "streams_ended_at_shutdown_deadline" in err
