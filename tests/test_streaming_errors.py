"""Streams that go wrong: a client that stops reading and hangs up, an upstream that echoes its key in errors."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness
from tests.stream_client import audit_events, chat_body, start, tokens, wait_for

MODES = ("buffered", "optimistic", "final", "off")


def _open_stream(h: ProxyHarness, body: dict[str, Any]) -> socket.socket:
    """A raw client with a small receive buffer: the request sent, the answer not read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = h.base_url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    payload = json.dumps(body).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    return sock


@pytest.mark.parametrize("mode", ["buffered", "optimistic"])
def test_client_that_stops_reading_and_hangs_up_leaves_no_traceback(
        tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """The proxy's pending write fails when the client resets the connection: that is the client's choice,
    not an error (it used to leave "Task exception was never retrieved ... ConnectionError" on stderr)."""
    h = start(tmp_path, mode, chunk=16, context=4, answer=tokens(6000, prefix="word-padding-"), chunk_delay_s=0)
    loop_errors: list[dict[str, Any]] = []
    h.loop.call_soon_threadsafe(h.loop.set_exception_handler, lambda loop, context: loop_errors.append(context))
    try:
        for _ in range(3):
            sock = _open_stream(h, chat_body())
            assert sock.recv(1024)
            time.sleep(0.3)  # the proxy fills the buffers and blocks writing
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()  # a reset: the pending write fails
        assert wait_for(lambda: h.upstream.disconnects + h.upstream.streams_finished == 3, timeout=5)
        time.sleep(0.2)
        h.call(asyncio.sleep(0))
        gc.collect()
        h.call(asyncio.sleep(0.05))
    finally:
        h.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "never retrieved" not in err, err[-2000:]
    assert loop_errors == [], loop_errors[:1]
    bad = [r for r in caplog.records if r.levelno >= 40 or r.exc_info]
    assert bad == [], [(r.name, r.getMessage()) for r in bad][:2]


# -- the upstream key never reaches a client, a log line or an audit event ------------------------------

KEY = "sk-upstream-SECRET-0000"


class EchoingUpstream:
    """An upstream that puts the key it was sent into its errors (some servers do: "bad credentials Bearer …")."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._chat)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("authorization", "")
        body = await request.json()
        model = body.get("model")
        error = {"error": {"message": f"bad credentials {auth}", "type": "invalid_request_error", "param": None,
                           "code": "invalid_api_key"}}
        if model == "plain-error":
            return web.json_response(error, status=401)
        if not body.get("stream"):
            return web.json_response({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                      "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                          "role": "assistant", "content": f"the key is {auth}"}}]})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        def chunk(text: str) -> bytes:
            return b"data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                           "choices": [{"index": 0, "delta": {"content": text},
                                                        "finish_reason": None}]}).encode() + b"\n\n"

        for word in ("Here ", "is ", "a ", "short ", "answer. "):
            await response.write(chunk(word))
        if model == "echo-content":
            await response.write(chunk(f"Use {auth} to call it. "))
        else:  # mid-stream error event
            await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def start(self) -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(self.app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


@pytest.fixture
def echoing(tmp_path: Path) -> Any:
    upstream = EchoingUpstream()
    harnesses: list[ProxyHarness] = []

    def make(mode: str) -> ProxyHarness:
        policy = {"input": {"evaluators": []}, "output": {"evaluators": [] if mode == "off" else ["secrets"],
                                                          "streaming": {"mode": None if mode == "off" else mode}}}
        evaluators = {"secrets": {"type": "secrets", "on_error": "fail_closed"}}
        settings = keyword_settings(tmp_path / mode, policy=policy, evaluators=evaluators,
                                    upstream={"url": "http://127.0.0.1:9", "api_key": KEY})
        h = ProxyHarness(settings)
        h.upstream = upstream  # type: ignore[assignment]
        harnesses.append(h.start())
        return h

    yield make
    for h in harnesses:
        h.stop()


async def _post(url: str, body: dict[str, Any]) -> bytes:
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body) as r:
            return await r.read()


@pytest.mark.parametrize("mode", MODES)
def test_upstream_key_never_leaves_the_proxy(echoing: Any, mode: str, capfd: pytest.CaptureFixture[str],
                                              caplog: pytest.LogCaptureFixture) -> None:
    h = echoing(mode)
    url = h.base_url + "/v1/chat/completions"
    seen: list[bytes] = []
    for model in ("stream-error", "echo-content", "plain-error"):
        for stream in (True, False):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            seen.append(h.call(_post(url, body)))
    assert all(seen)
    events = json.dumps(audit_events(h))
    logs = capfd.readouterr()
    records = "\n".join(r.getMessage() for r in caplog.records)
    for where, text in (("responses", b"\n".join(seen).decode()), ("audit", events), ("stdout", logs.out),
                        ("stderr", logs.err), ("log records", records)):
        assert KEY not in text, f"the upstream key reached the {where} ({mode})"
    assert "bad credentials" in b"".join(seen).decode()  # the error itself still reaches the client
