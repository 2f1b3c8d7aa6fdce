"""`loads_unique`, the orjson fast path of the request body parse: whatever it returns is what the stdlib parse
with duplicate keys refused would give; a document it cannot prove that for is left to the stdlib (None)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.jsonio import loads_unique


class Duplicate(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise Duplicate
    return dict(pairs)


def stdlib(raw: bytes) -> Any:
    """What the slow path reads: a value, or Duplicate / ValueError."""
    return json.loads(raw, object_pairs_hook=_unique)


# keys from a tiny alphabet with colons and escapes, so collisions and colon counts are common
_KEY_TEXT = st.text(alphabet="ab:\u00e9", max_size=3)
_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(alphabet="ab:\\\"\u00e9\ud800", max_size=4))


def _encode_str(text: str, draw: Any) -> str:
    """A JSON string literal for `text`, each character written plainly or as an escape, chosen at random."""
    out = []
    for ch in text:
        plain = ch not in '"\\' and not 0xD800 <= ord(ch) <= 0xDFFF
        if plain and draw(st.booleans()):
            out.append(ch)
        else:
            out.append(draw(st.sampled_from(["\\u%04x", "\\u%04X"])) % ord(ch))
    return '"' + "".join(out) + '"'


@st.composite
def documents(draw: Any, depth: int = 0) -> str:
    """Raw JSON text that may name a key twice (spelt the same or with escapes), hold big integers, colons in
    strings, escaped colons, lone surrogates."""
    if depth >= 3 or draw(st.integers(0, 3)) == 0:
        value = draw(_SCALARS)
        if isinstance(value, str):
            return _encode_str(value, draw)
        return json.dumps(value)
    if draw(st.booleans()):
        items = draw(st.lists(documents(depth + 1), max_size=3))
        return "[" + ",".join(items) + "]"
    keys = draw(st.lists(_KEY_TEXT, max_size=4))
    return "{" + ",".join(f"{_encode_str(k, draw)}:{draw(documents(depth + 1))}" for k in keys) + "}"


@settings(max_examples=600, deadline=None)
@given(documents())
def test_fast_path_agrees_with_the_stdlib_or_declines(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    fast = loads_unique(raw)
    try:
        slow = stdlib(raw)
    except (Duplicate, ValueError):
        assert fast is None  # a duplicate key, or a document only the stdlib path may judge
        return
    if fast is not None:
        assert _same(fast, slow)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@pytest.mark.parametrize("raw", [
    b'{"a":1,"a":2}',
    b'{"\\u0061":1,"a":2}',
    b'{"a\\u003ab":1,"a:b":2}',  # the escaped colon cannot hide a duplicate
    b'{"a\\u003Ab":{"x":1},"a:b":2}',
    b'{"x":{"b":1,"b":2}}',
    b'{"n":18446744073709551616}',  # orjson would read a float
    b'{"t":"\\ud800"}',  # a lone surrogate: the stdlib path cleans it
    b'\xef\xbb\xbf{"a":1}',  # a byte order mark: the stdlib reads it, orjson does not
])
def test_declined(raw: bytes) -> None:
    assert loads_unique(raw) is None


@pytest.mark.parametrize("raw", [
    b'{"model":"m","messages":[{"role":"user","content":"time: 10:30"}]}',
    b'{"a\\u003ab":1,"c":"d:e"}',
    b'[{"x":1},{"x":1}]',
    b'{"n":9223372036854775807,"f":1.5}',
])
def test_proven(raw: bytes) -> None:
    assert loads_unique(raw) == json.loads(raw)


@pytest.mark.parametrize("number", ["123456789012345678901234567890", "-9223372036854775809", "18446744073709551616"])
def test_upstream_documents_keep_integers_past_64_bits_exact(number: str) -> None:
    """Upstream answers and events are re-encoded when the proxy rewrites them (a redaction, a cut): an integer
    orjson would read as a float must come back as the upstream wrote it."""
    from proxy.jsonio import dumps, loads, loads_checked

    doc = '{"choices":[{"index":0,"delta":{"content":"hi"}}],"seed":' + number + "}"
    for data in (doc, doc.encode()):
        value, clean = loads_checked(data)
        assert value["seed"] == int(number) and type(value["seed"]) is int and not clean
        assert loads(data)["seed"] == int(number)
        assert dumps(value) == doc.encode()
    assert loads_checked(b'{"created":1700000000,"n":123456789012345678}') == (
        {"created": 1700000000, "n": 123456789012345678}, True)  # 18 digits or fewer stay on orjson's path


@given(st.binary(max_size=80) | st.lists(st.sampled_from(["1234567890", "0", "9", " ", "a", ":", "\u0660"]),
                                         max_size=12).map(lambda parts: "".join(parts).encode()))
@settings(max_examples=500, deadline=None)
@example(b"9" * 19)
@example(b"x" + b"0" * 18 + b":")
@example(b'{"n":-9223372036854775809}')
def test_long_digit_scan_finds_what_the_regex_finds(data: bytes) -> None:
    """The bytes scan (translate and one substring search) sends to the stdlib exactly the documents that
    `rb"[0-9]{19}"` would: ASCII digits only (a non-ASCII digit's bytes are not), 19 in a row."""
    import re

    from proxy.jsonio import _long_digits

    assert _long_digits(data) == (re.search(rb"[0-9]{19}", data) is not None)
    assert _long_digits(data.decode("utf-8", "replace")) == (re.search(r"[0-9]{19}",
                                                                        data.decode("utf-8", "replace")) is not None)
