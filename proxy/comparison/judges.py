"""Pairwise judges: which of two answers to the same conversation is better, as a margin for the candidate.

- `RewardJudge`: a reward_model evaluator scores both answers in one call (one batch); margin = r(candidate) -
  r(baseline), in reward units. The baseline's score is taken from its live verdict when the evaluator already
  judged it.
- `LLMJudge`: a model behind an OpenAI-compatible chat API is shown the conversation and the two answers twice,
  in both orders, and asked for `[[A]]`, `[[B]]` or `[[TIE]]`. Each order votes +1 (candidate), -1 (baseline)
  or 0 (tie); margin = the mean of the two votes, in [-1, 1]. A judge that always prefers the first answer
  votes once for each side: a tie, so position bias cancels instead of deciding. Verdicts are read robustly
  (`parse_choice`); without a readable verdict in both orders the bias cannot be cancelled: a judge error.

Either way the outcome for the candidate is win when margin > tie_margin, loss when margin < -tie_margin,
else tie.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from evaluators.base import EvalItem, Turn, Verdict
from evaluators.http_json import HTTPJSONError, JSONPoster
from proxy.config import LLMJudgeConfig

Outcome = Literal["win", "tie", "loss"]
Vote = Literal["baseline", "candidate", "tie"]


class JudgeError(Exception):
    """The judge could not decide (its model failed, or gave no readable verdict)."""


@dataclass(slots=True)
class Judgement:
    margin: float
    baseline_score: float | None = None
    candidate_score: float | None = None
    votes: list[Vote] | None = None
    #: the baseline's score came from its live verdict (already counted in the score histograms)
    baseline_from_live: bool = False


class PairwiseJudge(Protocol):
    kind: str
    name: str

    async def judge(self, policy: str, conversation: Sequence[Turn], baseline: str, candidate: str,
                    live: Sequence[Verdict]) -> Judgement: ...

    async def aclose(self) -> None: ...


def outcome_of(margin: float, tie_margin: float) -> Outcome:
    return "win" if margin > tie_margin else "loss" if margin < -tie_margin else "tie"


class RewardJudge:
    kind = "reward_model"

    def __init__(self, guard: Any, evaluator: str) -> None:
        self.guard = guard
        self.name = evaluator

    async def judge(self, policy: str, conversation: Sequence[Turn], baseline: str, candidate: str,
                    live: Sequence[Verdict]) -> Judgement:
        known = next((v.score for v in live if v.evaluator == self.name and v.error is None and v.score is not None),
                     None)
        items = [EvalItem(turns=tuple(conversation) + (Turn("assistant", text),), stage="output")
                 for text in ([candidate] if known is not None else [candidate, baseline])]
        evaluator = self.guard.evaluators[self.name]
        deadline = self.guard.settings.evaluators[self.name].timeout_ms / 1000
        try:  # both answers in one call (one batch, one request to a server); not cached: each pair is new
            async with asyncio.timeout(deadline):
                scores = await evaluator.rewards(items)
        except TimeoutError:
            raise JudgeError(f"reward model {self.name}: timeout after {deadline:g} s") from None
        except Exception as exc:  # the engine failed: no judgement, counted as judge_error
            raise JudgeError(f"reward model {self.name}: {type(exc).__name__}: {exc}") from None
        candidate_score = float(scores[0])
        baseline_score = known if known is not None else float(scores[1])
        return Judgement(candidate_score - baseline_score, baseline_score, candidate_score,
                         baseline_from_live=known is not None)

    async def aclose(self) -> None:
        return None


JUDGE_SYSTEM = ("You are an impartial judge of assistant answers. Compare two answers to the same conversation for "
                "helpfulness, correctness, relevance and clarity. Do not let the order of the answers, their length "
                "or the assistants' names influence you. Explain briefly, then give your verdict on the last line as "
                "exactly one of: [[A]] if answer A is better, [[B]] if answer B is better, [[TIE]] if they are "
                "equally good.")


def judge_prompt(conversation: Sequence[Turn], first: str, second: str) -> str:
    turns = "\n\n".join(f"{t.role}: {t.content}" for t in conversation)
    return (f"[Conversation]\n{turns}\n[End of conversation]\n\n[Answer A]\n{first}\n[End of answer A]\n\n"
            f"[Answer B]\n{second}\n[End of answer B]\n\nWhich answer is better? Last line: [[A]], [[B]] or [[TIE]].")


_BRACKETED = re.compile(r"\[\[\s*(A|B|TIE|TIED|EQUAL)\s*\]\]", re.IGNORECASE)
_LABELLED = re.compile(r"(?:verdict|winner|better answer|answer|final answer|choice)\s*(?:is|:|=)?\s*\**\s*"
                       r"\[?\s*(A|B|tie)\b", re.IGNORECASE)
_BARE = re.compile(r"^\W*(A|B|tie|tied|equal)\W*$", re.IGNORECASE)


def parse_choice(text: str) -> Literal["A", "B", "tie"] | None:
    """The judge's verdict: the last `[[A]]` / `[[B]]` / `[[TIE]]`; else a JSON `{"winner": ...}`; else the last
    line saying `Verdict: A`, `Answer B is better`, `tie` or just `A`. None when nothing readable is there (or the
    text names both without a bracketed verdict)."""
    if not text:
        return None
    found = _BRACKETED.findall(text)
    if found:
        return _norm(found[-1])
    try:
        data = json.loads(text.strip().removeprefix("```json").removeprefix("```").removesuffix("```"))
        if isinstance(data, dict):
            value = data.get("winner", data.get("verdict", data.get("better")))
            if isinstance(value, str) and _norm(value) is not None:
                return _norm(value)
    except ValueError:
        pass
    for line in reversed([line for line in text.strip().splitlines() if line.strip()][-3:]):
        bare = _BARE.match(line)
        if bare:
            return _norm(bare.group(1))
        labelled = _LABELLED.findall(line)
        if labelled and len({_norm(x) for x in labelled}) == 1:
            return _norm(labelled[-1])
    return None


def _norm(value: str) -> Literal["A", "B", "tie"] | None:
    v = value.strip().strip("[]*. ").lower()
    if v == "a":
        return "A"
    if v == "b":
        return "B"
    if v in ("tie", "tied", "equal", "draw"):
        return "tie"
    return None


class LLMJudge:
    kind = "llm"

    def __init__(self, cfg: LLMJudgeConfig) -> None:
        self.cfg = cfg
        self.name = cfg.model
        base = cfg.url.rstrip("/")
        self.endpoint = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        self._http = JSONPoster(api_key=key, timeout_s=cfg.timeout_s, retries=1, pool_size=16, name="llm_judge")

    async def judge(self, policy: str, conversation: Sequence[Turn], baseline: str, candidate: str,
                    live: Sequence[Verdict]) -> Judgement:
        first, second = await asyncio.gather(self._ask(conversation, baseline, candidate),
                                             self._ask(conversation, candidate, baseline))
        if first is None or second is None:
            raise JudgeError(f"LLM judge {self.name}: no readable verdict "
                             f"({'either order' if first is None and second is None else 'one order'})")
        votes: list[Vote] = [_vote(first, a_is="baseline"), _vote(second, a_is="candidate")]
        value = {"candidate": 1.0, "baseline": -1.0, "tie": 0.0}
        return Judgement(sum(value[v] for v in votes) / 2, votes=votes)

    async def _ask(self, conversation: Sequence[Turn], first: str, second: str) -> Literal["A", "B", "tie"] | None:
        payload = {"model": self.cfg.model, "temperature": 0, "max_tokens": self.cfg.max_tokens,
                   "messages": [{"role": "system", "content": JUDGE_SYSTEM},
                                {"role": "user", "content": judge_prompt(conversation, first, second)}]}
        try:
            data = await self._http.post(self.endpoint, payload)
            text = data["choices"][0]["message"]["content"]
        except HTTPJSONError as exc:
            raise JudgeError(f"LLM judge {self.name}: {exc}") from None
        except (KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"LLM judge {self.name}: malformed answer ({type(exc).__name__})") from None
        return parse_choice(text if isinstance(text, str) else "")

    async def aclose(self) -> None:
        await self._http.aclose()


def _vote(choice: Literal["A", "B", "tie"], a_is: Vote) -> Vote:
    if choice == "tie":
        return "tie"
    b_is: Vote = "candidate" if a_is == "baseline" else "baseline"
    return a_is if choice == "A" else b_is
