"""The `redact` action end to end, with the real PII engine: prompts reach the upstream masked, answers reach
the client masked (streamed in buffered mode too), reasoning and content each masked in their own field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from proxy.demo_upstream import DemoUpstream
from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness
from tests.stream_client import chat_body, finishes, payloads, raw_stream, texts

EMAIL, CARD = "jane.doe@example.org", "4111 1111 1111 1111"
ANSWER = f"Sure, write to {EMAIL} and pay with {CARD} today please."
MASKED = "Sure, write to [PII:email] and pay with [PII:credit_card] today please."


def start(tmp_path: Path, upstream: DemoUpstream, chunk: int = 64, mode: str = "buffered") -> ProxyHarness:
    policy: dict[str, Any] = {
        "input": {"evaluators": ["pii"]},
        "output": {"evaluators": ["pii"], "streaming": {"mode": mode, "chunk_size": chunk, "context_size": 4}},
        "actions": {"pii": "redact", "default": "block"}}
    settings = keyword_settings(tmp_path, policy=policy, evaluators={"pii": {"type": "pii"}})
    return ProxyHarness(settings, upstream).start()


def client(h: ProxyHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)


def test_prompt_reaches_the_upstream_masked(tmp_path: Path) -> None:
    h = start(tmp_path, DemoUpstream(answer=lambda body: "ok"))
    try:
        client(h).chat.completions.create(model="m", messages=[{"role": "user", "content": f"I am {EMAIL}"}])
        assert h.upstream.requests[-1]["body"]["messages"][-1]["content"] == "I am [PII:email]"
    finally:
        h.stop()


def test_answer_is_masked_and_reasoning_stays_in_its_field(tmp_path: Path) -> None:
    upstream = DemoUpstream(answer=lambda body: ANSWER, reasoning=f"The user is {EMAIL}.")
    h = start(tmp_path, upstream)
    try:
        answer = client(h).chat.completions.create(model="m", messages=[{"role": "user", "content": "pay"}])
        message = answer.choices[0].message
        assert message.content == MASKED and answer.choices[0].finish_reason == "stop"
        assert message.model_extra["reasoning_content"] == "The user is [PII:email]."
        assert EMAIL not in answer.model_dump_json()
    finally:
        h.stop()


@pytest.mark.parametrize("chunk", [64, 3])
def test_streamed_answer_is_masked_in_buffered_mode(tmp_path: Path, chunk: int) -> None:
    """A window of 64 tokens holds the whole answer; windows of 3 tokens split the card number over two: the
    second sees the whole number through its context, and buffered mode still holds that context (the last
    `context_size` approved tokens wait for the next verdict), so the whole number is masked."""
    upstream = DemoUpstream(answer=lambda body: ANSWER, reasoning=f"Mail {EMAIL} now. ", chunk_delay_s=0.001)
    h = start(tmp_path, upstream, chunk=chunk)
    try:
        raw = raw_stream(h, chat_body())
        assert EMAIL.encode() not in raw and b"4111" not in raw
        assert finishes(raw) == {0: "stop"}
        thinking = "".join(p["choices"][0]["delta"].get("reasoning_content") or "" for p in payloads(raw)
                           if p.get("choices"))
        assert thinking == "Mail [PII:email] now. "
        assert texts(raw)[0] == MASKED
    finally:
        h.stop()


def test_streamed_answer_through_the_sdk(tmp_path: Path) -> None:
    h = start(tmp_path, DemoUpstream(answer=lambda body: ANSWER, chunk_delay_s=0.001))
    try:
        stream = client(h).chat.completions.create(model="m", stream=True,
                                                   messages=[{"role": "user", "content": "pay"}])
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == MASKED
    finally:
        h.stop()


class _BigIntUpstream(DemoUpstream):
    """Answers with a field holding an integer past 64 bits, beside a PII answer the proxy must rewrite."""

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = ('{"id":"x","object":"chat.completion","created":1,"model":"m","seed":123456789012345678901234567890,'
                '"choices":[{"index":0,"message":{"role":"assistant","content":"' + ANSWER + '"},'
                '"finish_reason":"stop"}]}')
        return web.Response(body=body.encode(), content_type="application/json")


async def _post(url: str, body: dict[str, Any]) -> bytes:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        return await response.read()


def test_a_rewritten_answer_keeps_an_integer_past_64_bits_exact(tmp_path: Path) -> None:
    h = start(tmp_path, _BigIntUpstream())
    try:
        raw = h.call(_post(h.base_url + "/v1/chat/completions", chat_body(stream=False)))
        assert b'"seed":123456789012345678901234567890' in raw
        assert MASKED.encode() in raw and EMAIL.encode() not in raw
    finally:
        h.stop()
