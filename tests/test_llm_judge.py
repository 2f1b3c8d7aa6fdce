"""The LLM pairwise judge: verdicts read robustly, both orders asked, position bias cancelled, ties allowed."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from evaluators.base import Turn
from proxy.comparison.judges import JudgeError, LLMJudge, outcome_of, parse_choice
from proxy.config import LLMJudgeConfig


@pytest.mark.parametrize("text, expected", [
    ("Answer B is more accurate.\n[[B]]", "B"),
    ("[[A]] was my first thought, but on reflection [[B]]", "B"),
    ("Both are fine.\n\n[[TIE]]", "tie"),
    ("[[ a ]]", "A"),
    ('{"winner": "A", "reason": "shorter"}', "A"),
    ('```json\n{"verdict": "tie"}\n```', "tie"),
    ("Reasoning...\nVerdict: B", "B"),
    ("Reasoning...\nFinal answer: **A**", "A"),
    ("The better answer is A.", "A"),
    ("B", "B"),
    ("Tie.", "tie"),
    ("", None),
    ("I cannot decide between them.", None),
    ("Answer A is long, answer B is short.", None),  # names both, decides nothing
    ("As a judge I refuse.", None),
])
def test_verdicts_are_read_robustly(text: str, expected: str | None) -> None:
    assert parse_choice(text) == expected


def test_outcome_is_the_candidates_within_the_tie_margin() -> None:
    assert [outcome_of(m, 0.1) for m in (1.0, 0.5, 0.1, 0.0, -0.1, -0.5)] == ["win", "win", "tie", "tie", "tie",
                                                                              "loss"]


def judge_server(decide: Callable[[str, str], str]) -> tuple[web.Application, list[dict[str, Any]]]:
    """decide(answer A, answer B) -> the judge's text."""
    seen: list[dict[str, Any]] = []

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        prompt = body["messages"][-1]["content"]
        a = re.search(r"\[Answer A\]\n(.*?)\n\[End of answer A\]", prompt, re.S).group(1)  # type: ignore[union-attr]
        b = re.search(r"\[Answer B\]\n(.*?)\n\[End of answer B\]", prompt, re.S).group(1)  # type: ignore[union-attr]
        return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": decide(a, b)},
                                               "finish_reason": "stop"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app, seen


async def judged(decide: Callable[[str, str], str], baseline: str = "I am not sure.",
                 candidate: str = "It is 42.") -> tuple[Any, list[dict[str, Any]]]:
    app, seen = judge_server(decide)
    server = TestServer(app)
    await server.start_server()
    judge = LLMJudge(LLMJudgeConfig(url=str(server.make_url("")), model="judge-1"))
    try:
        result = await judge.judge("default", [Turn("user", "What is 6 x 7?")], baseline, candidate, [])
    finally:
        await judge.aclose()
        await server.close()
    return result, seen


async def test_both_orders_are_asked_and_agree() -> None:
    result, seen = await judged(lambda a, b: "[[A]]" if "42" in a else "[[B]]")
    assert result.votes == ["candidate", "candidate"] and result.margin == 1.0
    shown_first = [re.search(r"\[Answer A\]\n(.*?)\n", s["messages"][-1]["content"]).group(1)  # type: ignore
                   for s in seen]
    assert sorted(shown_first) == ["I am not sure.", "It is 42."]
    assert all(s["temperature"] == 0 and s["model"] == "judge-1" for s in seen)


async def test_a_judge_that_always_picks_the_first_answer_is_a_tie() -> None:
    result, _ = await judged(lambda a, b: "Clearly the first.\n[[A]]")
    assert result.votes == ["baseline", "candidate"] and result.margin == 0.0
    assert outcome_of(result.margin, 0.1) == "tie"


async def test_ties_and_half_votes() -> None:
    result, _ = await judged(lambda a, b: "[[TIE]]")
    assert result.margin == 0.0 and result.votes == ["tie", "tie"]
    # one order prefers the candidate, the other calls it even: half a vote
    result, _ = await judged(lambda a, b: "[[A]]" if a == "It is 42." else "[[TIE]]")
    assert result.margin == 0.5 and outcome_of(result.margin, 0.1) == "win"


async def test_an_unreadable_judge_is_an_error() -> None:
    with pytest.raises(JudgeError, match="no readable verdict"):
        await judged(lambda a, b: "I would rather not say." if a == "It is 42." else "[[A]]")
