"""Text for reviewers, made safe and readable: findings marked, every character escaped, invisible ones shown.

The text comes from the wire (prompts and answers are whatever a client or a model sent). Each piece is
escaped by MarkupSafe before it is joined with our own `<mark>` tags, so no piece of it can become markup;
characters that render as nothing or reorder what follows them (bidi overrides, zero-width characters,
C0 controls other than tab and newline) are shown as `⟨U+XXXX⟩`, so a reviewer sees what the model saw.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from markupsafe import Markup, escape

_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
                        "\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]")


def visible(text: str) -> str:
    """`text` with invisible and direction-changing characters written out as ⟨U+XXXX⟩."""
    return _INVISIBLE.sub(lambda m: f"\u27e8U+{ord(m.group(0)):04X}\u27e9", text)


def highlight(text: str | None, marks: Iterable[tuple[int, int, str]] = ()) -> Markup:
    """`text` escaped, with each (start, end, label) span wrapped in `<mark class="finding">`. Spans out of
    range, empty or overlapping an earlier one are ignored (marks are a help, never a reason to fail)."""
    if not text:
        return Markup("")
    parts: list[str] = []
    pos = 0
    for start, end, label in sorted(marks, key=lambda m: (m[0], -m[1])):
        start, end = int(start), min(int(end), len(text))
        if start < pos or end <= start:
            continue
        parts.append(escape(visible(text[pos:start])))
        parts.append(Markup('<mark class="finding" title="{}">{}</mark>').format(str(label), visible(text[start:end])))
        pos = end
    parts.append(escape(visible(text[pos:])))
    return Markup("").join(parts)
