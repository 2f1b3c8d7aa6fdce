"""One choice of a streamed answer: its judges' progress and the upstream events held back until cleared."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from evaluators.spans import Span, merge_sorted
from proxy.elision import MAX_CONTENT_CHARS, ElidedText
from proxy.streaming.compaction import TextDelta, merge, text_field
from proxy.streaming.judges import IncrementalJudges
from proxy.streaming.windows import TokenWindows, Window, WindowQueue

#: the most text one merged event carries (compaction keeps release points this close together)
MERGED_CHARS = 256


@dataclass(slots=True)
class Entry:
    """One upstream event of this choice, as received, and where its text lies in the answer."""

    raw: bytes
    end: int  # tokens of this choice up to and including this event
    finish: bool  # carries the choice's finish_reason
    char_start: int = 0  # its text's place in the answer (characters)
    char_end: int = 0


class ChoiceStream:
    """Per-choice state: release order is upstream order; text is released only once its judges allow it.

    Two kinds of judge clear text (see ARCHITECTURE.md, "Streaming output moderation"):
    - `judges`, the incremental judges: the answer's characters before `judges.cleared`;
    - `windows`, the window judges: the characters before `windows.cleared` (approved windows less their
      last words), and tokens up to `windows.approved + lead`.
    `hold`: text waits for both (buffered mode); otherwise only the window judges' `lead` applies
    (one window in optimistic mode, unbounded in final mode). A finishing event is released only once the
    whole answer has been judged.
    """

    def __init__(self, index: int, windows: TokenWindows | None, judges: IncrementalJudges | None, lead: float,
                 hold: bool, keep_chars: int = MAX_CONTENT_CHARS,
                 rewrite: Callable[[bytes, list[Span]], bytes] | None = None) -> None:
        self.index = index
        self.windows = windows
        self.judges = judges
        self.lead = lead
        self.hold = hold
        self.pending = WindowQueue()  # windows waiting for the window judges (one in flight, one queued)
        self.entries: deque[Entry] = deque()
        self.finished = False  # upstream sent this choice's finish_reason
        self.ended = False  # no more text will come (finished, or the stream ended)
        self.cut = False
        self.held_bytes = 0  # of the events in `entries`
        self.chars = 0  # characters of the answer so far
        self.tokens = 0
        self.answer = ElidedText(keep_chars)  # what audit events show of the answer so far
        self.redactions: list[Span] = []  # masks from `redact` verdicts, applied as held events are released
        self.rewrite = rewrite  # masks spans of one event's text (the route's)

    def add(self, raw: bytes, text: str, finish: bool) -> Window | None:
        """Take one upstream event of this choice; return a window that is now ready for judgment."""
        start = self.chars
        window = None
        if text:
            self.chars = start + len(text)
            self.answer.append(text)
            if self.judges is not None:
                self.judges.pending.append(text)  # IncrementalJudges.add, for a non-empty text
            if self.windows is not None:
                window = self.windows.add(text)
                self.tokens = self.windows.tokens
        if finish:
            self.finished = self.ended = True
            window = self._seal_last(window)
        self.entries.append(Entry(raw, self.tokens, finish, start, self.chars))
        self.held_bytes += len(raw)
        return window

    def add_texts(self, raws: list[bytes], texts: list[str]) -> None:
        """`add` of each of these events in turn, for a run of text deltas that finish nothing, when no window
        judge counts them (one call, one append of their text)."""
        assert self.windows is None
        pos = start = self.chars
        tokens = self.tokens
        append = self.entries.append
        size = 0
        for raw, text in zip(raws, texts):
            end = pos + len(text)
            append(Entry(raw, tokens, False, pos, end))
            pos = end
            size += len(raw)
        self.held_bytes += size
        if pos > start:
            joined = "".join(texts)
            self.chars = pos
            self.answer.append(joined)  # the kept head and tail do not depend on how the text was cut
            if self.judges is not None:
                self.judges.pending.append(joined)

    def queue(self, window: Window) -> None:
        """A window for the window judges (after those queued before it)."""
        self.pending.push(window)

    def next_window(self) -> Window | None:
        """The next window to judge (None once the choice is cut or nothing waits); it is in flight until
        `window_judged`."""
        return None if self.cut else self.pending.take()

    def window_judged(self, window: Window, passed: bool) -> None:
        """The window judges' verdict on the window in flight: a window that passed clears its text."""
        self.pending.inflight = None
        if passed:
            assert self.windows is not None
            self.windows.approve(window)

    @property
    def window_idle(self) -> bool:
        """No window is being judged or waits for it."""
        return self.pending.idle

    def holding(self) -> str | None:
        """Which judges hold text back now: "windows" (the window judges have not cleared all that the
        incremental judges have), "scanners" (only the incremental judges), None (nothing held for judgment)."""
        if not self.entries or self.cut:
            return None
        judges, windows = self.judges, self.windows
        if windows is not None and windows.cleared < (judges.cleared if judges else self.chars):
            return "windows"
        if judges is not None and judges.cleared < self.chars:
            return "scanners"
        return None

    def seal_window(self) -> Window | None:
        """End the window being filled early (back-pressure): what is held now is judged as it stands."""
        return self.windows.seal() if self.windows is not None else None

    def scanner_seconds(self) -> list[tuple[str, float]]:
        """(name, seconds spent on this answer so far) per incremental judge."""
        return [(slot.name, slot.seconds) for slot in self.judges.slots] if self.judges is not None else []

    def window_context(self) -> str:
        """The approved text a window is judged after (its context)."""
        assert self.windows is not None
        return self.windows.context()

    def cut_off(self) -> int:
        """Stop this choice (a judge blocked it): nothing more of it reaches the client. Returns how many held
        events were dropped."""
        self.cut = True
        return self.drop()

    def end_of_stream(self) -> Window | None:
        """The upstream ended without finishing this choice: its last partial window, if any."""
        self.ended = True
        return self._seal_last(None)

    def _seal_last(self, window: Window | None) -> Window | None:
        if self.windows is None:
            return window
        last = self.windows.seal(final=True)
        if last is not None:
            return last
        if window is not None:
            window.final = True
        return window

    @property
    def judged(self) -> bool:
        """Every judge has judged the whole answer (it ended, every window passed, every scanner flushed)."""
        if not self.ended:
            return False
        if self.windows is not None and self.windows.approved < self.windows.tokens:
            return False
        return self.judges is None or (not self.judges.pending and self.judges.cleared >= self.chars)

    def release(self) -> list[bytes]:
        """Pop the events that may reach the client now, in order: up to the characters every holding judge
        cleared (`hold`: the incremental and window judges), else up to `lead` tokens past the last approved
        window; a finishing event once the whole answer is judged."""
        out: list[bytes] = []
        entries = self.entries
        if not entries:
            return out
        judged = self.ended and self.judged
        chars: float = math.inf
        tokens: float = math.inf
        if not judged:  # (a judged answer goes out whole)
            windows = self.windows
            if self.hold:
                if self.judges is not None:
                    chars = self.judges.cleared
                if windows is not None:
                    chars = min(chars, windows.cleared)
            elif windows is not None:
                tokens = windows.approved + self.lead
        while entries:
            entry = entries[0]
            if entry.finish:
                if not judged:
                    break
            elif entry.char_end > chars or entry.end > tokens:
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

    def compact(self) -> None:
        """Merge runs of held plain text events into one event each (see compaction.py)."""
        out: deque[Entry] = deque()
        run: list[tuple[Entry, TextDelta]] = []

        def close_run() -> None:
            if len(run) > 1:
                first, last = run[0][0], run[-1][0]
                out.append(Entry(merge([delta for _, delta in run]), last.end, False, first.char_start,
                                 last.char_end))
            else:
                out.extend(entry for entry, _ in run)
            run.clear()

        for entry in self.entries:
            delta = None if entry.finish else text_field(entry.raw)
            if delta is None or (run and (run[0][1][2] != delta[2] or
                                          entry.char_end - run[0][0].char_start > MERGED_CHARS)):
                close_run()
            if delta is None:
                out.append(entry)
            else:
                run.append((entry, delta))
        close_run()
        self.entries = out
        self.held_bytes = sum(len(e.raw) for e in out)

    def drop(self) -> int:
        """Forget every event not yet released (cut, or the stream failed); returns how many."""
        dropped = len(self.entries)
        self.entries.clear()
        self.held_bytes = 0
        self.pending.clear()
        return dropped
