"""Lone UTF-16 surrogates: text JSON can carry ("\\ud800") that UTF-8 cannot encode.

`json.loads` turns a `\\ud800` escape without its pair into a str that raises UnicodeEncodeError wherever
it is encoded (the content digest, the audit log, Kafka, tokenizers). A client can send one in any prompt, so
every text the proxy judges or audits has them replaced by U+FFFD first; the upstream still gets the client's
bytes as sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_LONE = re.compile("[\ud800-\udfff]")
#: a \\uD800-\\uDFFF escape in raw JSON: the only way a surrogate gets into a parsed value (bytes are UTF-8)
_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (valid pairs were already joined by the parser)."""
    return _LONE.sub("\ufffd", text) if _LONE.search(text) else text


def clean_json(value: Any) -> Any:
    """A parsed JSON value with `clean_text` applied to every string, keys included."""
    return map_strings(value, clean_text)


def map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """A parsed JSON value with `fn` applied to every string, keys included."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {fn(k): map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [map_strings(v, fn) for v in value]
    return value


def may_hold_surrogates(raw: bytes) -> bool:
    """Cheap test on raw JSON: False means no parsed string can hold a surrogate."""
    return _ESCAPE.search(raw) is not None
