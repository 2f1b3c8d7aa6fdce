"""A loopback server shaped like vLLM's pooling API (`/classify`, `/pooling`) serving a fake reward model.

The reward of a text is +2 when its last `Assistant:` part holds a digit, else -2 (the tiny reward model's
preference, computed instead of learned). `/classify` answers `probs: [logit]` when `use_activation` is false
and `probs: [sigmoid(logit)]` otherwise, as vLLM does for a one-label model; `/pooling` answers one value per
token (the reward at the last). `script` makes the next requests fail: an HTTP status, `slow`, or `garbage`.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def fake_reward(text: str) -> float:
    answer = text.rsplit("Assistant:", 1)[-1]
    return 2.0 if re.search(r"\d", answer) else -2.0


@dataclass
class FakeVLLMPooling:
    script: list[str] = field(default_factory=list)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/classify", self._classify)
        app.router.add_post("/pooling", self._pooling)
        return app

    async def _failure(self, request: web.Request, path: str) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.json()
        self.requests.append((path, body))
        self.headers.append(dict(request.headers))
        mode = self.script.pop(0) if self.script else "ok"
        if mode.isdigit():
            return body, web.json_response({"error": {"message": "engine overloaded"}}, status=int(mode))
        if mode == "slow":
            await asyncio.sleep(2.0)
        if mode == "garbage":
            return body, web.json_response({"data": [{"index": 0, "probs": ["x"]}]})
        return body, None

    async def _classify(self, request: web.Request) -> web.Response:
        body, failed = await self._failure(request, "/classify")
        if failed is not None:
            return failed
        if "messages" in body:
            texts = ["\n\n".join(f"{m['role'].title()}: {m['content']}" for m in body["messages"])]
        else:
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        activation = body.get("use_activation", True)
        data = []
        for i, text in enumerate(texts):
            r = fake_reward(text)
            data.append({"index": i, "label": "LABEL_0", "num_classes": 1,
                         "probs": [r if activation is False else 1 / (1 + math.exp(-r))]})
        return web.json_response({"id": "classify-1", "object": "list", "model": body["model"], "data": data[::-1]})

    async def _pooling(self, request: web.Request) -> web.Response:
        body, failed = await self._failure(request, "/pooling")
        if failed is not None:
            return failed
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"index": i, "object": "pooling", "data": [[0.0], [0.5], [fake_reward(t)]]}
                for i, t in enumerate(texts)]
        return web.json_response({"id": "pool-1", "object": "list", "model": body["model"], "data": data})
