"""The input stage judges the request as the upstream will receive it (ARCHITECTURE.md, "What the input stage
judges"): every message, content part, tool result and tool-call argument, and every legacy prompt; rule
evaluators scan all of it, model evaluators judge the last user turn in the context of the turns before it; a
body with duplicate keys, at any depth, is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from evaluators.base import BaseEvaluator, EvalItem, Verdict
from proxy.config import Settings
from tests.proxy_harness import ProxyHarness

AWS = "AKIAIOSFODNN7EXAMPLE"
SECRET_TEXT = f"my key is {AWS}, why AccessDenied?"

#: every item a `recording` evaluator was given, across instances (the harness runs in one process)
SEEN: list[EvalItem] = []


class RecordingEvaluator(BaseEvaluator):
    """A stand-in for a model evaluator: remembers what it was asked to judge, finds everything safe."""

    version = "1"

    def __init__(self, name: str) -> None:
        self.name = name

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        SEEN.extend(items)
        return [Verdict(safe=True, evaluator=self.name, version=self.version) for _ in items]


def create_recording(name: str, options: Mapping[str, Any]) -> RecordingEvaluator:
    return RecordingEvaluator(name)


def rule_settings(tmp_path: Path, *, model: bool = False) -> Settings:
    evaluators: dict[str, Any] = {"secrets": {"type": "secrets", "on_error": "fail_closed"}, "pii": {"type": "pii"}}
    names = ["secrets", "pii"]
    if model:
        evaluators["model"] = {"type": "tests.test_input_judging:create_recording"}
        names.append("model")
    return Settings.model_validate({
        "evaluators": evaluators,
        "policies": {"default": {"input": {"evaluators": names}, "output": {"evaluators": []},
                                 "actions": {"secret": "block", "pii": "flag", "default": "block"}}},
        "audit": {"jsonl_path": str(tmp_path / "audit.jsonl"), "content": "hash"}})


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[ProxyHarness]:
    h = ProxyHarness(rule_settings(tmp_path, model=True)).start()
    SEEN.clear()
    yield h
    h.stop()


def post(h: ProxyHarness, path: str, body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def go() -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as s:
            async with s.post(h.base_url + path, data=data, headers={"content-type": "application/json"}) as r:
                return r.status, json.loads(await r.read())

    return h.call(go())


def chat(h: ProxyHarness, messages: list[dict[str, Any]], **extra: Any) -> tuple[int, dict[str, Any]]:
    return post(h, "/v1/chat/completions", {"model": "demo-model", "messages": messages, **extra})


def assert_blocked(h: ProxyHarness, status: int, body: dict[str, Any]) -> None:
    assert status == 400, body
    assert body["error"]["code"] == "content_filter"
    assert "secret" in body["error"]["guardrail"]["categories"]
    assert not h.upstream.requests, "a blocked prompt must not reach the upstream"


CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"key": AWS})}}

#: (where the secret sits, the messages): each must be blocked, not only a secret in the last message
HIDING_PLACES: dict[str, list[dict[str, Any]]] = {
    "system": [{"role": "system", "content": SECRET_TEXT}, {"role": "user", "content": "hello"}],
    "developer": [{"role": "developer", "content": SECRET_TEXT}, {"role": "user", "content": "hello"}],
    "earlier user turn": [{"role": "user", "content": SECRET_TEXT}, {"role": "assistant", "content": "Sure."},
                          {"role": "user", "content": "thanks"}],
    "assistant turn": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": SECRET_TEXT},
                       {"role": "user", "content": "go on"}],
    "tool result": [{"role": "user", "content": "look it up"},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {**CALL, "function": {"name": "lookup", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": SECRET_TEXT}],
    "tool-call arguments": [{"role": "user", "content": "look it up"},
                            {"role": "assistant", "content": None, "tool_calls": [CALL]},
                            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
                            {"role": "user", "content": "thanks"}],
    "content part of an earlier message": [
        {"role": "user", "content": [{"type": "text", "text": "first part"}, {"type": "text", "text": SECRET_TEXT}]},
        {"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    "second content part of the last message": [
        {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": SECRET_TEXT}]}],
}


@pytest.mark.parametrize("place", list(HIDING_PLACES))
def test_a_secret_anywhere_in_the_conversation_is_blocked(harness: ProxyHarness, place: str) -> None:
    status, body = chat(harness, HIDING_PLACES[place])
    assert_blocked(harness, status, body)


@pytest.mark.parametrize("place", ["system", "earlier user turn", "tool result"])
def test_a_secret_anywhere_is_blocked_when_streamed_too(harness: ProxyHarness, place: str) -> None:
    status, body = chat(harness, HIDING_PLACES[place], stream=True)
    assert_blocked(harness, status, body)


def test_a_private_key_cut_over_two_messages_is_found(harness: ProxyHarness) -> None:
    """Messages are read as lines of one text: what the rules find across a line break inside one message
    (a PEM block), they find across two messages."""
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7demoKEYdemoKEYdemoKEYdemo\n-----END RSA PRIVATE KEY-----"
    head, _, tail = pem.partition("\n")
    status, body = chat(harness, [{"role": "user", "content": head}, {"role": "user", "content": tail}])
    assert_blocked(harness, status, body)


def test_a_secret_in_the_first_of_many_messages_is_blocked(harness: ProxyHarness) -> None:
    messages = [{"role": "user", "content": SECRET_TEXT}] + [
        {"role": "user" if i % 2 else "assistant", "content": f"turn {i} " + "words " * 40} for i in range(1, 2000)]
    status, body = chat(harness, messages)
    assert_blocked(harness, status, body)


def test_a_clean_conversation_is_forwarded(harness: ProxyHarness) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "capital of France?"}]
    status, body = chat(harness, messages)
    assert status == 200, body
    assert harness.upstream.requests[-1]["body"]["messages"] == messages


def test_model_evaluators_judge_the_last_user_turn_in_its_context(harness: ProxyHarness) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "what is 2+2?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {**CALL, "function": {"name": "calc", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "4"}]
    status, body = chat(harness, messages)
    assert status == 200, body
    (item,) = SEEN
    assert item.judged_turn.role == "user" and item.text == "what is 2+2?"
    assert [t.role for t in item.turns[: item.judged % len(item.turns) + 1]] == ["system", "user"]


# -- legacy completions ------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt", [[SECRET_TEXT, "hello"], ["hello", SECRET_TEXT], SECRET_TEXT])
def test_every_legacy_prompt_is_judged(harness: ProxyHarness, prompt: Any) -> None:
    status, body = post(harness, "/v1/completions", {"model": "demo-model", "prompt": prompt})
    assert_blocked(harness, status, body)


def test_a_legacy_suffix_is_judged(harness: ProxyHarness) -> None:
    status, body = post(harness, "/v1/completions", {"model": "demo-model", "prompt": "def f():",
                                                     "suffix": f"# key {AWS}"})
    assert_blocked(harness, status, body)


# -- duplicate keys ----------------------------------------------------------------------------------

DUPLICATES = {
    "top-level messages": (b'{"model": "demo-model", "messages": [{"role": "user", "content": "' + AWS.encode()
                           + b'"}], "messages": [{"role": "user", "content": "hello"}]}', "messages"),
    "content inside a message": (b'{"model": "demo-model", "messages": [{"role": "user", "content": "'
                                 + AWS.encode() + b'", "content": "hello"}]}', "content"),
    "the same key spelt with an escape": (b'{"model": "demo-model", "messages": [{"role": "user", "content": "hi"}],'
                                          b' "\\u006dessages": [{"role": "user", "content": "' + AWS.encode()
                                          + b'"}]}', "messages"),
    "deep inside tools": (b'{"model": "demo-model", "messages": [{"role": "user", "content": "hi"}], "tools": [{'
                          b'"type": "function", "function": {"name": "f", "parameters": {"type": "object", '
                          b'"properties": {"a": {"type": "string"}, "a": {"type": "integer"}}}}}]}', "a"),
}


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_a_body_with_duplicate_keys_is_400(harness: ProxyHarness, case: str) -> None:
    raw, key = DUPLICATES[case]
    status, body = post(harness, "/v1/chat/completions", raw)
    assert status == 400, body
    error = body["error"]
    assert error["code"] == "duplicate_key" and error["type"] == "invalid_request_error"
    assert repr(key) in error["message"] or f"'{key}'" in error["message"]
    assert not harness.upstream.requests


def test_duplicate_keys_in_a_legacy_request_are_400(harness: ProxyHarness) -> None:
    raw = b'{"model": "demo-model", "prompt": "' + AWS.encode() + b'", "prompt": "hello"}'
    status, body = post(harness, "/v1/completions", raw)
    assert status == 400 and body["error"]["code"] == "duplicate_key"
    assert not harness.upstream.requests
