"""Parse Llama Guard's answer: `safe`, or `unsafe` and a line of comma-separated category codes."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

Label = Literal["safe", "unsafe"]

_CODE = re.compile(r"^[A-Za-z]{0,8}\d{1,3}$")


class ParseError(ValueError):
    """The model's answer is not `safe` / `unsafe` + codes (tuned output, wrong model, garbage)."""


@dataclass(frozen=True, slots=True)
class Parsed:
    label: Label
    categories: list[str] = field(default_factory=list)

    @property
    def unsafe(self) -> bool:
        return self.label == "unsafe"


def parse_label(text: str) -> Label:
    """The first word of the answer, ignoring leading whitespace and case."""
    words = text.split(maxsplit=1)
    first = words[0].lower() if words else ""
    if first not in ("safe", "unsafe"):
        raise ParseError(f"expected 'safe' or 'unsafe', got {_preview(text)}")
    return first  # type: ignore[return-value]  # narrowed to the two words by the check above


def parse_categories(line: str, known: Collection[str] | None = None) -> list[str]:
    """`S1, S10` -> ["S1", "S10"]; codes are upper-cased, duplicates dropped, order kept."""
    out: list[str] = []
    for raw in line.split(","):
        code = raw.strip().upper()
        if not code:
            continue
        if not (_CODE.match(code) or (known is not None and code in known)):
            raise ParseError(f"not a category code: {_preview(raw)}")
        if code not in out:
            out.append(code)
    return out


def parse_output(text: str, known: Collection[str] | None = None) -> Parsed:
    """Parse a complete answer. Whitespace around lines is ignored; anything else is a ParseError."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        raise ParseError("empty answer")
    label = lines[0].lower()
    if label == "safe":
        if len(lines) > 1:
            raise ParseError(f"unexpected text after 'safe': {_preview(lines[1])}")
        return Parsed("safe")
    if label == "unsafe":
        if len(lines) > 2:
            raise ParseError(f"unexpected text after the category line: {_preview(lines[2])}")
        return Parsed("unsafe", parse_categories(lines[1], known) if len(lines) == 2 else [])
    raise ParseError(f"expected 'safe' or 'unsafe', got {_preview(text)}")


def _preview(text: str, n: int = 40) -> str:
    text = text.strip()
    return repr(text if len(text) <= n else text[:n] + "...")
