"""Drive the real StreamRelay in memory: the upstream's SSE bytes fed piece by piece into an aiohttp
StreamReader, the client's bytes collected, real evaluators, guard and recorder. No sockets, so thousands of
streams take seconds: what the exhaustive streaming property tests run on."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.base_protocol import BaseProtocol

from evaluators.registry import create as create_evaluator
from proxy.auth import ANONYMOUS
from proxy.cache import build_cache
from proxy.config import Settings
from proxy.guard import Guard
from proxy.recording import Recorder, RequestContext
from proxy.routes import CHAT
from proxy.streaming import StreamRelay, StreamRequest


class _Connected(BaseProtocol):
    """A protocol without a transport that counts as connected (the reader waits for data instead of failing)."""

    @property
    def connected(self) -> bool:
        return True


class MemoryUpstream:
    """What the relay reads from: `content` is a real aiohttp StreamReader the test feeds."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.content = aiohttp.StreamReader(_Connected(loop), 2**16, loop=loop)
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        pass


class MemoryClient:
    """What the relay writes to."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, data: bytes) -> None:
        self.data += data


@dataclass
class MemorySink:
    events: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


@dataclass
class Outcome:
    raw: bytes  # what the client received
    text: str  # the answer as the client assembles it from the SSE JSON
    finish: str | None
    events: list[dict[str, Any]]  # audit events
    upstream_closed: bool


class RelayDriver:
    """One guard (settings, evaluators) for many in-memory streams."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        evaluators = {name: create_evaluator(cfg.type, name, cfg.options) for name, cfg in settings.evaluators.items()}
        self.guard = Guard(settings, evaluators, build_cache(settings.cache))
        self.sink = MemorySink()
        self.recorder = Recorder(self.sink, settings.audit, "memory")  # type: ignore[arg-type]

    def run(self, policy: str, cases: list[list[str]], per_read: int = 1, settle: int = 1) -> list[Outcome]:
        """`stream` for each case (its deltas), on one event loop."""
        async def all_of() -> list[Outcome]:
            return [await self.stream(policy, pieces, per_read, settle) for pieces in cases]

        return asyncio.run(all_of())

    async def stream(self, policy: str, pieces: list[str], per_read: int = 1, settle: int = 1) -> Outcome:
        """Relay an answer arriving as `pieces` (one content delta each), `per_read` events per upstream read,
        the loop turning `settle` times between reads (window judges answer meanwhile)."""
        loop = asyncio.get_running_loop()
        upstream, client = MemoryUpstream(loop), MemoryClient()
        ctx = RequestContext(request_id="r", principal=ANONYMOUS, route="/v1/chat/completions", model="m",
                             started=0.0)
        relay = StreamRelay(StreamRequest(CHAT, ctx, [[{"role": "user", "content": "go"}]]), self.guard.policy(policy),
                            guard=self.guard, recorder=self.recorder, upstream=upstream,  # type: ignore[arg-type]
                            client=client)  # type: ignore[arg-type]
        before = len(self.sink.events)
        events = [_chunk({"role": "assistant", "content": ""})] + [_chunk({"content": p}) for p in pieces]
        events += [_chunk({}, finish="stop"), b"data: [DONE]\n\n"]
        task = asyncio.create_task(relay.run())
        for i in range(0, len(events), per_read):
            if task.done():
                break
            upstream.content.feed_data(b"".join(events[i:i + per_read]))
            for _ in range(settle):
                await asyncio.sleep(0)
        upstream.content.feed_eof()
        await asyncio.wait_for(task, 10)
        raw = bytes(client.data)
        text, finish = assemble(raw)
        return Outcome(raw, text, finish, self.sink.events[before:], upstream.closed)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode() + b"\n\n"


def assemble(raw: bytes) -> tuple[str, str | None]:
    """The text and finish_reason a client gets from these SSE bytes; asserts they end with `data: [DONE]`."""
    parts = raw.split(b"\n\n")
    assert parts[-1] == b"" and parts[-2] == b"data: [DONE]", raw[-200:]
    text, finish = "", None
    for part in parts[:-2]:
        assert part.startswith(b"data: "), part
        for choice in json.loads(part[6:]).get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
            finish = choice.get("finish_reason") or finish
    return text, finish
