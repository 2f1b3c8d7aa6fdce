"""Incremental scanning for the rule engines: the whole answer so far is judged, only its new tail is scanned.

`TailScanner` keeps the answer's uncleared tail plus `CONTEXT` characters before it (what lookbehinds and
left-boundary checks read). Each `feed` asks the engine where an unfinished match could still begin
(`RuleEvaluator.open_from`); everything before that point is cleared, and the engine's ordinary `scan` over the
kept text reports the matches that start in the newly cleared part. A match is therefore reported with the
same context the whole-answer scan gives it, wherever the text was split, and text is cleared only once no
match can still grow over it.

Open-prefix detection, shared by the engines:
- the trailing run of non-whitespace (a token, a JWT, an e-mail address, a password value: none holds
  whitespace) is tracked as text arrives, never rescanned;
- patterns whose matches hold whitespace (a PEM block, a card number in groups, an injection phrase) are
  matched with the `regex` module's partial matching on the tail: a partial match (the text ends inside a
  possible match) or a complete one ending within `slack` characters of the end (it could still grow, or a
  lookahead past it could still fail) holds the tail from its start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import regex

from evaluators.base import Finding, ScanStep

if TYPE_CHECKING:
    from evaluators.rules._base import RuleEvaluator

#: characters kept before the cleared point: the longest lookbehind or prefix a finding's decision reads
#: (a `password = ` assignment before its value, an e-mail's local part, a token's left boundary)
CONTEXT = 128


def open_start(pattern: Any, text: str, pos: int, slack: int | None = None) -> int | None:
    """Where, at or after `pos`, a match of `pattern` (a `regex` pattern) may still be unfinished: the first
    partial match, or (with a `slack`) complete match ending within `slack` characters of the end; None when
    there is none."""
    n = len(text)
    # positional (string, pos, endpos, overlapped, concurrent, partial): the `regex` module parses keywords by
    # name on every call, which costs more than the search of a short tail
    for m in pattern.finditer(text, pos, None, True, None, True):
        if m.partial:
            if m.start() < n:  # an empty partial match at the very end says nothing
                return int(m.start())
        elif slack is not None and m.end() >= n - slack and m.end() > m.start():
            return int(m.start())
    return None


def compile_partial(source: str, flags: int = 0) -> Any:
    """A `re` pattern's source compiled for partial matching (the `regex` module reads `re` syntax)."""
    return regex.compile(source, flags | regex.VERSION0)


class TailScanner:
    """The incremental scanner of one rule engine for one answer (see the module docstring)."""

    __slots__ = ("engine", "_text", "_base", "_cleared", "_run", "_reported", "_quiet")

    def __init__(self, engine: RuleEvaluator) -> None:
        self.engine = engine
        #: (triggers, score): a text without the triggers is judged ([], score) without asking the engine
        self._quiet = engine.quiet_triggers()
        self._text = ""  # the answer from `_base` on
        self._base = 0
        self._cleared = 0  # absolute: no match can still touch the answer before this
        self._run = 0  # absolute: where the trailing run of non-whitespace starts
        self._reported: set[int] = set()  # starts of matches reported early (see `_early`)

    def feed(self, piece: str) -> ScanStep:
        cleared = self._cleared
        if not piece:
            return ScanStep([], cleared)
        base = self._base
        held = cleared < base + len(self._text)
        text = self._text = self._text + piece
        n = len(text)
        if piece[-1].isspace():
            self._run = base + n
        else:
            words = piece.rsplit(maxsplit=1)  # from the right: as far back as the last word only
            if len(words) == 2 or piece[0].isspace():
                self._run = base + n - len(words[-1])
        if not held and self.engine.inert(piece):  # what `_step` does when nothing is found and nothing held
            self._cleared = base + n
            self._trim(text, n)
            return ScanStep([], self._cleared)
        start = cleared - base
        hold = self.engine.open_from(text, start, self._run - base)
        early = self._early(text, hold) if hold < n else []
        if hold <= start:
            return ScanStep(early, cleared)
        step = self._step(text, start, hold, final=False)
        if early:
            step.findings.extend(early)
        return step

    def flush(self) -> ScanStep:
        text = self._text
        start = self._cleared - self._base
        if start >= len(text):
            return ScanStep([], self._cleared)
        self._run = self._base + len(text)
        return self._step(text, start, len(text), final=True)

    def _step(self, text: str, start: int, hold: int, final: bool) -> ScanStep:
        """Report the matches starting in [start, hold), clear up to `hold`, keep what the next step reads."""
        findings, score = self.findings(text, start, hold, final)
        base = self._base
        if base and findings:
            findings = [Finding(f.category, f.kind, f.start + base, f.end + base) for f in findings]
        cleared = self._cleared = base + hold
        self._trim(text, hold)
        return ScanStep(findings, cleared, score)

    def _trim(self, text: str, hold: int) -> None:
        """Keep the text from `CONTEXT` characters before `hold` (offsets in `text`) on."""
        cut = hold - CONTEXT
        if cut > 0:
            self._text = text[cut:]
            self._base += cut

    def findings(self, text: str, start: int, hold: int, final: bool) -> tuple[list[Finding], float | None]:
        """Matches in `text` starting in [start, hold) (offsets in `text`), and the engine's score if it has one.
        `final`: the text ends here for good (an end-of-text anchor may match)."""
        quiet = self._quiet
        if quiet is not None and quiet[0].present(text) is False:  # remembered: `open_from` just asked
            return [], quiet[1]
        found, score = self.engine.analyse(text)
        return [f for f in found if start <= f.start < hold], score

    def _early(self, text: str, hold: int) -> list[Finding]:
        """Matches still held (they may grow) but certain already (more text cannot undo them): reported now,
        so a cut comes as soon as the answer is sure to hold one; each once (and again, whole, once cleared)."""
        out = []
        for f in self.engine.certain(text, hold):
            at = self._base + f.start
            if at not in self._reported:
                self._reported.add(at)
                out.append(Finding(f.category, f.kind, at, self._base + f.end))
        return out
