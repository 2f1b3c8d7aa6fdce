"""OpenAI-shaped servers for comparison tests: a baseline that always sends the same bytes, and a scriptable
candidate that counts how many of its requests run at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from aiohttp import web

from proxy.demo_upstream import last_prompt


def chat_bytes(text: str, model: str = "base-model") -> bytes:
    return json.dumps({"id": "chatcmpl-fixed", "object": "chat.completion", "created": 1700000000, "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop", "logprobs": None}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}).encode()


def stream_bytes(text: str, model: str = "base-model") -> bytes:
    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return b"data: " + json.dumps({"id": "chatcmpl-fixed", "object": "chat.completion.chunk",
                                       "created": 1700000000, "model": model,
                                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode() \
            + b"\n\n"
    words = text.split(" ")
    out = event({"role": "assistant", "content": ""})
    for i, word in enumerate(words):
        out += event({"content": word + (" " if i < len(words) - 1 else "")})
    return out + event({}, "stop") + b"data: [DONE]\n\n"


@dataclass
class FixedUpstream:
    """Answers every chat request with the same bytes (`answer(prompt)` picks the text)."""

    answer: Callable[[str], str]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text = self.answer(last_prompt(body))
        if body.get("stream"):
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            await response.write(stream_bytes(text))
            await response.write_eof()
            return response
        return web.Response(body=chat_bytes(text), content_type="application/json")


@dataclass
class Candidate:
    """A candidate model server: `answer(prompt)` answers; `mode` ok | slow | error | garbage | echo_key."""

    answer: Callable[[str], str]
    mode: str = "ok"
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    running: int = 0
    most_at_once: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self.delay_s or self.mode == "slow":
                await asyncio.sleep(self.delay_s or 30)
            if self.mode == "error":
                return web.json_response({"error": {"message": "candidate overloaded"}}, status=503)
            if self.mode == "garbage":
                return web.Response(text="<html>oops</html>", content_type="text/html")
            text = self.answer(last_prompt(body))
            if self.mode == "echo_key":
                text += " (I was called with " + request.headers.get("Authorization", "") + ")"
            return web.Response(body=chat_bytes(text, str(body.get("model"))), content_type="application/json")
        finally:
            self.running -= 1


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


class Servers:
    """Test servers on their own event loop thread (the proxy harness has its own)."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="test-servers")
        self._thread.start()
        self._runners: list[web.AppRunner] = []

    def add(self, app: web.Application) -> str:
        runner, url = asyncio.run_coroutine_threadsafe(serve(app), self.loop).result(10)
        self._runners.append(runner)
        return url

    def stop(self) -> None:
        async def _stop() -> None:
            for runner in self._runners:
                await runner.cleanup()

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


def make_comparison(outcome: str = "win", margin: float | None = 4.0, baseline: str = "I am not sure.",
                    candidate: str = "It is 42.", prompt: str = "What is 6 x 7?", content_mode: str = "full",
                    decided_by: str = "judge", tenant: str = "acme", name: str = "cand", ts: str | None = None,
                    **fields: Any) -> dict[str, Any]:
    """A schema-valid guardstream.comparison.v1 event."""
    import hashlib
    import uuid
    from datetime import datetime

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    messages = [{"role": "user", "content": prompt}]
    hashed = content_mode == "hash"
    event = {
        "schema": "guardstream.comparison.v1", "event_id": str(uuid.uuid4()),
        "ts": ts or datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request_id": f"req-{uuid.uuid4().hex[:12]}", "tenant": tenant, "policy": "default",
        "route": "chat.completions", "stream": False,
        "baseline": {"model": "base-model", "upstream": "http://upstream/v1", "safe": decided_by == "judge" or
                     outcome != "win", "categories": [], "score": -2.0 if margin is not None else None,
                     "latency_ms": None},
        "candidate": {"name": name, "model": "cand-model", "upstream": "http://cand/v1",
                      "safe": decided_by == "judge" or outcome != "loss", "categories": [],
                      "score": (margin - 2.0) if margin is not None else None, "latency_ms": 12.0},
        "judge": {"kind": "reward_model", "name": "rm", "margin": margin, "tie_margin": 0.5, "votes": None},
        "outcome": outcome, "decided_by": decided_by,
        "content": {"mode": content_mode, "messages": None if hashed else messages,
                    "baseline": None if hashed else baseline, "candidate": None if hashed else candidate,
                    "sha256": {"messages": sha(json.dumps(messages)), "baseline": sha(baseline),
                               "candidate": sha(candidate)}},
    }
    event.update(fields)
    return event
