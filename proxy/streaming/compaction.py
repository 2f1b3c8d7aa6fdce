"""Held text in fewer events: what keeps `hold_limit_bytes` about text, not about SSE framing.

A delta of one character costs ~150 bytes of event. When held events reach the hold limit, runs of plain text
deltas of one choice (one text field, nothing else: no logprobs, tool calls, finish) are merged into events
carrying up to 256 characters of their text each, so the limit holds kilobytes of text rather than a few
hundred characters, and text is still released in small steps. Merged events
are re-encoded; everything else is still relayed byte for byte.
"""

from __future__ import annotations

from typing import Any

from proxy.jsonio import loads
from proxy.sse import encode_event

#: the text fields a mergeable delta may carry (one of them): chat content or reasoning, completions text
_CHAT_FIELDS = ("content", "reasoning_content", "reasoning")


#: (payload, the object holding the text, its field)
TextDelta = tuple[dict[str, Any], dict[str, Any], str]


def text_field(raw: bytes) -> TextDelta | None:
    """(payload, the object holding the text, its field) of a plain one-choice text delta; None otherwise."""
    if not raw.startswith(b"data: ") or raw.count(b"\n") != 2:
        return None
    try:
        payload = loads(raw[6:])
    except ValueError:
        return None
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    if choice.get("finish_reason") is not None or choice.get("logprobs") is not None or "usage" in payload:
        return None
    if "delta" in choice:
        delta = choice["delta"]
        if not isinstance(delta, dict) or set(choice) - {"index", "delta", "finish_reason", "logprobs"}:
            return None
        if len(delta) == 1 and (field := next(iter(delta))) in _CHAT_FIELDS and isinstance(delta[field], str):
            return payload, delta, field
        return None
    if set(choice) - {"index", "text", "finish_reason", "logprobs"} or not isinstance(choice.get("text"), str):
        return None
    return payload, choice, "text"


def merge(deltas: list[TextDelta]) -> bytes:
    """One event with the text of these plain text deltas (of one choice, all with the same field): the first
    one's event, carrying all their text."""
    payload, holder, field = deltas[0]
    holder[field] = "".join(delta[1][field] for delta in deltas)
    return encode_event(payload)
