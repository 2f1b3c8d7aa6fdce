"""Find JSON records in a model answer: a JSON body, or fenced ```json / ```jsonl blocks.

Each record comes with its character span in the answer, so failures can be
located (and, if a policy ever redacts `quality`, masked). Arrays are walked
element by element with `json.JSONDecoder.raw_decode` to get those spans.

- The whole answer (stripped) parses as JSON: that is the only source.
- Otherwise every complete fenced block tagged `json`, `jsonl`/`ndjson`, or
  untagged but starting with `{`/`[`, is read in order. A block that does not
  parse is reported as a parse error, not silently dropped.
- An unterminated fence (a streamed answer cut mid-block) is ignored.
- JSON written inline in prose is not looked for.

An object is one record, an array is one record per element; with
`records_key`, an object's `records_key` member (an array) holds the records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")
_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$",
                    re.MULTILINE | re.DOTALL)
_JSON_TAGS = {"json", "json5", "javascript", "js"}
_LINE_TAGS = {"jsonl", "ndjson", "jsonlines"}


@dataclass(frozen=True, slots=True)
class Located:
    """A record (any JSON value) and its [start, end) span in the answer."""

    value: Any
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ParseProblem:
    """A JSON source that could not be read, with the span of the block."""

    message: str
    start: int
    end: int


@dataclass(slots=True)
class Extraction:
    records: list[Located] = field(default_factory=list)
    problems: list[ParseProblem] = field(default_factory=list)
    sources: int = 0  # JSON bodies or blocks found


def extract_records(text: str, records_key: str | None = None) -> Extraction:
    """All records in `text`, in order, with spans; see the module docstring for what counts."""
    out = Extraction()
    stripped = text.strip()
    body_problem: ParseProblem | None = None
    if stripped[:1] in ("{", "["):
        offset = text.index(stripped[0])
        end = len(text.rstrip())
        try:
            out.records.extend(_parse_json(text, offset, end, records_key))
        except _ParseError as exc:
            body_problem = ParseProblem(str(exc), offset, end)
        else:
            out.sources = 1
            return out
    for match in _FENCE.finditer(text):
        tag = match.group(2).lower()
        body_start, body_end = match.start(3), match.end(3)
        body = text[body_start:body_end]
        first = body.lstrip()[:1]
        if tag in _LINE_TAGS:
            out.sources += 1
            _read_lines(text, body_start, body_end, out)
        elif tag in _JSON_TAGS or (not tag and first in ("{", "[")):
            out.sources += 1
            if not body.strip():
                out.problems.append(ParseProblem("empty JSON block", match.start(), match.end()))
                continue
            try:
                out.records.extend(_parse_json(text, body_start, body_end, records_key))
            except _ParseError as exc:
                out.problems.append(ParseProblem(str(exc), match.start(), match.end()))
    if body_problem is not None and out.sources == 0:  # looked like a JSON body but is broken
        out.sources = 1
        out.problems.append(body_problem)
    return out


class _ParseError(ValueError):
    pass


def _skip_ws(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]  # \s* matches everywhere


def _parse_json(text: str, start: int, end: int, records_key: str | None) -> list[Located]:
    """Parse exactly one JSON value in text[start:end]; split it into located records."""
    pos = _skip_ws(text, start)
    if pos < end and text[pos] == "[":
        records, pos = _parse_array(text, pos, end)
    else:
        try:
            value, stop = _DECODER.raw_decode(text[:end], pos)
        except json.JSONDecodeError as exc:
            raise _ParseError(f"invalid JSON: {exc.msg} (char {exc.pos - start})") from None
        if records_key is not None and isinstance(value, dict) and isinstance(value.get(records_key), list):
            inner = _find_member(text, pos, stop, records_key, value[records_key])
            records = inner if inner is not None else [Located(v, pos, stop) for v in value[records_key]]
        else:
            records = [Located(value, pos, stop)]
        pos = stop
    if _skip_ws(text, pos) < end:
        raise _ParseError(f"extra data after the JSON value (char {pos - start})")
    return records


def _parse_array(text: str, pos: int, end: int) -> tuple[list[Located], int]:
    """Walk a JSON array element by element; returns located elements and the position after `]`."""
    records: list[Located] = []
    window = text[:end]
    pos = _skip_ws(window, pos + 1)
    if pos < end and window[pos] == "]":
        return records, pos + 1
    while True:
        try:
            value, stop = _DECODER.raw_decode(window, pos)
        except json.JSONDecodeError as exc:
            raise _ParseError(f"invalid JSON in array element {len(records)}: {exc.msg}") from None
        records.append(Located(value, pos, stop))
        pos = _skip_ws(window, stop)
        if pos >= end:
            raise _ParseError("unterminated JSON array")
        if window[pos] == "]":
            return records, pos + 1
        if window[pos] != ",":
            raise _ParseError(f"expected ',' or ']' after array element {len(records) - 1}")
        pos = _skip_ws(window, pos + 1)


def _find_member(text: str, start: int, end: int, key: str, expected: list[Any]) -> list[Located] | None:
    """Spans of the elements of the `"key": [...]` member inside text[start:end] whose values are `expected`."""
    pattern = re.compile(r'"' + re.escape(key) + r'"\s*:\s*\[')
    for match in pattern.finditer(text, start, end):
        try:
            records, _ = _parse_array(text, match.end() - 1, end)
        except _ParseError:
            continue
        if [r.value for r in records] == expected:
            return records
    return None


def _read_lines(text: str, start: int, end: int, out: Extraction) -> None:
    pos = start
    for line in text[start:end].splitlines(keepends=True):
        body = line.strip()
        if body:
            lead = pos + (len(line) - len(line.lstrip()))
            try:
                value = json.loads(body)
            except json.JSONDecodeError as exc:
                out.problems.append(ParseProblem(f"invalid JSON line: {exc.msg}", lead, lead + len(body)))
            else:
                out.records.append(Located(value, lead, lead + len(body)))
        pos += len(line)
