"""Typed OpenAI request models: what the proxy must understand of a request.

Only the fields the proxy reads are declared; every other field passes through
untouched (`extra="allow"`), and the upstream receives the client's body as sent.
"""

from __future__ import annotations

from typing import Any, Literal

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


def parse_request(model: type[OpenAIBase], body: Any) -> Any:
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


__all__ = ["ChatCompletionRequest", "CompletionRequest", "parse_request", "completion_prompts", "check_limits"]
