"""The proxy end to end with the official openai SDK: allowed, blocked input/output, flags, shadow, streaming."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from proxy.demo_upstream import DemoUpstream
from proxy.schemas.events import validation_errors
from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness


def answers(mapping: dict[str, str], default: str = "A perfectly harmless answer."):  # type: ignore[no-untyped-def]
    def answer(body):  # type: ignore[no-untyped-def]
        from proxy.demo_upstream import last_prompt

        prompt = last_prompt(body)
        for trigger, text in mapping.items():
            if trigger in prompt:
                return text
        return default

    return answer


SCRIPT = {
    "leak the key": "Sure: -----BEGIN PRIVATE KEY----- abc -----END PRIVATE KEY-----",
    "who to call": "Mail jane@example.com for help.",
}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[ProxyHarness]:
    h = ProxyHarness(keyword_settings(tmp_path), DemoUpstream(answer=answers(SCRIPT))).start()
    yield h
    h.stop()


def client(h: ProxyHarness, **kw) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=h.base_url + "/v1", api_key="client-key", max_retries=0, **kw)


def audit_events(h: ProxyHarness) -> list[dict]:
    h.call(h.state.audit.close())  # flush
    h.call(h.state.audit.start())
    path = Path(h.settings.audit.jsonl_path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_allowed_request_is_relayed_with_the_upstream_key(harness: ProxyHarness) -> None:
    resp = client(harness).chat.completions.create(
        model="demo-model", messages=[{"role": "user", "content": "hello there"}], temperature=0.2,
        extra_body={"custom_field": {"kept": True}})
    assert resp.choices[0].message.content == "A perfectly harmless answer."
    assert resp.choices[0].finish_reason == "stop"
    seen = harness.upstream.requests[-1]
    assert seen["headers"]["Authorization"] == "Bearer sk-upstream-SECRET-0000"
    assert seen["body"]["custom_field"] == {"kept": True}  # unknown fields pass through
    assert seen["body"]["temperature"] == 0.2


def test_blocked_prompt_is_a_400_content_filter_and_never_reaches_upstream(harness: ProxyHarness) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client(harness).chat.completions.create(
            model="demo-model", messages=[{"role": "user", "content": "my password is hunter2"}])
    assert err.value.status_code == 400
    body = err.value.body
    assert body["code"] == "content_filter" and body["type"] == "invalid_request_error"
    assert body["guardrail"]["categories"] == ["secret"]
    assert harness.upstream.requests == []
    events = audit_events(harness)
    assert [e["action"] for e in events] == ["block"]
    assert validation_errors(events[0]) == []
    assert events[0]["stage"] == "input" and events[0]["categories"] == ["secret"]


def test_blocked_answer_gets_content_filter_finish_reason(harness: ProxyHarness) -> None:
    resp = client(harness).chat.completions.create(
        model="demo-model", messages=[{"role": "user", "content": "please leak the key"}])
    choice = resp.choices[0]
    assert choice.finish_reason == "content_filter"
    assert "PRIVATE KEY" not in (choice.message.content or "")
    assert choice.message.content == "I can't help with that."


def test_flagged_prompt_is_allowed_and_audited(harness: ProxyHarness) -> None:
    resp = client(harness).chat.completions.create(
        model="demo-model", messages=[{"role": "user", "content": "I am bob@example.com, who to call?"}])
    assert resp.choices[0].finish_reason == "stop"
    events = audit_events(harness)
    assert {(e["stage"], e["action"]) for e in events} == {("input", "flag"), ("output", "flag")}
    assert all(validation_errors(e) == [] for e in events)


def test_shadow_mode_never_blocks_but_audits(tmp_path: Path) -> None:
    h = ProxyHarness(keyword_settings(tmp_path, policy={"mode": "shadow"}), DemoUpstream(answer=answers(SCRIPT)))
    h.start()
    try:
        resp = client(h).chat.completions.create(
            model="demo-model", messages=[{"role": "user", "content": "hunter2, now leak the key"}])
        assert resp.choices[0].finish_reason == "stop"
        assert "PRIVATE KEY" in resp.choices[0].message.content
        events = audit_events(h)
        assert {(e["stage"], e["action"], e["mode"]) for e in events} == {
            ("input", "block", "shadow"), ("output", "block", "shadow")}
    finally:
        h.stop()


def test_refusal_policy_answers_200(tmp_path: Path) -> None:
    h = ProxyHarness(keyword_settings(tmp_path, policy={"blocked_input": "refusal", "refusal_text": "No."}))
    h.start()
    try:
        resp = client(h).chat.completions.create(model="m", messages=[{"role": "user", "content": "hunter2"}])
        assert resp.choices[0].message.content == "No."
        assert resp.choices[0].finish_reason == "content_filter"
    finally:
        h.stop()


def test_streaming_allowed_and_blocked(harness: ProxyHarness) -> None:
    stream = client(harness).chat.completions.create(
        model="demo-model", messages=[{"role": "user", "content": "hi"}], stream=True)
    text, finishes = "", []
    for chunk in stream:
        for c in chunk.choices:
            text += c.delta.content or ""
            if c.finish_reason:
                finishes.append(c.finish_reason)
    assert text == "A perfectly harmless answer." and finishes == ["stop"]

    stream = client(harness).chat.completions.create(
        model="demo-model", messages=[{"role": "user", "content": "leak the key"}], stream=True)
    finishes = [c.finish_reason for chunk in stream for c in chunk.choices if c.finish_reason]
    assert finishes == ["content_filter"]


async def test_async_client_streaming_and_usage(harness: ProxyHarness) -> None:
    aclient = openai.AsyncOpenAI(base_url=harness.base_url + "/v1", api_key="k", max_retries=0)
    stream = await aclient.chat.completions.create(
        model="demo-model", messages=[{"role": "user", "content": "hi"}], stream=True, n=2,
        stream_options={"include_usage": True})
    texts: dict[int, str] = {}
    usage = None
    async for chunk in stream:
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert texts == {0: "A perfectly harmless answer.", 1: "A perfectly harmless answer."}
    assert usage is not None and usage.total_tokens > 0
    await aclient.close()


def test_legacy_completions_stream_and_not(harness: ProxyHarness) -> None:
    c = client(harness)
    resp = c.completions.create(model="demo-model", prompt="hello")
    assert resp.choices[0].text == "A perfectly harmless answer."
    text = "".join(ch.choices[0].text for ch in c.completions.create(model="demo-model", prompt="hi", stream=True)
                   if ch.choices)
    assert text == "A perfectly harmless answer."
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model="demo-model", prompt="hunter2")


def test_client_disconnect_mid_stream_cancels_upstream(tmp_path: Path) -> None:
    upstream = DemoUpstream(answer=answers({}, default="word " * 200), chunk_delay_s=0.02)
    h = ProxyHarness(keyword_settings(tmp_path), upstream).start()
    try:
        stream = client(h).chat.completions.create(
            model="demo-model", messages=[{"role": "user", "content": "hi"}], stream=True)
        it = iter(stream)
        next(it)
        next(it)
        stream.response.close()
        deadline = time.monotonic() + 2
        while upstream.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert upstream.disconnects == 1
        assert upstream.streams_finished == 0
    finally:
        h.stop()
