"""What the Llama Guard evaluator needs of a model backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from evaluators.llama_guard.scoring import Generation


class BackendError(RuntimeError):
    """The backend could not answer (server down after retries, bad response, model failure)."""


class Backend(Protocol):
    """Runs complete prompts (already rendered) through a Llama Guard model.

    `score` returns, per prompt, at least the generated tokens up to and including the
    first non-whitespace one, with the top alternatives' log-probabilities there; a
    backend may return more (the whole answer) when that costs nothing extra, and
    says so with `Generation.finished`. `complete` greedily continues prompts (used
    to read the category line when the first pass stopped early).
    """

    name: str

    async def score(self, prompts: Sequence[str]) -> list[Generation]: ...

    async def complete(self, prompts: Sequence[str], max_tokens: int) -> list[str]: ...

    async def aclose(self) -> None: ...
