"""Configurable blocklist: regular expressions and whole words.

Options:
- `patterns`: a list of regexes (kind "pattern") or a mapping name -> regex (kind = name).
- `words`: words or phrases matched whole (not inside a longer word), case-insensitively.
  They compile to one trie-shaped regex run over the lower-cased text, so a list of
  thousands costs about as much as a list of ten.
- `category` (default "blocklist"), `ignore_case` for `patterns` (default true).

Patterns are the operator's: Python `re` has no timeout, so a pattern with nested
quantifiers can backtrack badly. Prefer possessive quantifiers and atomic groups
(`a++`, `(?>...)`) in patterns meant for long inputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from evaluators.base import Finding, IncrementalScanner
from evaluators.rules._base import RuleEvaluator, lower_same_length
from evaluators.rules._incremental import compile_partial, open_start
from evaluators.rules.options import DEFAULT_CATEGORY, RegexOptions

__all__ = ["DEFAULT_CATEGORY", "RegexEvaluator", "create", "trie_regex"]


def trie_regex(words: Iterable[str]) -> str:
    """One regex matching any of `words` (literally), shaped as a trie: shared prefixes are tried once."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # end of a word

    def build(node: dict[str, Any]) -> str:
        ends = "" in node
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:  # a word ends here and longer ones continue: greedy, then the shorter word
            body = (body if len(branches) == 1 and len(branches[0]) == 1 else "(?:" + body + ")") + "?"
        return body

    return build(trie)


class RegexEvaluator(RuleEvaluator):
    """Flags configured patterns and words under one category."""

    engine_version = "regex-1"
    options_model = RegexOptions
    opts: RegexOptions

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.category = self.opts.category
        self.patterns = [(kind, re.compile(source, self.opts.flags)) for kind, source in self.opts.patterns]
        lowered = self.opts.lowered_words
        # words are matched on the lower-cased text: the case-sensitive engine is several times faster
        self.words = re.compile(r"(?<!\w)" + trie_regex(lowered) + r"(?!\w)") if lowered else None
        self._open = _partial_patterns([p for _, p in self.patterns] + ([self.words] if self.words else []))

    def open_from(self, text: str, start: int, run: int) -> int:
        """Held from the first place where a configured pattern is still partly matched, or matched up to the
        last two characters (it could still grow, or a lookahead past it fail)."""
        assert self._open is not None
        hold = len(text)
        low = None
        for i, pattern in enumerate(self._open):
            subject = text
            if self.words is not None and i == len(self._open) - 1:  # words run on the lower-cased text
                subject = low = low if low is not None else lower_same_length(text)
            found = open_start(pattern, subject, start, slack=2)
            if found is not None and found < hold:
                hold = found
        return hold

    def incremental(self) -> IncrementalScanner | None:
        return super().incremental() if self._open is not None else None

    def scan(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        for kind, pattern in self.patterns:
            out += [
                Finding(self.category, kind, m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()
            ]
        if self.words is not None:
            out += [
                Finding(self.category, "word", m.start(), m.end()) for m in self.words.finditer(lower_same_length(text))
            ]
        if len(self.patterns) + (self.words is not None) > 1:
            out.sort(key=lambda f: (f.start, f.end))
        return out


def _partial_patterns(patterns: list[re.Pattern[str]]) -> list[Any] | None:
    """The patterns compiled for partial matching; None when one is beyond the `regex` module (such an engine
    judges streams in windows instead)."""
    try:
        return [compile_partial(p.pattern, p.flags & ~re.UNICODE) for p in patterns]
    except Exception:  # regex's own error type, or a flag it reads differently
        return None


def create(name: str, options: Mapping[str, Any]) -> RegexEvaluator:
    return RegexEvaluator(name, options)
