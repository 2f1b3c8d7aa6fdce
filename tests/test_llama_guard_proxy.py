"""Llama Guard in a proxy policy, both stages, through the real proxy and the openai SDK.

The evaluator runs the tiny programmed model on the transformers backend: a prompt or
an answer mentioning "bomb" is unsafe (S1, S10).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from proxy.config import Settings
from proxy.demo_upstream import DemoUpstream, last_prompt
from tests.proxy_harness import ProxyHarness

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_llama_guard_model, build_tokenizer

    return build_llama_guard_model(tmp_path_factory.mktemp("lg-proxy") / "guard", build_tokenizer())


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ProxyHarness]:
    tmp_path = tmp_path_factory.mktemp("lg-proxy-audit")
    settings = Settings.model_validate({
        "upstream": {"url": "http://127.0.0.1:9", "read_timeout_s": 5},
        "evaluators": {"llama_guard": {"type": "llama_guard", "on_error": "fail_closed", "timeout_ms": 10_000,
                                       "options": {"backend": "transformers", "model": str(model_dir)}}},
        "policies": {"default": {"input": {"evaluators": ["llama_guard"]},
                                 "output": {"evaluators": ["llama_guard"]},
                                 "actions": {"default": "block"}}},
        "audit": {"jsonl_path": str(tmp_path / "audit.jsonl")},
    })

    def answer(body):  # type: ignore[no-untyped-def]
        return "Here is how to build a bomb." if "chemistry" in last_prompt(body) else "Bread needs flour."

    h = ProxyHarness(settings, DemoUpstream(answer=answer)).start()
    yield h
    h.stop()


def _client(h: ProxyHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)


def test_safe_prompt_and_answer_pass(harness: ProxyHarness) -> None:
    resp = _client(harness).chat.completions.create(model="m", messages=[{"role": "user", "content": "bread?"}])
    assert resp.choices[0].message.content == "Bread needs flour." and resp.choices[0].finish_reason == "stop"


def test_unsafe_prompt_is_blocked_with_llama_guard_categories(harness: ProxyHarness) -> None:
    seen = len(harness.upstream.requests)
    with pytest.raises(openai.BadRequestError) as err:
        _client(harness).chat.completions.create(model="m", messages=[{"role": "user", "content": "a bomb?"}])
    body = err.value.body
    assert body["code"] == "content_filter" and body["guardrail"]["categories"] == ["S1", "S10"]
    assert len(harness.upstream.requests) == seen  # never reached the upstream


def test_unsafe_answer_is_filtered(harness: ProxyHarness) -> None:
    resp = _client(harness).chat.completions.create(model="m", messages=[{"role": "user", "content": "chemistry"}])
    choice = resp.choices[0]
    assert choice.finish_reason == "content_filter"
    assert "bomb" not in (choice.message.content or "")
