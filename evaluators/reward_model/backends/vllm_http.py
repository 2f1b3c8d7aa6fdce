"""A reward model behind a vLLM server (`vllm serve MODEL --runner pooling`): its classify or pooling endpoint.

A TRL reward model is a `*ForSequenceClassification` with one label, which vLLM serves for the `classify`
task. Requests follow vLLM's pooling API:

- `POST /classify` `{"model": M, "input": [text, ...], "use_activation": false}` -> `{"data": [{"index": i,
  "probs": [reward], "num_classes": 1}, ...]}`: with the activation off, `probs` holds the raw logit. For a
  server without `use_activation` (it applies a sigmoid to a one-label model) set `server_scale: sigmoid`:
  nothing is asked of the activation and the logit is recovered from the probability. With
  `input_format: chat_template` each conversation is sent as `messages` instead (the server applies the model's
  chat template), one request per conversation.
- `POST /pooling` `{"model": M, "input": [text, ...]}` -> `{"data": [{"index": i, "data": [...]}]}`: for
  models vLLM pools per token (`*ForRewardModeling`, `ALL` pooling) the reward is the last token's value; a
  flat list gives its last number.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Sequence
from typing import Any

from evaluators.base import OptionError, Turn
from evaluators.http_json import HTTPJSONError, JSONPoster
from evaluators.reward_model.backends import RewardBackendError
from evaluators.reward_model.render import messages_of, plain_text


class VLLMRewardBackend:
    name = "vllm"

    def __init__(self, url: str, model: str, *, endpoint: str = "classify", input_format: str = "auto",
                 server_scale: str = "logit", api_key_env: str | None = None, timeout_s: float = 10.0,
                 connect_timeout_s: float = 2.0, retries: int = 1, pool_size: int = 16,
                 request_batch_size: int = 16) -> None:
        base = url.rstrip("/")
        base = base[:-3] if base.endswith("/v1") else base
        self.endpoint = f"{base}/{endpoint}"
        self.kind = endpoint
        self.model = model
        self.chat = input_format == "chat_template"
        if self.chat and endpoint != "classify":
            raise OptionError("input_format", "chat_template needs endpoint classify (it sends messages)")
        self.sigmoid = server_scale == "sigmoid"
        self.batch = max(1, request_batch_size)
        self.version = f"vllm-{model}-{endpoint}-{'chat' if self.chat else 'plain'}"
        key = os.environ.get(api_key_env) if api_key_env else None
        self._http = JSONPoster(api_key=key, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                                retries=retries, pool_size=pool_size, name="reward_model")

    @property
    def stats(self) -> dict[str, int]:
        return self._http.stats

    def render(self, turns: Sequence[Turn]) -> str:
        return plain_text(turns)

    async def score(self, conversations: Sequence[Sequence[Turn]]) -> list[float]:
        if self.chat:
            answers = await asyncio.gather(*(self._request({"messages": messages_of(c)}, 1) for c in conversations))
            return [a[0] for a in answers]
        texts = [self.render(c) for c in conversations]
        chunks = [texts[i:i + self.batch] for i in range(0, len(texts), self.batch)]
        answers = await asyncio.gather(*(self._request({"input": chunk}, len(chunk)) for chunk in chunks))
        return [reward for chunk in answers for reward in chunk]

    async def _request(self, what: dict[str, Any], n: int) -> list[float]:
        payload: dict[str, Any] = {"model": self.model, **what}
        if self.kind == "classify" and not self.sigmoid:
            payload["use_activation"] = False
        try:
            data = await self._http.post(self.endpoint, payload)
        except HTTPJSONError as exc:
            raise RewardBackendError(str(exc)) from None
        return self._parse(data, n)

    def _parse(self, data: Any, n: int) -> list[float]:
        try:
            rows = sorted(data["data"], key=lambda r: int(r.get("index", 0)))
            if len(rows) != n:
                raise RewardBackendError(f"{self.endpoint}: expected {n} results, got {len(rows)}")
            values = [self._value(row) for row in rows]
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise RewardBackendError(f"{self.endpoint}: malformed answer ({type(exc).__name__}: {exc})") from None
        for value in values:
            if not math.isfinite(value):
                raise RewardBackendError(f"{self.endpoint}: a score is not a finite number")
        return values

    def _value(self, row: Any) -> float:
        if self.kind == "classify":
            probs = row["probs"]
            if len(probs) != 1:
                raise RewardBackendError(f"{self.endpoint}: {len(probs)} classes; a reward model has one")
            value = float(probs[0])
            return _logit(value) if self.sigmoid else value
        last = row["data"][-1]
        return float(last[0] if isinstance(last, list) else last)

    async def aclose(self) -> None:
        await self._http.aclose()


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))
