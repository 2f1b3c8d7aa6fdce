"""Hidden Unicode: invisible characters, tag and variation-selector smuggling, Trojan Source bidi controls.

Kinds:
- `zero_width`: ZERO WIDTH SPACE / NON-JOINER / JOINER, WORD JOINER, invisible math operators,
  a BOM that is not the first character, MONGOLIAN VOWEL SEPARATOR, Hangul fillers.
- `tag`: the Unicode tag block U+E0000-E007F (invisible ASCII twins used to smuggle instructions).
- `variation_selector`: a run of two or more variation selectors (U+FE00-FE0F, U+E0100-E01EF);
  one selector after a character is ordinary emoji or CJK presentation, a run carries hidden bytes.
- `bidi_control`: embeddings, overrides and isolates U+202A-202E, U+2066-2069 (CVE-2021-42574).
- `control`: C0 controls other than tab, newline and carriage return, DEL, and C1 controls.

Legitimate uses are left alone: a single joiner between two non-Latin characters (emoji ZWJ
sequences, Persian and Indic ZWNJ, Thai and Khmer ZWSP word breaks), a single invisible character
next to whitespace or at either end of the text (a BOM, copy-paste residue), and the tag
sequences of subdivision flags (U+1F3F4 followed by tag letters and CANCEL TAG). Inside a word
(`pass\u200bword`) or in runs, invisible characters are findings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import groupby
from typing import Any

from evaluators.base import Finding
from evaluators.rules._base import RuleEvaluator
from evaluators.rules._prefilter import Triggers
from evaluators.rules.options import UNICODE_KINDS, UnicodeOptions

CATEGORY = "unicode"
KINDS = UNICODE_KINDS

_SUSPECT = re.compile(
    "["
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # control
    "\u202a-\u202e\u2066-\u2069"  # bidi_control
    "\U000e0000-\U000e007f"  # tag
    "\ufe00-\ufe0f\U000e0100-\U000e01ef"  # variation_selector
    "\u200b-\u200d\u2060-\u2064\ufeff\u180e\u115f\u1160\u3164\uffa0"  # zero_width
    "]+"
)
_SUSPECT_CHAR = re.compile(_SUSPECT.pattern[:-1])
#: ASCII bytes that are never suspect: printable characters, tab, newline, carriage return
_ASCII_OK = bytes(range(0x20, 0x7F)) + b"\t\n\r"
#: the ASCII characters outside `_ASCII_OK`: an ASCII text without any is one `scan` returns [] for at once
_QUIET = Triggers([rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"])
_JOINERS = frozenset("\u200b\u200c\u200d")
_BLACK_FLAG = "\U0001f3f4"
_CANCEL_TAG = "\U000e007f"


def kind_of(ch: str) -> str:
    cp = ord(ch)
    if cp < 0xA0:
        return "control"
    if 0x202A <= cp <= 0x202E or 0x2066 <= cp <= 0x2069:
        return "bidi_control"
    if 0xE0000 <= cp <= 0xE007F:
        return "tag"
    if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF:
        return "variation_selector"
    return "zero_width"


class UnicodeEvaluator(RuleEvaluator):
    """Finds hidden characters; options `kinds` (default all of `KINDS`) and `allow_script_joiners` (default true)."""

    category = CATEGORY
    engine_version = "unicode-1"
    options_model = UnicodeOptions
    opts: UnicodeOptions

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.kinds = self.opts.selected
        self.allow_script_joiners = self.opts.allow_script_joiners

    def quiet_triggers(self) -> tuple[Triggers, float | None]:
        return _QUIET, None  # an ASCII text without them takes `scan`'s first exit: nothing found

    def scan(self, text: str) -> list[Finding]:
        if text.isascii() and not text.encode("ascii").translate(None, _ASCII_OK):
            return []  # the common case, at C speed: ASCII without control characters
        out: list[Finding] = []
        for run in _SUSPECT.finditer(text):
            pos = run.start()
            for kind, chars in groupby(run.group(), key=kind_of):
                length = len(list(chars))
                start, pos = pos, pos + length
                if kind in self.kinds and not self._benign(text, kind, start, pos):
                    out.append(Finding(CATEGORY, kind, start, pos))
        return out

    def inert(self, piece: str) -> bool:
        """ASCII without control characters: no hidden character, and (nothing being held) none before it that
        it could decide."""
        return piece.isascii() and not piece.encode("ascii").translate(None, _ASCII_OK)

    def open_from(self, text: str, start: int, run: int) -> int:
        """A finding is decided by the characters next to it: a trailing run of hidden characters is held until
        a visible one follows (one stray character at the end is benign only if the answer ends there)."""
        i = len(text)
        while i > start and _SUSPECT_CHAR.match(text[i - 1]):
            i -= 1
        return i

    def _benign(self, text: str, kind: str, start: int, end: int) -> bool:
        if kind == "variation_selector":
            return end - start < 2
        if kind == "tag":  # subdivision flag: U+1F3F4, tag letters/digits, CANCEL TAG
            return (
                start > 0
                and text[start - 1] == _BLACK_FLAG
                and end - start <= 8
                and text[end - 1] == _CANCEL_TAG
                and all(0xE0030 <= ord(c) <= 0xE007A for c in text[start : end - 1])
            )
        if kind == "zero_width":
            if end - start == 1 and (
                start == 0 or end == len(text) or text[start - 1].isspace() or text[end].isspace()
            ):
                return True  # one stray character at a word edge (a BOM, copy-paste residue) hides nothing
            return (
                self.allow_script_joiners
                and end - start == 1
                and text[start] in _JOINERS
                and 0 < start
                and end < len(text)
                and _non_latin(_before(text, start))
                and _non_latin(text[end])
            )
        return False


def _before(text: str, i: int) -> str:
    """The visible character before `i`, stepping over one variation selector (emoji presentation)."""
    ch = text[i - 1]
    if i >= 2 and kind_of(ch) == "variation_selector":
        return text[i - 2]
    return ch


def _non_latin(ch: str) -> bool:
    """A visible character beyond Latin/IPA (emoji, Arabic, Indic, Thai, CJK ...)."""
    return ord(ch) >= 0x0370 and not _SUSPECT.match(ch)


def create(name: str, options: Mapping[str, Any]) -> UnicodeEvaluator:
    return UnicodeEvaluator(name, options)
