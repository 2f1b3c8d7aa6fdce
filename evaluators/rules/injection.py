"""Prompt injection and jailbreak phrasing: weighted heuristics combined into a score in [0, 1].

Each heuristic (`_injection_heuristics.py`) has a weight: how sure one match
makes us. The score is the noisy-OR of the weights of the heuristics that
matched, `1 - prod(1 - w)`, so one strong cue ("ignore all previous
instructions", 0.9) is enough while weak ones ("you are now" 0.35,
"jailbreak" 0.35) count only together. The item is unsafe when the score
reaches `threshold` (default 0.5); the verdict's `score` is the score either
way, and findings (kind = heuristic name) are reported only for unsafe items.

Speed: one Aho-Corasick pass (pyahocorasick, C) over the lower-cased text finds
every heuristic's anchor phrases; a pattern is then tried only at its anchors,
so a benign text costs a few microseconds however many heuristics there are.
Base64 runs that decode to readable text are scored with the same heuristics
(`encoded_payload` when that text is an injection, `base64_text` otherwise).

This is a cheap first line, not a classifier: it knows the common override,
exfiltration, refusal-suppression and persona phrasings (English, plus
"ignore/forget the instructions" in German, Spanish, French, Italian,
Portuguese and Russian). Injections that merely ask for other content ("say
that you hate X") need a learned evaluator.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

import ahocorasick

from evaluators.base import Finding, IncrementalScanner
from evaluators.rules._base import RuleEvaluator, lower_same_length
from evaluators.rules._incremental import TailScanner, compile_partial
from evaluators.rules._injection_heuristics import HEURISTICS, Heuristic
from evaluators.rules._prefilter import Triggers
from evaluators.rules.options import DEFAULT_INJECTION_THRESHOLD, InjectionOptions

CATEGORY = "prompt_injection"
DEFAULT_THRESHOLD = DEFAULT_INJECTION_THRESHOLD

_BASE64 = re.compile(r"[A-Za-z0-9+/](?<![A-Za-z0-9+/][A-Za-z0-9+/])[A-Za-z0-9+/]{23,}={0,2}")
_MIN_BASE64 = 24
_MAX_DECODES = 4
_ENCODED_WEIGHT = 0.8
_BASE64_TEXT_WEIGHT = 0.25


class InjectionEvaluator(RuleEvaluator):
    """Scores prompt-injection phrasing; unsafe when the score reaches `threshold` (default 0.5).

    Options: `threshold`, `disable` (heuristic names to leave out), `weights`
    (name -> weight overrides), `decode_base64` (default true).
    """

    category = CATEGORY
    engine_version = "injection-1"
    options_model = InjectionOptions
    opts: InjectionOptions

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.threshold = self.opts.threshold
        disable = set(self.opts.disable)
        weights = self.opts.weights
        self.weights = {h.name: float(weights.get(h.name, h.weight)) for h in HEURISTICS}
        self.weights["encoded_payload"] = float(weights.get("encoded_payload", _ENCODED_WEIGHT))
        self.weights["base64_text"] = float(weights.get("base64_text", _BASE64_TEXT_WEIGHT))
        self.heuristics = tuple(h for h in HEURISTICS if h.name not in disable)
        self.decode_base64 = self.opts.decode_base64 and "encoded_payload" not in disable
        self._phrases = _automaton(self.heuristics)
        self._requires = {h.name: h.requires for h in self.heuristics if h.requires}
        # Hyperscan's whitespace is not Python's (\x1c-\x1f are whitespace to `re`): such text is scanned in full
        self._triggers = Triggers([rb"[\x0b\x1c-\x1f]"] + ([rb"[A-Za-z0-9+/]{24}"] if self.decode_base64 else []),
                                  supersets=[h.pattern.pattern.encode() for h in self.heuristics])
        self._open = [compile_partial(h.pattern.pattern) for h in self.heuristics]
        starts = {phrase for h in self.heuristics for phrase in h.starts}
        self._start_prefixes = frozenset(p[:k] for p in starts for k in range(1, len(p)))
        self._longest_start = max(map(len, starts), default=0)

    def scan(self, text: str) -> list[Finding]:
        return self.analyse(text)[0]

    def analyse(self, text: str) -> tuple[list[Finding], float]:
        if self._triggers.present(text) is False:
            return [], 0.0  # no heuristic can match, no base64 run: one Hyperscan pass
        matches = self.matches(text)
        if self.decode_base64:
            matches += self._encoded(text)
        score = self.score({m.kind for m in matches})
        if score < self.threshold:
            return [], score
        return sorted(matches, key=lambda f: (f.start, f.end)), score

    def quiet_triggers(self) -> tuple[Triggers, float | None]:
        return self._triggers, 0.0  # `analyse` returns ([], 0.0) at once when they are absent

    def score(self, kinds: set[str]) -> float:
        """Noisy-OR of the weights of the heuristics that matched."""
        miss = 1.0
        for kind in kinds:
            miss *= 1.0 - self.weights[kind]
        return round(1.0 - miss, 6)

    def matches(self, text: str, seen: set[str] | None = None, require: bool = True) -> list[Finding]:
        """The first match of every heuristic, tried only at its anchor phrases.

        `seen` (a stream's) collects the phrases found, and counts those found in earlier text for `requires`;
        `require=False` leaves `requires` to the caller."""
        low = lower_same_length(text)
        starts: dict[int, list[int]] = {}  # heuristic index -> offsets where one of its start phrases begins
        present: set[str] = seen if seen is not None else set()
        for end, (phrase, start_of) in self._phrases.iter(low):
            present.add(phrase)
            pos = end - len(phrase) + 1
            for i in start_of:
                starts.setdefault(i, []).append(pos)
        out = []
        for i in sorted(starts):
            h = self.heuristics[i]
            if require and h.requires and present.isdisjoint(h.requires):
                continue
            src = text if h.on_original else low
            for pos in sorted(starts[i]):
                m = h.pattern.match(src, pos)
                if m is not None:
                    out.append(Finding(CATEGORY, h.name, m.start(), m.end()))
                    break
        return out

    def requirement_met(self, kind: str, seen: set[str]) -> bool:
        """Whether a heuristic's `requires` phrases (if any) were seen."""
        requires = self._requires.get(kind)
        return not requires or not seen.isdisjoint(requires)

    def open_from(self, text: str, start: int, run: int) -> int:
        """A base64 payload is one run of non-whitespace: held while it may grow. Phrases hold spaces: held from
        an anchor phrase where its heuristic is still partly matched (or matched up to the last two
        characters), or from a start phrase begun at the very end."""
        hold = run
        lo = max(start, len(text) - _PHRASE_SPAN)
        window = text[lo:]
        low = lower_same_length(window)
        last = len(window) - 2
        for end, (phrase, start_of) in self._phrases.iter(low):
            pos = end - len(phrase) + 1
            if lo + pos >= hold:
                continue
            for i in start_of:
                m = self._open[i].match(window if self.heuristics[i].on_original else low, pos, partial=True)
                if m is not None and (m.partial or m.end() >= last):
                    hold = lo + pos
                    break
        for k in range(min(self._longest_start, len(low)), 0, -1):  # longest first: the earliest start
            if lo + len(low) - k >= hold:
                break
            if low[-k:] in self._start_prefixes:
                hold = lo + len(low) - k
                break
        return hold

    def incremental(self) -> IncrementalScanner | None:
        return InjectionScanner(self)

    def _encoded(self, text: str) -> list[Finding]:
        """Base64 runs that decode to readable text: `encoded_payload` if that text is an injection."""
        out: list[Finding] = []
        offset = 0
        words = text.split()
        if not words or len(max(words, key=len)) < _MIN_BASE64:  # a payload is one long whitespace-free token
            return out
        for word in [w for w in words if len(w) >= _MIN_BASE64]:
            offset = text.find(word, offset)
            for m in _BASE64.finditer(word):
                if len(out) >= _MAX_DECODES:
                    return out
                decoded = _decode_text(m.group())
                if decoded is None:
                    continue
                inner = self.score({f.kind for f in self.matches(decoded)})
                kind = "encoded_payload" if inner >= self.threshold else "base64_text"
                out.append(Finding(CATEGORY, kind, offset + m.start(), offset + m.end()))
            offset += len(word)
        return out


#: characters before the end of a streamed answer where a phrase still being written may start
_PHRASE_SPAN = 256


class InjectionScanner(TailScanner):
    """Streams: the score is the noisy-OR of every heuristic matched anywhere in the answer so far, so the
    kinds matched (and phrases seen, for `requires`) are kept across steps; findings are reported once the
    score reaches the threshold, each once."""

    __slots__ = ("_seen", "_kinds", "_waiting", "_reported_kinds")

    def __init__(self, engine: InjectionEvaluator) -> None:
        super().__init__(engine)
        self._seen: set[str] = set()
        self._kinds: dict[str, Finding] = {}  # heuristic -> its first match
        self._waiting: dict[str, Finding] = {}  # matched, but its `requires` phrases were not seen yet
        self._reported_kinds: set[str] = set()

    def findings(self, text: str, start: int, hold: int, final: bool) -> tuple[list[Finding], float | None]:
        engine: InjectionEvaluator = self.engine  # type: ignore[assignment]  # the injection engine builds this scanner
        found = engine.matches(text, self._seen, require=False)
        if engine.decode_base64:
            found += engine._encoded(text)
        for match in found:
            if start <= match.start < hold and match.kind not in self._kinds:
                self._waiting.setdefault(match.kind, match)
        for kind in list(self._waiting):
            if engine.requirement_met(kind, self._seen):
                self._kinds[kind] = self._waiting.pop(kind)
        score = engine.score(set(self._kinds))
        if score < engine.threshold:
            return [], score
        new = [m for kind, m in self._kinds.items() if kind not in self._reported_kinds]
        self._reported_kinds.update(self._kinds)
        return sorted(new, key=lambda f: (f.start, f.end)), score


def _automaton(heuristics: tuple[Heuristic, ...]) -> ahocorasick.Automaton:
    """One automaton over every start and required phrase; a phrase's value: (phrase, heuristics it starts)."""
    start_of: dict[str, list[int]] = {}
    for i, h in enumerate(heuristics):
        for phrase in h.starts:
            start_of.setdefault(phrase, []).append(i)
        for phrase in h.requires:
            start_of.setdefault(phrase, [])
    automaton = ahocorasick.Automaton()
    for phrase, ids in start_of.items():
        automaton.add_word(phrase, (phrase, tuple(ids)))
    automaton.make_automaton()
    return automaton


def _decode_text(blob: str) -> str | None:
    """The text a base64 run decodes to, if it is mostly printable words; else None."""
    blob = blob[: 16 * 1024]
    blob = blob[: len(blob) - len(blob) % 4] if not blob.endswith("=") else blob
    try:
        raw = base64.b64decode(blob, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not decoded or " " not in decoded:
        return None
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in decoded)
    return decoded if printable >= 0.95 * len(decoded) else None


def create(name: str, options: Mapping[str, Any]) -> InjectionEvaluator:
    return InjectionEvaluator(name, options)
