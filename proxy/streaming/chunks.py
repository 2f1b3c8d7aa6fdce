"""The SSE chunks the relay writes itself, and how it reads the upstream's."""

from __future__ import annotations

import time
from typing import Any

from proxy.routes import GenerationRoute
from proxy.sse import encode_event


def event_name(raw: bytes) -> str | None:
    """The SSE `event:` field of a raw event, if it has one."""
    for line in raw.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip().decode("utf-8", "replace")
    return None


def is_error(payload: Any, raw: bytes) -> bool:
    """An upstream error event: `event: error`, or a choiceless payload with an `error` object (vLLM, OpenAI)."""
    if isinstance(payload, dict) and "error" in payload and not payload.get("choices"):
        return True
    return event_name(raw) == "error"


def split_choices(payload: dict[str, Any], choices: list[Any]) -> list[tuple[dict[str, Any], bytes]]:
    """One event per choice, for events that carry several (each choice is held and released on its own).

    Top-level fields are kept on each; a `usage` object goes with the last one only.
    """
    out = []
    base = {k: v for k, v in payload.items() if k not in ("choices", "usage")}
    for i, choice in enumerate(choices):
        part = {**base, "choices": [choice]}
        if i == len(choices) - 1 and "usage" in payload:
            part["usage"] = payload["usage"]
        out.append((choice, encode_event(part)))
    return out


def cut_chunk(route: GenerationRoute, meta: dict[str, Any], fallback_id: str, fallback_model: str, index: int,
              categories: list[str], evaluators: list[str], refusal: str | None = None) -> bytes:
    """The last chunk of a cut choice: `finish_reason: "content_filter"` plus the guardrail details."""
    choice: dict[str, Any] = {"index": index, "finish_reason": "content_filter"}
    if route.name == "chat":
        choice["delta"] = {"content": refusal} if refusal else {}
    else:
        choice["text"] = refusal or ""
    payload = {
        "id": meta.get("id", fallback_id),
        "object": route.chunk_object,
        "created": meta.get("created", int(time.time())),
        "model": meta.get("model", fallback_model),
        "choices": [choice],
        "guardrail": {"stage": "output", "categories": categories, "evaluators": evaluators},
    }
    return encode_event(payload)


INTERRUPTED = encode_event({"error": {"message": "The upstream stream was interrupted.", "type": "api_error",
                                      "param": None, "code": "upstream_stream_interrupted"}})
