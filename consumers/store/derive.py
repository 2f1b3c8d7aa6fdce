"""What the review queue needs of an event, worked out once when it is stored.

- **value** (how much a label would teach; see `VALUE_DOC`): the stored part, `value_base`, comes from the
  event itself: scores near their evaluator's threshold, and evaluators (live vs shadow, or live model
  evaluators among themselves) disagreeing. The part that changes as labels come in, rarity of the event's
  categories, is added in the queue's query (`consumers/store/queries.py`).
- **snippet**: up to `SNIPPET_CHARS` of the judged text (the prompt's messages, or the answer), around the first
  finding, with **marks**: (start, end, label) spans of findings in it. Stored `redacted` text marks its
  placeholders (`[PII:email]`); `full` text is scanned again with the built-in rules (PII, secrets, prompt
  injection), whose findings are what the reviewer should look at. `hash` content has no text.
- **look-alike key**: a digest of the judged text with case, digits and white space normalised, so events
  whose text differs only in a number or spacing can be labelled together (hash content: the content digest).
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from evaluators.base import Finding

SNIPPET_CHARS = 280
#: characters of text kept before the first finding in a snippet
SNIPPET_LEAD = 80
#: texts longer than this are scanned (and normalised for look-alikes) on their first part only
SCAN_CHARS = 64 * 1024
#: the weights of the value score
W_NEAR, W_DISAGREE, W_RARE = 0.4, 0.4, 0.2
#: a label on an event stored as a hash only cannot be exported for training: its value is scaled by this
HASH_FACTOR = 0.2
VALUE_DOC = (
    "value = (0.4 x near + 0.4 x disagree + 0.2 x rare) x (0.2 if content is hash-only else 1), each part in [0, 1]:"
    " near = max over scored verdicts of 1 - |score - threshold| / max(threshold, 1 - threshold) (threshold 0.5"
    " when the event does not give one; a reward score, outside [0, 1]: exp(-|score - threshold|)); disagree = 1"
    " when a shadow evaluator disagrees with its live one, 0.5 when live evaluators with scores disagree on"
    " safe/unsafe, else 0; rare = 1 / (1 + labelled events in the"
    " event's least-labelled category), 0 for an event without categories")

ELLIPSIS = "\u2026"
_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*:[A-Za-z0-9_.-]+\]")
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")

Mark = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class Derived:
    value_base: float
    lookalike_key: str
    snippet: str | None
    marks: list[Mark]
    disagreement: bool
    #: the event's categories and those its shadow evaluators named (the queue's category filter finds both)
    categories: list[str]


def derive(event: Mapping[str, Any]) -> Derived:
    content = event.get("content") or {}
    text = judged_text(event)
    shadow = event.get("shadow") or {}
    snippet, marks = (None, []) if text is None else snippet_of(text, content.get("mode") == "redacted")
    categories = dict.fromkeys(str(c) for c in event.get("categories") or [])
    for verdict in shadow.get("verdicts") or []:
        if not verdict.get("safe", True) and not verdict.get("error"):
            categories.update(dict.fromkeys(str(c) for c in verdict.get("categories") or []))
    return Derived(value_base=value_base(event), lookalike_key=lookalike_key(event, text), snippet=snippet,
                   marks=marks, disagreement=bool(shadow.get("disagreement")), categories=list(categories))


def judged_text(event: Mapping[str, Any]) -> str | None:
    """The text the evaluators judged, as stored: the answer for output events, the messages for input ones."""
    content = event.get("content") or {}
    if content.get("mode") == "hash":
        return None
    if event.get("stage") == "output":
        return str(content.get("completion") or "")
    return "\n".join(str(m.get("content") or "") for m in content.get("messages") or [] if isinstance(m, dict))


# -- value ------------------------------------------------------------------------------------------
def closeness(score: float, threshold: float | None) -> float:
    """1 at the threshold, 0 at the far end of the score range. A score or threshold outside [0, 1] is a reward
    (unbounded): exp(-|score - threshold|), and 0 without a threshold to be near."""
    if not 0.0 <= score <= 1.0 or (threshold is not None and not 0.0 < threshold < 1.0):
        return math.exp(-abs(float(score) - float(threshold))) if threshold is not None else 0.0
    t = 0.5 if threshold is None else float(threshold)
    return max(0.0, 1.0 - abs(float(score) - t) / max(t, 1.0 - t))


def _threshold(verdict: Mapping[str, Any]) -> float | None:
    t = verdict.get("threshold")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) else None


def _score(verdict: Mapping[str, Any]) -> float | None:
    """A verdict's score when it is a finite number (JSON from the wire may hold NaN or a string)."""
    score = verdict.get("score")
    ok = isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)
    return float(score) if ok else None  # type: ignore[arg-type]  # ok means a finite number


def value_base(event: Mapping[str, Any]) -> float:
    live = [v for v in event.get("verdicts") or [] if isinstance(v, dict) and not v.get("error")]
    shadow = event.get("shadow") or {}
    candidates = [v for v in shadow.get("verdicts") or [] if isinstance(v, dict) and not v.get("error")]
    near = max((closeness(s, _threshold(v)) for v in live + candidates if (s := _score(v)) is not None),
               default=0.0)
    scored = {bool(v.get("safe")) for v in live if _score(v) is not None}
    disagree = 1.0 if shadow.get("disagreement") else (0.5 if len(scored) > 1 else 0.0)
    return round(W_NEAR * near + W_DISAGREE * disagree, 6)


# -- look-alikes ------------------------------------------------------------------------------------
def normalise(text: str) -> str:
    """Case, digits and white space folded: "Order 1234  shipped" and "order 98 shipped" look alike."""
    folded = unicodedata.normalize("NFKC", text[:SCAN_CHARS]).casefold()
    return _SPACE.sub(" ", _DIGITS.sub("0", folded)).strip()


def lookalike_key(event: Mapping[str, Any], text: str | None) -> str:
    content = event.get("content") or {}
    if text is None:
        return "sha256:" + str(content.get("sha256", ""))[:57]
    blob = f"{event.get('stage')}\x00{normalise(text)}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(blob).hexdigest()


# -- snippet and marks ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _scanners() -> tuple[Callable[[str], list[Finding]], ...]:
    from evaluators.rules.injection import create as injection
    from evaluators.rules.pii import create as pii
    from evaluators.rules.secrets import create as secrets

    return (pii("review-pii", {}).scan, secrets("review-secrets", {}).scan, injection("review-injection", {}).scan)


def find_marks(text: str, redacted: bool) -> list[Mark]:
    """Findings in `text`, in order, not overlapping: placeholders of redacted text, else what the built-in
    rules find (a scanner that fails marks nothing: marks are a help, never a reason to drop an event)."""
    text = text[:SCAN_CHARS]
    if redacted:
        return [(m.start(), m.end(), m.group(0)[1:-1]) for m in _PLACEHOLDER.finditer(text)]
    found: list[Mark] = []
    for scan in _scanners():
        try:
            found += [(f.start, f.end, f"{f.category}:{f.kind}") for f in scan(text)]
        except Exception:  # noqa: BLE001
            continue
    return without_overlaps(found)


def without_overlaps(marks: Iterable[Mark]) -> list[Mark]:
    out: list[Mark] = []
    for start, end, label in sorted(marks, key=lambda m: (m[0], -m[1])):
        if end > start and (not out or start >= out[-1][1]):
            out.append((start, end, label))
    return out


def snippet_of(text: str, redacted: bool) -> tuple[str, list[Mark]]:
    """A window of `text` around its first finding, with the marks inside it (offsets in the snippet)."""
    marks = find_marks(text, redacted)
    start = max(0, marks[0][0] - SNIPPET_LEAD) if marks else 0
    end = min(len(text), start + SNIPPET_CHARS)
    head = ELLIPSIS if start > 0 else ""
    tail = ELLIPSIS if end < len(text) else ""
    shift = len(head) - start
    inside = [(max(s, start) + shift, min(e, end) + shift, label) for s, e, label in marks if s < end and e > start]
    return head + text[start:end] + tail, inside


def marks_json(marks: Sequence[Mark]) -> list[list[Any]]:
    return [[s, e, label] for s, e, label in marks]
