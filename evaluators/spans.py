"""Spans of text and the findings that locate them: merging, placeholders, masking.

Neutral ground between the rule engines that find spans and the proxy that masks them (the `redact` action,
audit content "redacted", streamed answers): `redact("mail a@b.io", findings) == "mail [PII:email]"`.
Overlapping (not merely adjacent) findings merge into one span whose label is the finding that starts first
(on a tie, the longer one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from evaluators.base import Finding

T = TypeVar("T")

#: (start, end, replacement): characters of a text to replace
Span = tuple[int, int, str]


def placeholder(finding: Finding) -> str:
    """The mask for one finding, e.g. `[PII:email]`, `[SECRET:aws_access_key]`."""
    return f"[{finding.category.upper()}:{finding.kind}]"


def merge_spans(findings: Iterable[Finding], length: int | None = None) -> list[tuple[int, int, Finding]]:
    """Non-overlapping (start, end, label finding) spans in text order, clipped to `length` when given."""
    clipped = ((max(0, f.start), f.end if length is None else min(f.end, length), f)
               for f in sorted(findings, key=lambda f: (f.start, -f.end)))
    return merge_sorted(span for span in clipped if span[1] > span[0])


def merge_sorted(spans: Iterable[tuple[int, int, T]]) -> list[tuple[int, int, T]]:
    """(start, end, label) spans sorted by start: overlapping ones merged, keeping the first one's label."""
    merged: list[tuple[int, int, T]] = []
    for start, end, label in spans:
        if merged and start < merged[-1][1]:
            first_start, first_end, first_label = merged[-1]
            merged[-1] = (first_start, max(first_end, end), first_label)
        else:
            merged.append((start, end, label))
    return merged


def placeholder_spans(findings: Iterable[Finding], length: int) -> list[Span]:
    """(start, end, placeholder) spans to mask in a text of `length` characters, overlapping findings merged."""
    return [(start, end, placeholder(label)) for start, end, label in merge_spans(findings, length)]


def redact(text: str, findings: Iterable[Finding]) -> str:
    """`text` with every finding's span replaced by its placeholder; overlapping spans merged."""
    return mask(text, placeholder_spans(findings, len(text)))


def mask(text: str, spans: Iterable[Span]) -> str:
    """`text` with each (start, end, replacement) span replaced; spans in order, not overlapping, clipped to
    the text (a streamed answer's piece gets the parts of spans that fall inside it)."""
    parts: list[str] = []
    pos = 0
    for start, end, replacement in spans:
        start, end = max(start, pos, 0), min(end, len(text))
        if end <= start:
            continue
        parts.append(text[pos:start])
        parts.append(replacement)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
