"""Reward model backends: in process (transformers) and a vLLM server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from evaluators.base import Turn


class RewardBackendError(RuntimeError):
    """The backend could not score (server down after retries, bad response, model failure)."""


class RewardBackend(Protocol):
    """Scores conversations that end in the judged answer: one reward per conversation, higher = better."""

    name: str
    #: identifies the model (and its rendering): part of the evaluator's version, so of the cache key
    version: str

    def render(self, turns: Sequence[Turn]) -> str: ...

    async def score(self, conversations: Sequence[Sequence[Turn]]) -> list[float]: ...

    async def aclose(self) -> None: ...
