"""The two generation APIs the proxy guards, described once: where text lives in requests and answers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evaluators.base import EvalItem, Turn, content_text
from evaluators.spans import Span, mask
from proxy.protocol import ChatCompletionRequest, CompletionRequest, completion_prompts
from proxy.request_text import RequestText, chat_input, completion_inputs


@dataclass(frozen=True, slots=True)
class GenerationRoute:
    """How to find the judged text in one API's requests, answers and stream chunks."""

    name: str
    path: str
    request_model: type[ChatCompletionRequest] | type[CompletionRequest]
    chunk_object: str
    #: the conversations an answer's choices continue: one for chat, one per prompt for completions
    conversations: Callable[[dict[str, Any]], list[list[dict[str, str]]]]
    #: the input items to judge, each with the located request text its rules scan (see proxy/request_text.py)
    inputs: Callable[[dict[str, Any]], list[tuple[EvalItem, RequestText]]]
    choice_text: Callable[[dict[str, Any]], str]
    delta_text: Callable[[dict[str, Any]], str]
    set_choice_text: Callable[[dict[str, Any], str], None]
    #: mask (start, end, replacement) spans of `choice_text` / `delta_text` in the fields they came from
    mask_choice: Callable[[dict[str, Any], list[Span]], None]
    mask_delta: Callable[[dict[str, Any], list[Span]], None]

    def output_item(self, conversation: list[dict[str, str]], answer: str) -> EvalItem:
        turns = [Turn(t["role"], t["content"]) for t in conversation]
        turns.append(Turn("assistant", answer))
        return EvalItem(tuple(turns), "output")

    def count_messages(self, body: dict[str, Any]) -> int:
        messages = body.get("messages")
        return len(messages) if isinstance(messages, list) else 1


def conversation_of(conversations: list[list[dict[str, str]]], n: int, choice_index: Any) -> list[dict[str, str]]:
    """The conversation a choice continues: choices come `n` per prompt, in prompt order (OpenAI and vLLM)."""
    index = choice_index if isinstance(choice_index, int) and choice_index >= 0 else 0
    return conversations[min(index // max(n, 1), len(conversations) - 1)]


def _chat_conversations(body: dict[str, Any]) -> list[list[dict[str, str]]]:
    return [[{"role": str(m.get("role", "user")), "content": content_text(m.get("content"))}
             for m in body.get("messages", []) if isinstance(m, dict)]]


def _chat_inputs(body: dict[str, Any]) -> list[tuple[EvalItem, RequestText]]:
    return [chat_input(body)]


#: where reasoning models put their thinking (vLLM and DeepSeek: reasoning_content; newer vLLM, OpenRouter:
#: reasoning): judged like the answer, since a client shows it too
REASONING_FIELDS = ("reasoning_content", "reasoning")


def _reasoning_field(message: dict[str, Any]) -> tuple[str, ...]:
    """The field holding the message's reasoning, as a 1-tuple; () when it has none."""
    return next(((name,) for name in REASONING_FIELDS if isinstance(message.get(name), str) and message[name]), ())


def _reasoning(message: dict[str, Any]) -> str:
    return "".join(message[name] for name in _reasoning_field(message))


def _chat_choice_text(choice: dict[str, Any]) -> str:
    message = choice.get("message") or {}
    if REASONING_FIELDS[0] not in message and REASONING_FIELDS[1] not in message:  # the usual message
        return content_text(message.get("content"))
    reasoning, content = _reasoning(message), content_text(message.get("content"))
    return f"{reasoning}\n\n{content}" if reasoning and content else reasoning or content


def _chat_delta_text(choice: dict[str, Any]) -> str:
    delta = choice.get("delta") or {}
    content = delta.get("content")
    text = content if isinstance(content, str) else ""
    if REASONING_FIELDS[0] not in delta and REASONING_FIELDS[1] not in delta:  # the usual delta: no reasoning
        return text
    reasoning = _reasoning(delta)
    return reasoning + text if reasoning else text


def _mask_fields(obj: dict[str, Any], names: tuple[str, ...], spans: list[Span], gap: int) -> None:
    """Mask spans of the text that is `obj`'s non-empty string fields `names` joined (`gap` characters between),
    field by field: a span over two fields masks its part in each."""
    offset = 0
    for name in names:
        text = obj.get(name)
        if not isinstance(text, str) or not text:
            continue
        obj[name] = mask(text, [(start - offset, end - offset, repl if start >= offset else "")
                                for start, end, repl in spans if end > offset and start < offset + len(text)])
        offset += len(text) + gap


def _chat_mask(key: str, gap: int, choice: dict[str, Any], spans: list[Span]) -> None:
    """Mask a chat choice's `message` (reasoning and content joined by a blank line, as judged) or `delta`."""
    message = choice.get(key)
    if isinstance(message, dict):
        _mask_fields(message, _reasoning_field(message) + ("content",), spans, gap)


def _completion_mask(choice: dict[str, Any], spans: list[Span]) -> None:
    _mask_fields(choice, ("text",), spans, gap=0)


def _chat_set_text(choice: dict[str, Any], text: str) -> None:
    message = choice.setdefault("message", {"role": "assistant"})
    message["content"] = text
    for name in ("tool_calls", "function_call", *REASONING_FIELDS):
        message.pop(name, None)


def _completion_conversations(body: dict[str, Any]) -> list[list[dict[str, str]]]:
    prompts = completion_prompts(body.get("prompt")) or [""]  # token-id prompts cannot be read as text
    return [[{"role": "user", "content": prompt}] for prompt in prompts]


def _completion_text(choice: dict[str, Any]) -> str:
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _completion_set_text(choice: dict[str, Any], text: str) -> None:
    choice["text"] = text


CHAT = GenerationRoute(
    name="chat", path="/chat/completions", request_model=ChatCompletionRequest,
    chunk_object="chat.completion.chunk", conversations=_chat_conversations, inputs=_chat_inputs,
    choice_text=_chat_choice_text, delta_text=_chat_delta_text, set_choice_text=_chat_set_text,
    mask_choice=functools.partial(_chat_mask, "message", 2), mask_delta=functools.partial(_chat_mask, "delta", 0),
)

COMPLETION = GenerationRoute(
    name="completion", path="/completions", request_model=CompletionRequest,
    chunk_object="text_completion", conversations=_completion_conversations, inputs=completion_inputs,
    choice_text=_completion_text, delta_text=_completion_text, set_choice_text=_completion_set_text,
    mask_choice=_completion_mask, mask_delta=_completion_mask,
)
