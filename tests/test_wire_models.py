"""The OpenAI wire models (proxy/protocol.py): what the proxy writes fits them, and they keep unknown fields."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import bad_request, content_filtered
from proxy.handlers import _refusal_body
from proxy.jsonio import loads
from proxy.policy import Decision
from proxy.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionStreamResponse,
    CompletionResponse,
    CompletionStreamResponse,
    ErrorResponse,
    parse_request,
)
from proxy.routes import CHAT, COMPLETION
from proxy.sse import SSEParser
from proxy.streaming.chunks import INTERRUPTED, cut_chunk


def _event_payload(raw: bytes) -> Any:
    (event,) = SSEParser().feed(raw)
    return loads(event.data or "")


def _blocked() -> Decision:
    return Decision(stage="input", action="block", categories=["S1"], verdicts=[], enforced=True)


def test_refusal_bodies_fit_the_answer_models() -> None:
    chat = ChatCompletionResponse.model_validate(_refusal_body(CHAT, "m", "No.", _blocked(), 2))
    assert [c.message.content for c in chat.choices if c.message] == ["No.", "No."]
    assert chat.guardrail is not None and chat.guardrail.stage == "input" and chat.guardrail.categories == ["S1"]
    completion = CompletionResponse.model_validate(_refusal_body(COMPLETION, "m", "No.", _blocked(), 1))
    assert completion.choices[0].text == "No." and completion.choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize("refusal", [None, "Sorry."])
def test_cut_chunks_fit_the_chunk_models(refusal: str | None) -> None:
    meta = {"id": "chatcmpl-1", "created": 1, "model": "m"}
    chat = ChatCompletionStreamResponse.model_validate(
        _event_payload(cut_chunk(CHAT, meta, "fallback", "m", 0, ["S1"], ["rules"], refusal)))
    assert chat.id == "chatcmpl-1" and chat.object == "chat.completion.chunk"
    assert chat.choices[0].finish_reason == "content_filter" and chat.guardrail is not None
    assert chat.choices[0].delta is not None and chat.choices[0].delta.content == refusal
    completion = CompletionStreamResponse.model_validate(
        _event_payload(cut_chunk(COMPLETION, {}, "fallback", "m", 1, ["S1"], ["rules"], refusal)))
    assert completion.id == "fallback" and completion.choices[0].index == 1
    assert completion.choices[0].text == (refusal or "")


def test_the_proxys_errors_fit_the_error_model() -> None:
    for error in (bad_request("bad", param="n", code="invalid_value"), content_filtered("input", ["S1"], ["rules"])):
        assert ErrorResponse.model_validate(error.body()).error.message
    assert ErrorResponse.model_validate(_event_payload(INTERRUPTED)).error.code == "upstream_stream_interrupted"


def test_unknown_fields_are_kept() -> None:
    """Tolerant of what a newer API or another server adds: validated, kept, written back."""
    answer = {"id": "a", "object": "chat.completion", "created": 1, "model": "m", "system_fingerprint": "fp",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "audio": None,
                                                   "refusal": None}, "finish_reason": "stop", "logprobs": None}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    dumped = ChatCompletionResponse.model_validate(answer).model_dump(exclude_unset=True)
    assert dumped == answer
    chunk = {"id": "a", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "h", "tool_calls": []}, "finish_reason": None}]}
    assert ChatCompletionStreamResponse.model_validate(chunk).model_dump(exclude_unset=True) == chunk


def test_parse_request_returns_the_routes_model() -> None:
    parsed = parse_request(CHAT.request_model, {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                                "temperature": 0.2})
    assert isinstance(parsed, ChatCompletionRequest) and parsed.model == "m" and parsed.n == 1
