"""Helpers for the streaming tests: scripted answers, a raw SSE client, and reading what came back."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from proxy.demo_upstream import DemoUpstream
from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness

UNSAFE = "hunter2"


def tokens(total: int, unsafe_at: int | None = None, prefix: str = "t") -> str:
    """`total` one-word tokens (the demo upstream sends one per chunk); token `unsafe_at` is the unsafe word."""
    return " ".join(UNSAFE if i == unsafe_at else f"{prefix}{i}" for i in range(total))


def start(tmp_path: Path, mode: str | None, *, chunk: int = 16, context: int = 4, answer: Any = None,
          upstream: DemoUpstream | None = None, policy: dict[str, Any] | None = None,
          delay_ms: float = 0.0, chunk_delay_s: float = 0.001, evaluator_type: str = "keyword",
          hold_limit: int = 64 * 1024, words: tuple[str, ...] = (UNSAFE,),
          evaluators_extra: dict[str, Any] | None = None, first: int | None = None) -> ProxyHarness:
    """The proxy in front of a demo upstream; the output guard is the keyword evaluator `secrets` (a window judge).

    Windows are all `chunk` tokens unless `first` (the first window's size; they double up to `chunk`)."""
    streaming: dict[str, Any] = {"chunk_size": chunk, "first_chunk_size": first or chunk, "context_size": context,
                                 "hold_limit_bytes": hold_limit}
    if mode is not None:
        streaming["mode"] = mode
    pol: dict[str, Any] = {"input": {"evaluators": []}, "output": {"evaluators": ["secrets"], "streaming": streaming}}
    pol.update(policy or {})
    evaluators = {"secrets": {"type": evaluator_type, "on_error": "fail_closed", "timeout_ms": 5000,
                              "options": {"words": list(words), "category": "secret", "delay_ms": delay_ms}},
                  **(evaluators_extra or {})}
    settings = keyword_settings(tmp_path, policy=pol, evaluators=evaluators)
    up = upstream or DemoUpstream(answer=answer if callable(answer) else (lambda body, a=answer: a),
                                  chunk_delay_s=chunk_delay_s)
    return ProxyHarness(settings, up).start()


def evaluator(h: ProxyHarness) -> Any:
    assert h.state is not None
    return h.state.evaluators["secrets"]


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "demo-model", "messages": [{"role": "user", "content": "tell me a story"}], "stream": True,
            **extra}


async def post_raw(url: str, body: dict[str, Any]) -> bytes:
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body) as r:
            assert r.status == 200, await r.text()
            assert r.headers["content-type"].startswith("text/event-stream")
            return await r.read()


def raw_stream(h: ProxyHarness, body: dict[str, Any], path: str = "/v1/chat/completions",
               direct: bool = False) -> bytes:
    base = h.upstream_url if direct else h.base_url
    return h.call(post_raw(base + path, body))


def sse_events(raw: bytes) -> list[bytes]:
    """The raw events, each with its blank line."""
    parts = raw.split(b"\n\n")
    assert parts[-1] == b"", "the stream must end on an event boundary"
    return [p + b"\n\n" for p in parts[:-1]]


def payloads(raw: bytes) -> list[Any]:
    out = []
    for event in sse_events(raw):
        if event.startswith(b"data: ") and event.strip() != b"data: [DONE]":
            out.append(json.loads(event[6:]))
    return out


def texts(raw: bytes) -> dict[int, str]:
    """Each choice's text as the client would assemble it."""
    out: dict[int, str] = {}
    for p in payloads(raw):
        for c in p.get("choices") or []:
            piece = (c.get("delta") or {}).get("content") if "delta" in c else c.get("text")
            out[c["index"]] = out.get(c["index"], "") + (piece or "")
    return out


def finishes(raw: bytes) -> dict[int, str]:
    return {c["index"]: c["finish_reason"] for p in payloads(raw) for c in p.get("choices") or []
            if c.get("finish_reason")}


def wait_for(predicate: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def audit_events(h: ProxyHarness) -> list[dict[str, Any]]:
    assert h.state is not None
    h.call(h.state.audit.close())  # flush
    h.call(h.state.audit.start())
    path = Path(h.settings.audit.jsonl_path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def disconnect_latency(url: str, body: dict[str, Any], upstream: DemoUpstream) -> float:
    """Open a stream, read its first bytes, hang up; seconds until the upstream saw its client go away."""
    async with aiohttp.ClientSession() as s:
        r = await s.post(url, json=body)
        assert r.status == 200
        assert await r.content.readany()
        await asyncio.sleep(0.02)  # mid-stream
        assert upstream.disconnects == 0
        hung_up = time.perf_counter()
        r.close()
        while upstream.disconnects == 0 and time.perf_counter() - hung_up < 2:
            await asyncio.sleep(0.001)
        return time.perf_counter() - hung_up
