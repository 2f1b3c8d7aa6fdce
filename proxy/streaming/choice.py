"""One choice of a streamed answer: its windows and the upstream events held back until judged."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from proxy.streaming.windows import TokenWindows, Window, WindowQueue


@dataclass(slots=True)
class Entry:
    """One upstream event of this choice, as received, and the text position it follows."""

    raw: bytes
    end: int  # tokens of this choice up to and including this event
    finish: bool  # carries the choice's finish_reason


class ChoiceStream:
    """Per-choice state: release order is upstream order; text is released only once judged (within `lead`).

    `lead` is how many tokens beyond the approved text may reach the client:
    0 in buffered mode, one window in optimistic mode, unbounded in final mode.
    A finishing event is released only when the whole answer has been judged.
    """

    def __init__(self, index: int, windows: TokenWindows, lead: float) -> None:
        self.index = index
        self.windows = windows
        self.lead = lead
        self.pending = WindowQueue()
        self.entries: deque[Entry] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.finished = False  # upstream sent this choice's finish_reason
        self.cut = False
        self.held_bytes = 0  # of the events in `entries`

    def add(self, raw: bytes, text: str, finish: bool) -> Window | None:
        """Take one upstream event of this choice; return a window that is now ready for judgment."""
        window = self.windows.add(text)
        if finish:
            self.finished = True
            last = self.windows.seal(final=True)
            if last is not None:
                window = last
            elif window is not None:
                window.final = True
        self.entries.append(Entry(raw, self.windows.tokens, finish))
        self.held_bytes += len(raw)
        return window

    def end_of_stream(self) -> Window | None:
        """The upstream ended without finishing this choice: its last partial window, if any."""
        return self.windows.seal(final=True)

    def release(self) -> list[bytes]:
        """Pop the events that may reach the client now, in order."""
        out: list[bytes] = []
        approved = self.windows.approved
        limit = approved + self.lead
        entries = self.entries
        while entries:
            entry = entries[0]
            if entry.finish:
                if approved < self.windows.tokens:
                    break
            elif entry.end > limit:
                break
            out.append(entries.popleft().raw)
            self.held_bytes -= len(out[-1])
        return out

    def drop(self) -> int:
        """Forget every event not yet released (cut, or the stream failed); returns how many."""
        dropped = len(self.entries)
        self.entries.clear()
        self.held_bytes = 0
        self.pending.clear()
        return dropped
