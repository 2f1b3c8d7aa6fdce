"""Text deltas read without a JSON parse: the bytes around a delta's text, learned from one the relay parsed.

An upstream streams an answer as events that differ only in their text: vLLM and OpenAI-compatible servers
send `data: {"id":"…","object":"chat.completion.chunk","created":…,"model":"…","choices":[{"index":0,
"delta":{"content":"…"},…}]}` with the same bytes around the content, event after event. Once the relay has
parsed one such event, a `DeltaShape` holds the bytes before the text's JSON string (`prefix`, ending with its
opening quote) and after it (`suffix`, from its closing quote). A later event that starts with `prefix`, ends
with `suffix` and has exactly one JSON string token between them parses, token for token, like the learned
event with another string in that place: the same choice index, no finish reason, the same everything else.
Its text is that string, decoded by orjson alone (which also proves it has no lone surrogate); the event is
relayed byte for byte as before. Anything else (a role or finish chunk, tool calls, several choices, usage,
logprobs or any field that changes between events, an error) does not match and takes the full parse.

A shape is learned only where it is proven: the event's text is exactly the string at that place (the same
string written elsewhere in the event, an escaped key or a key named twice cannot mislead it: the event is
parsed again with another string there, and its text must become that string).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

#: the key of the text a delta carries, per route (chat: `delta.content`; completions: `text`)
TEXT_KEYS = {"chat": b'"content"', "completion": b'"text"'}
#: a string no upstream sends as a delta's text: the proof's stand-in
_PROBE = "\x00guardstream-probe\x00"
_PROBE_JSON = orjson.dumps(_PROBE)


class DeltaShape:
    """The bytes around the text of one choice's plain text deltas (see the module docstring)."""

    __slots__ = ("prefix", "suffix", "index", "_head", "_tail", "_least")

    def __init__(self, prefix: bytes, suffix: bytes, index: int) -> None:
        self.prefix = prefix  # up to and including the string's opening quote
        self.suffix = suffix  # from the string's closing quote to the end of the event
        self.index = index  # the choice these deltas belong to
        self._head = len(prefix) - 1  # where the string token starts
        self._tail = len(suffix) - 1  # bytes after the string token
        self._least = len(prefix) + len(suffix)  # an event of this shape is at least this long

    def text_of(self, raw: bytes) -> str | None:
        """The text of `raw` if it is a delta of this shape; None if it is not (then it must be parsed)."""
        if len(raw) < self._least or not raw.startswith(self.prefix) or not raw.endswith(self.suffix):
            return None
        try:
            text = orjson.loads(raw[self._head: len(raw) - self._tail])
        except orjson.JSONDecodeError:  # not one string token (or a lone surrogate): parse it
            return None
        return text if type(text) is str else None


def learn(raw: bytes, text: str, index: int, route: str,
          text_of: Callable[[dict[str, Any]], str]) -> DeltaShape | None:
    """The shape of `raw`, a one-choice event whose choice `text_of` reads as `text` (non-empty), parsed by
    orjson with nothing to clean; None unless it is proven (see the module docstring)."""
    if not raw.startswith(b"data: ") or raw.count(b"\n") != 2:  # one data line, as LLM servers send
        return None
    key = TEXT_KEYS.get(route)
    if key is None:
        return None
    pos = raw.find(key)
    while pos >= 0:
        shape = _at(raw, pos + len(key), text, index, text_of)
        if shape is not None:
            return shape
        pos = raw.find(key, pos + 1)
    return None


def _at(raw: bytes, pos: int, text: str, index: int, text_of: Callable[[dict[str, Any]], str]) -> DeltaShape | None:
    """The shape whose string is the value after the key ending at `pos`, if that value is the text."""
    n = len(raw)
    while pos < n and raw[pos] in b" \t":
        pos += 1
    if pos >= n or raw[pos] != 0x3A:  # ":"
        return None
    pos += 1
    while pos < n and raw[pos] in b" \t":
        pos += 1
    if pos >= n or raw[pos] != 0x22:  # '"'
        return None
    end = pos + 1
    while True:  # the closing quote: one not escaped by an odd run of backslashes
        end = raw.find(b'"', end)
        if end < 0:
            return None
        slashes = 0
        while raw[end - 1 - slashes] == 0x5C:
            slashes += 1
        if not slashes % 2:
            break
        end += 1
    try:
        if orjson.loads(raw[pos: end + 1]) != text:
            return None
        probe = orjson.loads(raw[6: pos] + _PROBE_JSON + raw[end + 1: -2])  # the proof: another string there
    except orjson.JSONDecodeError:
        return None
    choices = probe.get("choices") if isinstance(probe, dict) else None
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return None
    if text_of(choices[0]) != _PROBE:
        return None
    return DeltaShape(raw[: pos + 1], raw[end:], index)
