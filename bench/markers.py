"""Keeping a generated section inside a hand-written doc: the text between two marker comments."""

from __future__ import annotations

from pathlib import Path


def replace_marked_section(doc: Path, start: str, end: str, body: str) -> None:
    """Put `body` between the `start` and `end` markers of `doc` (appended with them when they are absent)."""
    section = f"{start}\n{body}\n{end}"
    text = doc.read_text() if doc.exists() else ""
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text += "\n" + section + "\n"
    doc.write_text(text)
