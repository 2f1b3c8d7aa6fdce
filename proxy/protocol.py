"""Typed OpenAI wire models: what the proxy reads and writes of requests, answers and stream chunks.

Only the fields the proxy reads or writes are declared; every other field passes
through untouched (`extra="allow"`), and the upstream receives the client's body
as sent. Requests are validated with these models (a failure is an OpenAI 400).
Answers and stream chunks are not validated on the request path: the proxy reads
them as parsed dicts (a malformed upstream answer is relayed or refused as
before, see handlers.py and the relay), since validating every chunk would cost
more than the relay's whole per-chunk work (`python -m bench.wire_models`). The
answer and chunk models state those dicts' shape in one place: the tests check
what the proxy writes against them, and so do readers outside the request path.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

from proxy.errors import bad_request


class OpenAIBase(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(OpenAIBase):
    type: StrictStr
    text: StrictStr | None = None


class ChatMessage(OpenAIBase):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: StrictStr | list[ContentPart] | None = None


class StreamOptions(OpenAIBase):
    include_usage: StrictBool | None = None


class ChatCompletionRequest(OpenAIBase):
    model: StrictStr
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False
    n: StrictInt | None = Field(default=1, ge=1)
    stream_options: StreamOptions | None = None


class CompletionRequest(OpenAIBase):
    model: StrictStr
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    stream: StrictBool | None = False
    n: StrictInt | None = Field(default=1, ge=1)
    stream_options: StreamOptions | None = None

    @field_validator("prompt")
    @classmethod
    def _not_empty_list(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("prompt must not be empty")
        return v


Request = TypeVar("Request", bound="OpenAIBase")


def parse_request(model: type[Request], body: Any) -> Request:
    """Validate a decoded JSON body; a failure becomes an OpenAI-shaped 400 naming the field."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        if err["type"] == "missing":
            raise bad_request(f"Missing required parameter: '{param}'.", param=param,
                              code="missing_required_parameter") from None
        raise bad_request(f"Invalid value for '{param}': {err['msg']}.", param=param, code="invalid_value") from None


# -- answers and stream chunks (read as dicts on the request path; see the module's docstring) -----------------


class Guardrail(OpenAIBase):
    """What the proxy adds to a choice (or an answer) it blocked or cut."""

    stage: Literal["input", "output"]
    categories: list[str]
    evaluators: list[str]


class ResponseMessage(OpenAIBase):
    """A chat answer's message: its text (`content`, and reasoning in `reasoning_content` or `reasoning`)."""

    role: str | None = None
    content: str | list[ContentPart] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class ChatCompletionChoice(OpenAIBase):
    index: int = 0
    message: ResponseMessage | None = None
    finish_reason: str | None = None
    guardrail: Guardrail | None = None


class CompletionChoice(OpenAIBase):
    index: int = 0
    text: str | None = None
    finish_reason: str | None = None
    guardrail: Guardrail | None = None


class ChatCompletionResponse(OpenAIBase):
    """A chat answer (`object: chat.completion`): the proxy reads and rewrites its choices' text."""

    id: str | None = None
    object: str | None = None
    created: int | None = None
    model: str | None = None
    choices: list[ChatCompletionChoice]
    guardrail: Guardrail | None = None  # a refusal of a blocked prompt (`blocked_input: refusal`)


class CompletionResponse(OpenAIBase):
    """A legacy completions answer (`object: text_completion`)."""

    id: str | None = None
    object: str | None = None
    created: int | None = None
    model: str | None = None
    choices: list[CompletionChoice]
    guardrail: Guardrail | None = None


class DeltaMessage(OpenAIBase):
    """A chat chunk's delta: text the relay judges (tool-call deltas pass through unjudged)."""

    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class ChatCompletionStreamChoice(OpenAIBase):
    index: int = 0
    delta: DeltaMessage | None = None
    finish_reason: str | None = None


class CompletionStreamChoice(OpenAIBase):
    index: int = 0
    text: str | None = None
    finish_reason: str | None = None


class ChatCompletionStreamResponse(OpenAIBase):
    """One chat stream chunk (`object: chat.completion.chunk`); a cut choice's last one carries `guardrail`."""

    id: str | None = None
    object: str | None = None
    created: int | None = None
    model: str | None = None
    choices: list[ChatCompletionStreamChoice]
    guardrail: Guardrail | None = None


class CompletionStreamResponse(OpenAIBase):
    """One legacy completions stream chunk (`object: text_completion`)."""

    id: str | None = None
    object: str | None = None
    created: int | None = None
    model: str | None = None
    choices: list[CompletionStreamChoice]
    guardrail: Guardrail | None = None


class ErrorInfo(OpenAIBase):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(OpenAIBase):
    """An OpenAI-shaped error: the proxy's own (proxy/errors.py) and the stream relay's interruption event."""

    error: ErrorInfo


def completion_prompts(prompt: Any) -> list[str]:
    """Text prompts of a legacy completions request (token-id prompts cannot be judged as text)."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    return []


def check_limits(n: int | None, messages: int, max_n: int, max_messages: int) -> None:
    if n is not None and n > max_n:
        raise bad_request(f"Invalid value for 'n': at most {max_n} choices are allowed.", param="n",
                          code="invalid_value")
    if messages > max_messages:
        raise bad_request(f"Too many messages: at most {max_messages} are allowed.", param="messages",
                          code="invalid_value")


__all__ = ["ChatCompletionRequest", "CompletionRequest", "parse_request", "completion_prompts", "check_limits",
           "ChatCompletionResponse", "CompletionResponse", "ChatCompletionStreamResponse", "CompletionStreamResponse",
           "ErrorResponse", "Guardrail"]
