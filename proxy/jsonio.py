"""JSON on the request path: orjson (C, 3-5x faster than the stdlib here), the stdlib where orjson says no.

orjson refuses what the stdlib accepts (lone UTF-16 surrogate escapes, NaN, nesting past 1024): those documents
take the stdlib's path, so what parses, and how, is what it always was. Two differences need care: orjson
reads an integer beyond 64 bits as a float (the stdlib keeps it exact), and it keeps the last value of a key
named twice without saying so. `loads` and `loads_checked` (upstream answers and events) send a document that
may hold such an integer to the stdlib; `loads_unique` (request bodies) proves neither happened, or says it
cannot.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: 19 digits in a row: the shortest text of an integer orjson reads as a float (past 64 bits:
#: -9223372036854775809); digits in strings count too (a false alarm only costs the stdlib's parse). Looked for
#: as `translate` (each ASCII digit to b"0", every other byte to b" ") and one substring search: what
#: `[0-9]{19}` finds, at ~1 µs on a 1.2 KB answer instead of the regex's ~10 µs (`re` tries every byte)
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_NINETEEN = b"0" * 19


def _long_digits(data: bytes | str) -> bool:
    """Whether `data` holds 19 ASCII digits in a row (text is looked at as UTF-8: a multi-byte character's
    bytes are never ASCII digits, so the answer is the same)."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    return _NINETEEN in raw.translate(_DIGITS_ONLY)


def loads(data: bytes | str) -> Any:
    """Parse a JSON document as the stdlib does, integers past 64 bits kept exact (ValueError or RecursionError
    as `json.loads` raises them)."""
    return loads_checked(data)[0]


def loads_checked(data: bytes | str) -> tuple[Any, bool]:
    """`loads`, and whether orjson parsed it: then no string in it holds a lone surrogate (orjson refuses
    them, escaped or not), and `clean_text` has nothing to replace. A document that may hold an integer past
    64 bits takes the stdlib's path, which keeps it exact (orjson would make it a float, and a rewritten
    answer or event would carry the float)."""
    if not _long_digits(data):
        try:
            return orjson.loads(data), True
        except orjson.JSONDecodeError:
            pass
    return json.loads(data), False


#: a float at least this large may be an integer orjson could not hold (it reads those as floats)
_INT_EDGE = 2.0 ** 63


def loads_unique(raw: bytes) -> Any | None:
    """`raw` parsed by orjson when that is provably what the stdlib would give with every key unique: no
    lone surrogate (orjson refuses them), no integer read as a float, no object naming a key twice. None when
    orjson refuses the document or the proof fails: the caller takes the stdlib's path, which decides.

    The proof counts: every member of an object in the text has one structural `:`, so the colons in the raw
    bytes, less the colons inside parsed strings (keys included), plus the `\\u003a` escapes (a colon inside a
    string that has no `:` byte), is at least the members in the text; equal to the members parsed only when no
    key collapsed into another."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    budget = raw.count(b":")
    if budget and b"\\u003" in raw:
        budget += raw.count(b"\\u003a") + raw.count(b"\\u003A")
    members = colons = 0
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            members += len(item)
            for key, member in item.items():
                if ":" in key:
                    colons += key.count(":")
                push(member)
        elif kind is str:
            if ":" in item:
                colons += item.count(":")
        elif kind is list:
            extend(item)
        elif kind is float and not -_INT_EDGE < item < _INT_EDGE:
            return None
    return value if members + colons == budget else None


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (`separators=(",", ":")`, `ensure_ascii=False`)."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # a lone surrogate, an integer past 64 bits
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
