"""Llama Guard over HTTP: a real loopback server speaking the legacy /v1/completions API with logprobs.

The server answers `unsafe\\nS1,S10` (P(unsafe)=0.9) when "bomb" is in the prompt and
`safe` (P(unsafe)=0.2) otherwise, and can be told to fail: 5xx, delays, garbage.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from evaluators.base import EvalItem
from evaluators.llama_guard import LlamaGuardEvaluator
from evaluators.llama_guard.backends.base import BackendError
from evaluators.llama_guard.metrics import PARSE_ERRORS


@dataclass
class FakeVLLM:
    """Behaviour of the next requests: each entry of `script` is used once, then `default`."""

    script: list[str] = field(default_factory=list)
    default: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    #: gap: like Llama Guard 3 after Meta's template, a "\n\n" token first (byte-level spellings);
    #: plain: the word first
    style: str = "gap"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        mode = self.script.pop(0) if self.script else self.default
        if mode.isdigit():
            return web.json_response({"error": {"message": "engine overloaded"}}, status=int(mode))
        if mode == "slow":
            await asyncio.sleep(2.0)
        if mode == "garbage_body":
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        if mode == "no_choices":
            return web.json_response({"id": "x", "object": "text_completion"})
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = [dict(self.choice(p, mode, body), index=i) for i, p in enumerate(prompts)]
        return web.json_response({"id": "cmpl-1", "object": "text_completion", "model": body["model"],
                                  "choices": choices})

    def choice(self, prompt: str, mode: str, body: dict[str, Any]) -> dict[str, Any]:
        if prompt.endswith("unsafe\n"):  # continuation asked for the category line
            return {"text": "S2", "logprobs": None, "finish_reason": "stop"}
        p = 0.9 if "bomb" in prompt else 0.2
        if mode == "garbage_text":
            return _choice(["I", " think", " it's", " fine"], {"I": -0.1, "safe": -4.0, "unsafe": -5.0})
        if mode == "truncated":
            return dict(_choice(["unsafe", "\n", "S", "1"], {"unsafe": math.log(0.9), "safe": math.log(0.1)}),
                        finish_reason="length")
        words = ["unsafe", "\n", "S1", ",", "S10"] if p > 0.5 else ["safe"]
        top = {"unsafe": math.log(p), "safe": math.log(1 - p), "The": -9.0}
        if self.style == "gap":
            words = ["\u010a\u010a", *words]
            top = {"\u0120unsafe": math.log(p * 0.5), "unsafe": math.log(p * 0.5), "safe": math.log(1 - p)}
        choice = _choice(words, top, gap=self.style == "gap")
        if mode == "no_logprobs" or body.get("logprobs") is None:
            choice["logprobs"] = None
        return choice


def _choice(tokens: list[str], first_top: dict[str, float], gap: bool = False) -> dict[str, Any]:
    tops: list[dict[str, float] | None] = [{t: -0.01} for t in tokens]
    tops[1 if gap else 0] = first_top
    if gap:
        tops[0] = {"\u010a\u010a": -0.001, "safe": -8.0}
    text = "".join(tokens).replace("\u010a", "\n").replace("\u0120", " ")
    return {"text": text, "finish_reason": "stop",
            "logprobs": {"tokens": tokens, "token_logprobs": [-0.01] * len(tokens), "top_logprobs": tops,
                         "text_offset": list(range(len(tokens)))}}


@pytest.fixture
async def fake() -> Any:
    state = FakeVLLM()
    app = web.Application()
    app.router.add_post("/v1/completions", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/")).rstrip("/")  # type: ignore[attr-defined]
    yield state
    await server.close()


def evaluator(fake: Any, **options: Any) -> LlamaGuardEvaluator:
    base = {"backend": "openai_http", "url": fake.url, "model": "meta-llama/Llama-Guard-3-8B", "timeout_s": 1.0,
            "retries": 2, "backoff_s": 0.01}
    return LlamaGuardEvaluator("lg-http", {**base, **options})


async def test_verdicts_scores_and_request_shape(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LG_TEST_KEY", "sk-test-123")
    ev = evaluator(fake, api_key_env="LG_TEST_KEY")
    try:
        safe, unsafe = await ev.evaluate([EvalItem.of_text("bread?"), EvalItem.of_text("a bomb?")])
    finally:
        await ev.aclose()
    assert safe.safe and safe.score == pytest.approx(0.2) and safe.categories == []
    assert not unsafe.safe and unsafe.score == pytest.approx(0.9) and unsafe.categories == ["S1", "S10"]
    (body,) = fake.requests  # both prompts in one request
    assert body["model"] == "meta-llama/Llama-Guard-3-8B" and body["logprobs"] == 20
    assert body["temperature"] == 0 and 3 <= body["max_tokens"] <= 10  # "\n\n", the word, <|eot_id|>
    assert len(body["prompt"]) == 2
    # the server's tokenizer adds BOS: the prompt is sent without it
    assert body["prompt"][0].startswith("<|start_header_id|>user<|end_header_id|>\n\nTask: Check")
    assert body["prompt"][0].endswith("categories. <|eot_id|><|start_header_id|>assistant<|end_header_id|>")
    assert fake.headers[0]["Authorization"] == "Bearer sk-test-123"


async def test_bos_is_kept_when_the_server_does_not_add_it(fake: Any) -> None:
    ev = evaluator(fake, server_adds_bos=False)
    try:
        await ev.evaluate([EvalItem.of_text("bread")])
    finally:
        await ev.aclose()
    assert fake.requests[0]["prompt"].startswith("<|begin_of_text|><|start_header_id|>user")


async def test_answer_without_the_leading_newline_token(fake: Any) -> None:
    """A server whose template already wrote the blank line: the first token is the word."""
    fake.style = "plain"
    ev = evaluator(fake)
    try:
        safe, unsafe = await ev.evaluate([EvalItem.of_text("bread"), EvalItem.of_text("bomb")])
    finally:
        await ev.aclose()
    assert safe.safe and safe.score == pytest.approx(0.2)
    assert not unsafe.safe and unsafe.score == pytest.approx(0.9) and unsafe.categories == ["S1", "S10"]


async def test_5xx_is_retried_then_succeeds(fake: Any) -> None:
    fake.script = ["503", "500"]
    ev = evaluator(fake)
    try:
        (v,) = await ev.evaluate([EvalItem.of_text("bomb")])
    finally:
        await ev.aclose()
    assert not v.safe and len(fake.requests) == 3
    assert ev.backend.stats["retries"] == 2  # type: ignore[attr-defined]


async def test_persistent_5xx_raises_after_bounded_retries(fake: Any) -> None:
    fake.default = "502"
    ev = evaluator(fake, retries=3)
    try:
        with pytest.raises(BackendError, match="after 4 attempts.*HTTP 502"):
            await ev.evaluate([EvalItem.of_text("bread")])
    finally:
        await ev.aclose()
    assert len(fake.requests) == 4


async def test_client_error_is_not_retried(fake: Any) -> None:
    fake.default = "400"
    ev = evaluator(fake)
    try:
        with pytest.raises(BackendError, match="HTTP 400.*engine overloaded"):
            await ev.evaluate([EvalItem.of_text("bread")])
    finally:
        await ev.aclose()
    assert len(fake.requests) == 1


async def test_timeouts_are_retried(fake: Any) -> None:
    fake.script = ["slow"]
    ev = evaluator(fake, timeout_s=0.3, retries=1)
    try:
        (v,) = await ev.evaluate([EvalItem.of_text("bread")])
        assert v.safe
        fake.script = ["slow", "slow"]
        with pytest.raises(BackendError, match="TimeoutError"):
            await ev.evaluate([EvalItem.of_text("bread")])
    finally:
        await ev.aclose()


async def test_connection_refused_raises() -> None:
    from tests.services import free_port

    ev = LlamaGuardEvaluator("lg-down", {"backend": "openai_http", "url": f"http://127.0.0.1:{free_port()}",
                                         "retries": 1, "backoff_s": 0.01, "timeout_s": 1.0})
    try:
        with pytest.raises(BackendError, match="after 2 attempts"):
            await ev.evaluate([EvalItem.of_text("bread")])
    finally:
        await ev.aclose()


@pytest.mark.parametrize("mode", ["garbage_body", "no_choices"])
async def test_malformed_responses_raise(fake: Any, mode: str) -> None:
    fake.default = mode
    ev = evaluator(fake)
    try:
        with pytest.raises(BackendError, match="non-JSON|malformed"):
            await ev.evaluate([EvalItem.of_text("bread")])
    finally:
        await ev.aclose()


async def test_garbage_model_output_is_an_error_verdict(fake: Any) -> None:
    fake.script = ["garbage_text"]
    ev = evaluator(fake)
    before = PARSE_ERRORS.labels(evaluator="lg-http")._value.get()
    try:
        (bad,) = await ev.evaluate([EvalItem.of_text("bread")])
        (good,) = await ev.evaluate([EvalItem.of_text("bread")])
    finally:
        await ev.aclose()
    assert bad.error is not None and "'i'" in bad.error and good.error is None and good.safe
    assert PARSE_ERRORS.labels(evaluator="lg-http")._value.get() == before + 1


async def test_low_threshold_asks_for_the_category_line(fake: Any) -> None:
    ev = evaluator(fake, threshold=0.1)
    try:
        (v,) = await ev.evaluate([EvalItem.of_text("bread")])  # text "safe", P(unsafe)=0.2 >= 0.1
    finally:
        await ev.aclose()
    assert not v.safe and v.categories == ["S2"] and v.score == pytest.approx(0.2)
    follow_up = fake.requests[1]
    assert follow_up["prompt"].endswith("<|end_header_id|>\n\nunsafe\n") and "logprobs" not in follow_up


async def test_truncated_answer_gets_its_categories_completed(fake: Any) -> None:
    fake.script = ["truncated"]
    ev = evaluator(fake)
    try:
        (v,) = await ev.evaluate([EvalItem.of_text("bomb")])
    finally:
        await ev.aclose()
    assert not v.safe and v.categories == ["S2"] and len(fake.requests) == 2


async def test_no_logprobs_falls_back_to_the_text(fake: Any) -> None:
    fake.default = "no_logprobs"
    ev = evaluator(fake)
    try:
        safe, unsafe = await ev.evaluate([EvalItem.of_text("bread"), EvalItem.of_text("bomb")])
    finally:
        await ev.aclose()
    assert safe.safe and safe.score == 0.0
    assert not unsafe.safe and unsafe.score == 1.0 and unsafe.categories == ["S1", "S10"]


async def test_tokenizer_chat_template_renders_the_prompt(fake: Any, tmp_path: Path) -> None:
    from tests.tiny_models import build_tokenizer

    tok = build_tokenizer(tmp_path / "tok")
    ev = evaluator(fake, tokenizer=str(tmp_path / "tok"))
    item = EvalItem.from_messages([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a bomb"}],
                                  "output")
    try:
        (v,) = await ev.evaluate([item])
    finally:
        await ev.aclose()
    expected = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a bomb"}],
                                       tokenize=False, add_generation_prompt=True)
    assert fake.requests[0]["prompt"] == expected.removeprefix(tok.bos_token)
    assert ev.cache_context(item) == expected and not v.safe


async def test_many_concurrent_requests_share_the_pool(fake: Any) -> None:
    ev = evaluator(fake, pool_size=4)
    try:
        results = await asyncio.gather(*(ev.evaluate([EvalItem.of_text(f"q{i} bomb" if i % 2 else f"q{i}")])
                                         for i in range(40)))
    finally:
        await ev.aclose()
    assert [r[0].safe for r in results] == [i % 2 == 0 for i in range(40)]
    assert len(fake.requests) == 40
    json.dumps([r[0].to_dict() for r in results])  # verdicts stay JSON-serialisable (cache values)
