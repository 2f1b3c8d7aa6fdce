"""Mask located findings: `redact("mail a@b.io", findings) == "mail [PII:email]"`.

Used by the proxy for the `redact` action and for audit content "redacted".
Overlapping (not merely adjacent) findings merge into one span whose label is
the finding that starts first (on a tie, the longer one).
"""

from __future__ import annotations

from typing import Iterable

from evaluators.base import Finding


def placeholder(finding: Finding) -> str:
    """The mask for one finding, e.g. `[PII:email]`, `[SECRET:aws_access_key]`."""
    return f"[{finding.category.upper()}:{finding.kind}]"


def merge_spans(findings: Iterable[Finding], length: int | None = None) -> list[tuple[int, int, Finding]]:
    """Non-overlapping (start, end, label finding) spans in text order, clipped to `length` when given."""
    spans: list[tuple[int, int, Finding]] = []
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        start, end = max(0, f.start), f.end if length is None else min(f.end, length)
        if end <= start:
            continue
        if spans and start < spans[-1][1]:
            last_start, last_end, label = spans[-1]
            spans[-1] = (last_start, max(last_end, end), label)
        else:
            spans.append((start, end, f))
    return spans


def redact(text: str, findings: Iterable[Finding]) -> str:
    """`text` with every finding's span replaced by its placeholder; overlapping spans merged."""
    return mask(text, [(start, end, placeholder(label)) for start, end, label in merge_spans(findings, len(text))])


def mask(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
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
