"""Bounded resources, fast versions (the 1,000-connection run is bench/slow_clients.py): slow headers and
idle connections are closed, slow bodies get 408, oversized bodies 413 (with or without a Content-Length),
a slow reader holds back the upstream instead of making the proxy buffer its answer, a client that stops
reading is disconnected, and an oversized upstream answer is refused.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from proxy.metrics import REGISTRY
from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness


class FloodUpstream:
    """An upstream that streams a long answer as fast as the proxy takes it, counting the bytes it got out."""

    def __init__(self, events: int = 20_000, piece: str = "x" * 1000) -> None:
        self.events = events
        self.piece = piece
        self.bytes_written = 0
        self.finished = 0
        self.disconnected = 0
        self.non_stream_bytes = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            answer = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "y" * self.non_stream_bytes},
                 "finish_reason": "stop"}]}
            return web.json_response(answer)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        # a small send buffer, so that `bytes_written` is what the proxy took (Linux would grow it to 4 MB)
        request.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        chunk = ("data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                        "choices": [{"index": 0, "delta": {"content": self.piece},
                                                     "finish_reason": None}]}) + "\n\n").encode()
        try:
            for _ in range(self.events):
                await response.write(chunk)  # drains: waits while the proxy does not read
                self.bytes_written += len(chunk)
            await response.write(b"data: [DONE]\n\n")
            self.finished += 1
        except ConnectionResetError:  # the proxy closed the upstream connection
            self.disconnected += 1
        except asyncio.CancelledError:
            self.disconnected += 1
            raise
        return response


@pytest.fixture
def flood() -> FloodUpstream:
    return FloodUpstream()


#: how a policy moderates streamed answers: each mode holds text differently ("off": no output evaluators)
MODES = ["off", "buffered", "optimistic", "final"]


def start(tmp_path: Path, flood: FloodUpstream | None = None, mode: str = "off", **server: object) -> ProxyHarness:
    output = {"evaluators": []} if mode == "off" else {"evaluators": ["secrets"], "streaming": {"mode": mode}}
    settings = keyword_settings(tmp_path, server={"keepalive_timeout_s": 0.5, "body_timeout_s": 0.5,
                                                  "write_timeout_s": 1.0, **server},
                                policy={"input": {"evaluators": []}, "output": output})
    h = ProxyHarness(settings)
    if flood is not None:
        h.upstream.app = flood.app  # type: ignore[method-assign]
    return h.start()


@pytest.fixture
def harness(tmp_path: Path, flood: FloodUpstream) -> Iterator[ProxyHarness]:
    h = start(tmp_path, flood)
    yield h
    h.stop()


def connect(h: ProxyHarness, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", int(h.base_url.rsplit(":", 1)[1])))
    sock.settimeout(5)
    return sock


def closed_after(sock: socket.socket, trickle: bytes = b"", every_s: float = 0.1, limit_s: float = 5) -> float:
    """Send `trickle` a byte at a time until the server closes the connection; seconds it took."""
    started = time.monotonic()
    sock.settimeout(every_s)
    i = 0
    while time.monotonic() - started < limit_s:
        try:
            if trickle:
                sock.send(trickle[i % len(trickle):i % len(trickle) + 1])
                i += 1
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:  # reset
            return time.monotonic() - started
    raise AssertionError(f"connection still open after {limit_s} s")


def test_idle_and_slow_header_connections_are_closed(harness: ProxyHarness) -> None:
    idle = connect(harness)
    slow = connect(harness)
    slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    assert closed_after(idle) < 2.0  # keepalive_timeout_s = 0.5
    assert closed_after(slow, trickle=b"X-Slow: " + b"a" * 200) < 2.0  # never finishes its headers


def test_slow_body_gets_408(harness: ProxyHarness) -> None:
    sock = connect(harness)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"model\":")
    started = time.monotonic()
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert time.monotonic() - started < 2.0
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"]["code"] == "request_timeout"


def test_oversized_bodies_get_413_with_and_without_content_length(tmp_path: Path) -> None:
    h = start(tmp_path, max_body_bytes=10_000)
    try:
        big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 20_000}]}).encode()

        async def post(chunked: bool) -> tuple[int, dict]:
            import aiohttp

            async def gen():  # type: ignore[no-untyped-def]
                for i in range(0, len(big), 4096):
                    yield big[i:i + 4096]

            async with aiohttp.ClientSession() as s:
                async with s.post(h.base_url + "/v1/chat/completions", data=gen() if chunked else big) as r:
                    return r.status, await r.json()

        for chunked in (False, True):
            status, body = h.call(post(chunked))
            assert status == 413 and body["error"]["code"] == "request_too_large"
        assert h.upstream.requests == []
    finally:
        h.stop()


def read_http_answer(sock: socket.socket) -> tuple[bytes, dict]:
    """Read one HTTP answer on a connection the server closes; its status line and JSON body."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return head.split(b"\r\n")[0], json.loads(body)


@pytest.mark.parametrize("raw, code", [
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", "request_header_too_large"),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "request_header_too_large"),
    (b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n", "invalid_http_request"),
    (b"GET / HTTP/9.9.9\r\n\r\n", "invalid_http_request"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "invalid_http_request"),  # TLS to the HTTP port
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
     "invalid_http_request"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", "invalid_http_request"),
])
def test_requests_the_http_parser_rejects_get_openai_errors(harness: ProxyHarness, raw: bytes, code: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """What aiohttp's parser refuses before any middleware runs (max_header_bytes, a malformed request line
    or header) is answered with an OpenAI-shaped 400 and a closed connection, and logged without a traceback."""
    sock = connect(harness)
    sock.sendall(raw)
    status_line, body = read_http_answer(sock)
    assert status_line.split(b" ")[1] == b"400"
    assert body["error"]["code"] == code and body["error"]["type"] == "invalid_request_error"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert [r for r in caplog.records if r.exc_info or r.levelno >= 40] == []
    ok = connect(harness)  # the server is fine
    ok.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert read_http_answer(ok)[1] == {"status": "ok"}


CHAT_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
CHAT_BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()


def gzip_body(body: bytes) -> bytes:

    return CHAT_HEAD + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body


@pytest.mark.parametrize("raw, status, code", [
    (gzip_body(b"not gzip at all"), b"400", "invalid_request_body"),
    (gzip_body(__import__("gzip").compress(b'{"x": "' + b"a" * 20_000_000 + b'"}')), b"413", "request_too_large"),
    (CHAT_HEAD + b"Expect: something-else\r\nContent-Length: %d\r\n\r\n" % len(CHAT_BODY) + CHAT_BODY, b"417",
     "expectation_failed"),
])
def test_bodies_that_cannot_be_read_get_openai_errors(harness: ProxyHarness, raw: bytes, status: bytes, code: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A gzip body that does not decode (it was a 500 and a logged traceback), a gzip bomb (decompressed
    beyond max_body_bytes: 413 before it is all inflated), an Expect header other than 100-continue
    (aiohttp's own 417 is plain text)."""
    sock = connect(harness)
    sock.sendall(raw)
    status_line, body = read_http_answer(sock)
    assert status_line.split(b" ")[1] == status and body["error"]["code"] == code
    assert [r for r in caplog.records if r.exc_info or r.levelno >= 40] == []


def test_gzip_body_and_expect_100_continue_are_served(harness: ProxyHarness) -> None:
    import gzip

    packed = gzip.compress(CHAT_BODY)
    for raw in (gzip_body(packed),
                CHAT_HEAD + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(CHAT_BODY) + CHAT_BODY):
        sock = connect(harness)
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert b"HTTP/1.1 200 OK" in data and b'"chat.completion"' in data


STREAM_REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s")


def open_stream(h: ProxyHarness, rcvbuf: int = 16384) -> socket.socket:
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}).encode()
    sock = connect(h, rcvbuf=rcvbuf)
    sock.sendall(STREAM_REQUEST % (len(body), body))
    return sock


@pytest.mark.parametrize("mode", MODES)
def test_slow_reader_holds_back_the_upstream(tmp_path: Path, mode: str) -> None:
    """A ~45 MB answer to a client that stops reading: the upstream stalls once the buffers between are full
    (the proxy's capped socket buffers, `upstream.read_bufsize`, and with moderation `hold_limit_bytes` of
    events waiting for judgment), long before the answer is out. Before the hold limit, buffered moderation
    read the whole answer while the client was stalled. The proxy's memory under 1,000 such streams is
    measured by bench/slow_clients.py."""
    flood = FloodUpstream(events=40_000)
    h = start(tmp_path, flood, mode, write_timeout_s=10.0)
    try:
        sock = open_stream(h)
        got = len(sock.recv(65536))
        filled, deadline = -1, time.monotonic() + 10
        while flood.bytes_written != filled and time.monotonic() < deadline:  # until the buffers are full
            filled = flood.bytes_written
            time.sleep(0.5)
        assert flood.bytes_written == filled  # stalled: waiting on the proxy, which waits on the client
        assert flood.finished == 0 and filled - got < 2_500_000, f"{filled - got} bytes taken for a stalled client"
        sock.settimeout(5)
        deadline = time.monotonic() + 5
        while flood.bytes_written == filled and time.monotonic() < deadline:  # the client reads on: so does the upstream
            got += len(sock.recv(1 << 20))
        assert flood.bytes_written > filled and flood.finished == 0
        sock.close()
    finally:
        h.stop()


@pytest.mark.parametrize("mode", MODES)
def test_client_that_stops_reading_is_disconnected_and_upstream_closed(tmp_path: Path, flood: FloodUpstream,
                                                                       mode: str) -> None:
    harness = start(tmp_path, flood, mode)
    try:
        before = REGISTRY.get_sample_value("guardstream_slow_client_disconnects_total") or 0.0
        sock = open_stream(harness)
        sock.recv(65536)  # then never reads again
        deadline = time.monotonic() + 6
        while flood.disconnected == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert flood.disconnected == 1 and flood.finished == 0  # write_timeout_s = 1 s (+ the 0.5 s sweep)
        assert REGISTRY.get_sample_value("guardstream_slow_client_disconnects_total") == before + 1
        sock.close()
    finally:
        harness.stop()


def test_oversized_upstream_answer_is_502(tmp_path: Path, flood: FloodUpstream) -> None:
    flood.non_stream_bytes = 300_000
    h = start(tmp_path, flood)
    h.settings.upstream.max_response_bytes = 100_000  # read at request time by Upstream.read_body
    try:
        import aiohttp

        async def post() -> tuple[int, dict]:
            async with aiohttp.ClientSession() as s:
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                async with s.post(h.base_url + "/v1/chat/completions", json=body) as r:
                    return r.status, await r.json()

        status, body = h.call(post())
        assert status == 502 and body["error"]["code"] == "upstream_bad_response"
        assert "larger than 100000 bytes" in body["error"]["message"]
    finally:
        h.stop()


def test_client_leaving_mid_stream_is_no_error(harness: ProxyHarness, flood: FloodUpstream,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """A client that hangs up mid-answer: the upstream is closed, and nothing is logged as an error (aiohttp
    logs "Error handling request" with a traceback for a handler that raises ConnectionResetError)."""
    for _ in range(5):
        sock = open_stream(harness)
        sock.recv(65536)
        sock.close()
    deadline = time.monotonic() + 5
    while flood.disconnected < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert flood.disconnected == 5
    errors = [r for r in caplog.records if r.levelno >= 40 and r.name.startswith("aiohttp")]
    assert errors == [], [(r.getMessage(), r.exc_text or repr(r.exc_info)) for r in errors][:1]


def test_connection_reset_in_a_handler_is_not_logged_as_an_error(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A write to a client that is closing raises ConnectionResetError in the handler (seen by the fuzz at
    write_eof); the middleware answers it instead of letting aiohttp log a traceback."""
    import aiohttp as aiohttp_client

    from proxy.app import create_app
    from proxy.server import make_runner

    async def scenario() -> tuple[int, dict]:
        settings = keyword_settings(tmp_path)
        app = create_app(settings)

        async def closing(request: web.Request) -> web.Response:
            raise aiohttp_client.ClientConnectionResetError("Cannot write to closing transport")

        app.router.add_get("/v1/closing", closing)
        runner = make_runner(app, settings.server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with aiohttp_client.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{port}/v1/closing") as r:
                    return r.status, await r.json()
        finally:
            await runner.cleanup()

    status, body = asyncio.run(scenario())
    assert status == 499 and body["error"]["code"] == "client_closed_request"
    assert [r for r in caplog.records if r.levelno >= 40] == []


def test_a_body_arriving_in_pieces_is_read_whole(tmp_path: Path) -> None:
    """The body is read to its end (the old `content.read(limit + 1)` returned the first piece only: a valid
    50 kB prompt sent in 4 kB pieces got 400 invalid_json)."""
    import aiohttp as aiohttp_client

    h = start(tmp_path, max_body_bytes=100_000)
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 50_000}]}).encode()

    async def post() -> int:
        async def pieces():  # type: ignore[no-untyped-def]
            for i in range(0, len(big), 4096):
                yield big[i:i + 4096]
                await asyncio.sleep(0.005)

        async with aiohttp_client.ClientSession() as s:
            async with s.post(h.base_url + "/v1/chat/completions", data=pieces()) as r:
                return r.status

    try:
        assert h.call(post()) == 200
        assert h.upstream.requests[-1]["body"]["messages"][0]["content"] == "x" * 50_000
    finally:
        h.stop()
