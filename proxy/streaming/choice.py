"""One choice of a streamed answer: its windows and the upstream events held back until judged."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Callable

from evaluators.rules.redact import merge_sorted
from proxy.streaming.windows import TokenWindows, Window, WindowQueue

#: (start, end, replacement): characters of the answer to mask
Span = tuple[int, int, str]


@dataclass(slots=True)
class Entry:
    """One upstream event of this choice, as received, and the text position it follows."""

    raw: bytes
    end: int  # tokens of this choice up to and including this event
    finish: bool  # carries the choice's finish_reason
    char_start: int = 0  # its text's place in the answer (characters)
    char_end: int = 0


class ChoiceStream:
    """Per-choice state: release order is upstream order; text is released only once judged (within `lead`).

    `lead` is how many tokens beyond the approved text may reach the client:
    0 in buffered mode, one window in optimistic mode, unbounded in final mode.
    `holdback` keeps the last tokens of approved text until the next window is judged (buffered mode: the
    context size): the next window is judged with them as context, so something unsafe or personal split
    across two windows is cut or masked whole instead of its first part reaching the client.
    A finishing event is released only when the whole answer has been judged.
    """

    def __init__(self, index: int, windows: TokenWindows, lead: float, holdback: int = 0,
                 rewrite: Callable[[bytes, list[Span]], bytes] | None = None) -> None:
        self.index = index
        self.windows = windows
        self.lead = lead
        self.pending = WindowQueue()
        self.entries: deque[Entry] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.holdback = holdback
        self.finished = False  # upstream sent this choice's finish_reason
        self.ended = False  # no more text will come (finished, or the stream ended)
        self.cut = False
        self.held_bytes = 0  # of the events in `entries`
        self.redactions: list[Span] = []  # masks from `redact` verdicts, applied as held events are released
        self.rewrite = rewrite  # masks spans of one event's text (the route's)

    def add(self, raw: bytes, text: str, finish: bool) -> Window | None:
        """Take one upstream event of this choice; return a window that is now ready for judgment."""
        chars = self.windows.chars
        window = self.windows.add(text)
        if finish:
            self.finished = self.ended = True
            last = self.windows.seal(final=True)
            if last is not None:
                window = last
            elif window is not None:
                window.final = True
        self.entries.append(Entry(raw, self.windows.tokens, finish, chars, self.windows.chars))
        self.held_bytes += len(raw)
        return window

    def end_of_stream(self) -> Window | None:
        """The upstream ended without finishing this choice: its last partial window, if any."""
        self.ended = True
        return self.windows.seal(final=True)

    def release(self) -> list[bytes]:
        """Pop the events that may reach the client now, in order."""
        out: list[bytes] = []
        approved = self.windows.approved
        if self.holdback and not (self.ended and approved >= self.windows.tokens):
            limit = approved - self.holdback  # the next window's context stays held until it is judged
        else:
            limit = approved + self.lead
        entries = self.entries
        while entries:
            entry = entries[0]
            if entry.finish:
                if approved < self.windows.tokens:
                    break
            elif entry.end > limit:
                break
            entry = entries.popleft()
            self.held_bytes -= len(entry.raw)
            out.append(self._masked(entry) if self.redactions else entry.raw)
        return out

    def redact(self, spans: list[Span]) -> None:
        """Mask these answer spans in the events still held (those released already cannot be).

        Spans are kept merged: a later window sees an earlier one's finding again through its context, maybe
        wider; overlapping spans become one, with the placeholder of the one that starts first."""
        self.redactions = merge_sorted(sorted(self.redactions + spans, key=lambda span: (span[0], -span[1])))

    def _masked(self, entry: Entry) -> bytes:
        a, b = entry.char_start, entry.char_end
        spans = [(max(s, a) - a, min(e, b) - a, repl if s >= a else "") for s, e, repl in self.redactions
                 if s < b and e > a]
        self.redactions = [span for span in self.redactions if span[1] > b]  # later events only need these
        return self.rewrite(entry.raw, spans) if spans and self.rewrite else entry.raw

    def drop(self) -> int:
        """Forget every event not yet released (cut, or the stream failed); returns how many."""
        dropped = len(self.entries)
        self.entries.clear()
        self.held_bytes = 0
        self.pending.clear()
        return dropped
