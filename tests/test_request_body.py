"""Request bodies that reach the proxy in several reads are read whole (and the size limit still holds)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from proxy.config import Settings
from tests.proxy_harness import ProxyHarness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[ProxyHarness]:
    settings = Settings.model_validate({"server": {"max_body_bytes": 300_000},
                                        "audit": {"jsonl_path": str(tmp_path / "audit.jsonl")}})
    h = ProxyHarness(settings).start()
    yield h
    h.stop()


def post_in_pieces(h: ProxyHarness, body: bytes, pieces: int, pause_s: float = 0.1,
                   chunked: bool = False) -> tuple[int, dict]:
    """POST over a raw socket, the body sent in `pieces` writes with pauses, so the proxy reads it in parts."""
    port = int(h.base_url.rsplit(":", 1)[1])
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n{framing}\r\n"
            "Connection: close\r\n\r\n").encode()
    size = -(-len(body) // pieces)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for i in range(0, len(body), size):
            part = body[i:i + size]
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n" if chunked else part)
            time.sleep(pause_s)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_part, _, payload = data.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), json.loads(payload) if payload.strip() else {}


def body_of(prompt_bytes: int) -> bytes:
    return json.dumps({"model": "demo-model", "messages": [{"role": "user", "content": "x" * prompt_bytes}]}).encode()


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_sent_in_pieces_is_read_whole(harness: ProxyHarness, chunked: bool) -> None:
    status, answer = post_in_pieces(harness, body_of(200_000), pieces=3, chunked=chunked)
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"]
    assert len(harness.upstream.requests[-1]["body"]["messages"][0]["content"]) == 200_000


def test_the_limit_holds_for_a_body_in_pieces(harness: ProxyHarness) -> None:
    status, answer = post_in_pieces(harness, body_of(400_000), pieces=4, chunked=True)
    assert status == 413
    assert answer["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("depth", [500, 100_000])
def test_deeply_nested_json_is_a_400_not_a_500(harness: ProxyHarness, depth: int,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """100,000 nested arrays made Python's JSON parser raise RecursionError: a 500 with a logged traceback.
    Nesting the parser can read (500) is served; deeper is 400 invalid_json."""
    body = (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "x": ' + b"[" * depth + b"]" * depth
            + b"}")
    status, answer = post_in_pieces(harness, body, pieces=1, pause_s=0)
    if depth == 500:
        assert status == 200 and answer["object"] == "chat.completion"
    else:
        assert status == 400 and answer["error"]["code"] == "invalid_json" and "nested" in answer["error"]["message"]
    assert [r for r in caplog.records if r.levelno >= 40] == []
