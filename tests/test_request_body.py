"""Request bodies that reach the proxy in several reads are read whole (and the size limit still holds)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

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


@pytest.mark.parametrize("content", ["full", "redacted", "hash"])
def test_lone_surrogates_in_prompts_and_answers_are_judged_and_audited(tmp_path: Path, content: str) -> None:
    """JSON can carry a lone UTF-16 surrogate ("\\ud800") that UTF-8 cannot encode: a flagged or blocked prompt
    holding one was a 500 and its audit event was lost (the content digest could not encode it). Judged and
    audited text now has U+FFFD in its place; the upstream still gets the client's bytes."""

    import aiohttp

    from proxy.demo_upstream import DemoUpstream
    from tests.conftest import keyword_settings
    from tests.stream_client import audit_events

    settings = keyword_settings(tmp_path, audit={"jsonl_path": str(tmp_path / "audit.jsonl"), "content": content})
    h = ProxyHarness(settings, DemoUpstream(answer=lambda body: "reply to a@example.com \ud83d end")).start()

    async def post(text: str, stream: bool) -> tuple[int, str]:
        body = '{"model": "m", "stream": %s, "messages": [{"role": "user", "content": "%s"}]}' % (  # noqa: UP031  # JSON braces
            "true" if stream else "false", text)
        async with aiohttp.ClientSession() as s:
            async with s.post(h.base_url + "/v1/chat/completions", data=body.encode(),
                              headers={"content-type": "application/json"}) as r:
                return r.status, await r.text()

    try:
        for stream in (False, True):
            assert h.call(post("hunter2 \\udfff", stream))[0] == 400  # blocked
            status, _ = h.call(post("write to a@example.com \\ud800 x", stream))  # flagged, answer flagged too
            assert status == 200
        sent = [r["body"]["messages"][0]["content"] for r in h.upstream.requests]
        assert sent[-1] == "write to a@example.com \ud800 x"  # as the client sent it
        events = audit_events(h)
    finally:
        h.stop()
    assert len(events) == 6 and {e["stage"] for e in events} == {"input", "output"}
    if content == "full":
        texts = [e["content"]["messages"][0]["content"] for e in events if e["stage"] == "input"]
        assert "hunter2 \ufffd" in texts and "write to a@example.com \ufffd x" in texts
        assert all("\ufffd" in e["content"]["completion"] for e in events if e["stage"] == "output")
