"""Streaming relay: upstream SSE to the client chunk by chunk, with output moderation.

Foundation modes: `off` (pure relay) and `final` (forward at once, hold back
only each choice's finishing chunk, evaluate the whole answer at the end; an
unsafe answer ends with `finish_reason: "content_filter"`). Role, tool-call,
usage and keep-alive events pass through untouched.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from proxy.config import PolicyConfig
from proxy.guard import Guard
from proxy.metrics import STREAM_CUTS, UPSTREAM_ERRORS
from proxy.recording import Recorder, RequestContext
from proxy.routes import GenerationRoute
from proxy.sse import DONE, SSEEvent, SSEParser, encode_event

log = structlog.get_logger("guardstream.streaming")


def effective_mode(policy: PolicyConfig) -> str:
    mode = policy.output.streaming.mode
    if mode is None:
        mode = "final"
    return mode


@dataclass(slots=True)
class ChoiceState:
    """One choice's answer so far and what is held back until it is judged."""

    index: int
    text: list[str] = field(default_factory=list)
    held: list[bytes] = field(default_factory=list)
    finished: bool = False
    cut: bool = False

    @property
    def answer(self) -> str:
        return "".join(self.text)


class StreamRelay:
    """Relays one streamed generation, judging each choice's answer per the policy's streaming mode."""

    def __init__(self, *, route: GenerationRoute, guard: Guard, recorder: Recorder, ctx: RequestContext,
                 policy_name: str, conversation: list[dict[str, str]], upstream: aiohttp.ClientResponse,
                 client: web.StreamResponse) -> None:
        self.route = route
        self.guard = guard
        self.recorder = recorder
        self.ctx = ctx
        self.policy_name = policy_name
        self.policy = guard.settings.policies[policy_name]
        self.mode = effective_mode(self.policy)
        self.conversation = conversation
        self.upstream = upstream
        self.client = client
        self.choices: dict[int, ChoiceState] = {}
        self.tail: list[bytes] = []  # usage chunks and anything after the finish chunks
        self.meta: dict[str, Any] = {}

    async def run(self) -> None:
        parser = SSEParser()
        done = False
        try:
            async for chunk in self.upstream.content.iter_any():
                for event in parser.feed(chunk):
                    if event.is_done:
                        done = True
                        break
                    await self._on_event(event)
                if done:
                    break
            else:
                for event in parser.flush():
                    if not event.is_done:
                        await self._on_event(event)
                    else:
                        done = True
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            UPSTREAM_ERRORS.labels("stream_interrupted").inc()
            log.warning("upstream_stream_interrupted", error=type(exc).__name__)
            await self._finish(upstream_done=False)
            await self.client.write(encode_event({"error": {
                "message": "The upstream stream was interrupted.", "type": "api_error", "param": None,
                "code": "upstream_stream_interrupted"}}))
            return
        finally:
            self.upstream.close()  # stops generation upstream if we left early
        await self._finish(upstream_done=done)

    async def _on_event(self, event: SSEEvent) -> None:
        if event.data is None:  # comment / keep-alive
            await self.client.write(event.raw)
            return
        try:
            payload = json.loads(event.data)
        except ValueError:
            await self.client.write(event.raw)
            return
        if not isinstance(payload, dict):
            await self.client.write(event.raw)
            return
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices:
            self._remember_meta(payload)
            if self.mode == "off" or not self.choices:
                await self.client.write(event.raw)
            else:
                self.tail.append(event.raw)  # usage chunk: after the verdicts
            return
        self._remember_meta(payload)
        finishing: ChoiceState | None = None
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            state = self._choice(choice.get("index", 0))
            state.text.append(self.route.delta_text(choice))
            if choice.get("finish_reason"):
                state.finished = True
                finishing = state
        if finishing is not None and self.mode != "off":
            finishing.held.append(event.raw)
            return
        await self.client.write(event.raw)

    def _choice(self, index: Any) -> ChoiceState:
        idx = index if isinstance(index, int) else 0
        state = self.choices.get(idx)
        if state is None:
            state = self.choices[idx] = ChoiceState(idx)
        return state

    def _remember_meta(self, payload: dict[str, Any]) -> None:
        if not self.meta:
            self.meta = {k: payload[k] for k in ("id", "created", "model", "system_fingerprint") if k in payload}

    async def _finish(self, upstream_done: bool) -> None:
        if self.mode != "off" and self.choices:
            await asyncio.gather(*(self._judge_final(state) for state in self.choices.values()))
        for state in self.choices.values():
            for raw in state.held:
                await self.client.write(raw)
        for raw in self.tail:
            await self.client.write(raw)
        if upstream_done:
            await self.client.write(DONE)

    async def _judge_final(self, state: ChoiceState) -> None:
        started = time.perf_counter()
        item = self.route.output_item(self.conversation, state.answer)
        decision = await self.guard.check(self.policy_name, item)
        self.recorder.record(self.ctx, decision, self.conversation, state.answer, choice_index=state.index,
                             stream_mode=self.mode, latency_ms=(time.perf_counter() - started) * 1000)
        if decision.blocks:
            state.cut = True
            state.held = [self.cut_chunk(state.index, decision.categories, decision.evaluators)]
            STREAM_CUTS.labels(self.mode).inc()

    def cut_chunk(self, index: int, categories: list[str], evaluators: list[str],
                  refusal: str | None = None) -> bytes:
        """The last chunk of a cut choice: `finish_reason: "content_filter"` plus the guardrail details."""
        choice: dict[str, Any] = {"index": index, "finish_reason": "content_filter"}
        if self.route.name == "chat":
            choice["delta"] = {"content": refusal} if refusal else {}
        else:
            choice["text"] = refusal or ""
        payload = {
            "id": self.meta.get("id", f"guardstream-{self.ctx.request_id}"),
            "object": self.route.chunk_object,
            "created": self.meta.get("created", int(time.time())),
            "model": self.meta.get("model", self.ctx.model or ""),
            "choices": [choice],
            "guardrail": {"stage": "output", "categories": categories, "evaluators": evaluators},
        }
        return encode_event(payload)
