"""One pass over a text for every trigger of a rule engine (Hyperscan), before any of its regexes runs.

A rule engine's patterns each need something literal-ish to match: a token's prefix (`ghp_`, `AKIA`, `eyJ`), a
keyword (`password`, `bearer`), an `@`, a run of nine digits. `Triggers` compiles those necessary conditions into
one Hyperscan database; scanning a kilobyte of ordinary prose for all of them takes about a microsecond, and an
engine whose triggers are all absent finds nothing without running its regexes (tens of microseconds).

Only ASCII text takes this path: the engines' regexes use Python's Unicode classes, which Hyperscan's byte-mode
classes do not reproduce beyond ASCII; other text is scanned as before. Without the `hyperscan` package (a
platform without its wheel) every text is scanned as before: the prefilter changes cost, never outcomes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

hyperscan: ModuleType | None
try:
    import hyperscan
except ImportError:  # pragma: no cover - the wheel is there on every platform CI and the images use
    hyperscan = None


#: texts up to this long have their answer remembered (`Triggers.present`); longer ones are not kept alive
_REMEMBERED_CHARS = 4096


def _stop(*_: Any) -> bool:
    return True  # non-zero: Hyperscan stops scanning


class Triggers:
    """Is any of these patterns (Hyperscan syntax, bytes) in an ASCII text? `None` when it cannot tell."""

    def __init__(self, patterns: Sequence[bytes], caseless: Sequence[bytes] = (), supersets: Sequence[bytes] = ()) -> None:
        """`caseless` patterns ignore case; `supersets` are full regexes compiled in Hyperscan's prefilter mode
        (constructs it lacks, like lookbehinds, are loosened: it matches a superset), ignoring case."""
        self._db = None
        self._last: tuple[str | None, bool] = (None, False)  # the last short text asked about, and the answer
        #: what was compiled, for a `StageTriggers` joining several engines' triggers into one pass
        self.spec = (tuple(patterns), tuple(caseless), tuple(supersets))
        if hyperscan is None or not (patterns or caseless or supersets):
            return
        expressions = list(patterns) + list(caseless) + list(supersets)
        one = hyperscan.HS_FLAG_SINGLEMATCH
        flags = [one] * len(patterns) + [one | hyperscan.HS_FLAG_CASELESS] * len(caseless)
        flags += [one | hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_PREFILTER] * len(supersets)
        db = hyperscan.Database()
        db.compile(expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions),
                   flags=flags)
        self._db = db
        self._prototype = hyperscan.Scratch(db)
        self._local = threading.local()  # a scratch per thread (big batches are judged in worker threads)

    def present(self, text: str) -> bool | None:
        """True if a trigger occurs in `text`, False if none does; None when the text is not ASCII (or there is
        no Hyperscan): the caller must scan. The answer for the last short text is remembered (a stream's
        scanner asks twice about the same text: where a match may be open, then what it holds)."""
        last = self._last
        if last[0] is text:
            return last[1]
        if self._db is None or hyperscan is None or not text.isascii():
            return None
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._prototype.clone()
        try:
            # positional (data, handler, flags, context, scratch): keywords are looked up by name on every call,
            # which costs more than scanning a short text
            self._db.scan(text.encode("ascii"), _stop, 0, None, scratch)
        except hyperscan.ScanTerminated:
            found = True
        else:
            found = False
        if len(text) <= _REMEMBERED_CHARS:
            self._last = (text, found)  # one tuple, replaced whole: safe across threads
        return found


class StageTriggers:
    """The triggers of several engines in one Hyperscan pass: which of them cannot find anything in a text.

    A guard stage judged by several rule engines scans the text once for all their triggers instead of once
    per engine. Each entry is an engine's `Triggers` (None: that engine always scans)."""

    def __init__(self, triggers: Sequence[Triggers | None]) -> None:
        self._db = None
        self.size = len(triggers)
        expressions: list[bytes] = []
        flags: list[int] = []
        owners: list[int] = []
        usable: list[int] = []
        if hyperscan is not None:
            one = hyperscan.HS_FLAG_SINGLEMATCH
            kinds = (one, one | hyperscan.HS_FLAG_CASELESS,
                     one | hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_PREFILTER)
            for index, trigger in enumerate(triggers):
                if trigger is None or trigger._db is None:
                    continue
                usable.append(index)
                for kind, group in zip(kinds, trigger.spec):
                    expressions.extend(group)
                    flags.extend([kind] * len(group))
                    owners.extend([index] * len(group))
        self._owners = owners
        self._usable = usable
        self.usable = bool(usable)  # some engine's triggers are in the pass
        if hyperscan is None or not expressions:
            return
        db = hyperscan.Database()
        db.compile(expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions),
                   flags=flags)
        self._db = db
        self._prototype = hyperscan.Scratch(db)
        self._local = threading.local()

    def quiet(self, text: str) -> list[bool] | None:
        """Per engine: True when none of its triggers occurs in `text` (it would find nothing), False when one
        does or it has none; None when the text is not ASCII (or there is no Hyperscan): every engine scans."""
        if self._db is None or not text.isascii():
            return None
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._prototype.clone()
        quiet = [False] * self.size
        for index in self._usable:
            quiet[index] = True
        owners = self._owners

        def found(expression: int, *_: Any) -> bool:
            quiet[owners[expression]] = False
            return False  # go on: the other engines' triggers are still looked for

        self._db.scan(text.encode("ascii"), found, 0, None, scratch)  # positional: see `Triggers.present`
        return quiet
