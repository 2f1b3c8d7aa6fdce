"""Windows for the window judges (learned models) of one streamed choice: pure state, no I/O.

Tokens: each upstream content delta counts as its whitespace-split words, at
least 1 for non-empty text. vLLM and OpenAI send about one token per delta, so
this is about one per delta; a server that packs many tokens into one delta is
counted by words, so a window stays about its size in tokens of text either way.
Windows end on delta boundaries (a delta is never split: the relay releases
the upstream's own events).

Window sizes grow: the first window is `first_size` tokens (a few: time to first
token is about one evaluator call after them), each next one twice the last, up
to `chunk_size`, so a long answer costs about one call per `chunk_size` tokens.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


def count_tokens(text: str) -> int:
    """Approximate token count of one delta (see the module docstring)."""
    if not text:
        return 0
    return len(text.split()) or 1


def words_start(text: str, words: int) -> int:
    """Where the last `words` words of `text` begin (a word is a run of non-whitespace; an unfinished last word
    counts as one, and the whitespace after a word goes with it)."""
    i = len(text)
    for _ in range(words):
        while i > 0 and text[i - 1].isspace():
            i -= 1
        while i > 0 and not text[i - 1].isspace():
            i -= 1
        if i == 0:
            break
    return i


@dataclass(slots=True)
class Window:
    """Tokens [start, end) of one choice's answer, sent for judgment as one unit."""

    start: int
    end: int
    parts: list[tuple[str, int]] = field(default_factory=list)  # (delta text, tokens)
    final: bool = False
    char_start: int = 0  # where its text starts in the choice's answer (characters)
    char_end: int = 0

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.parts)

    def merge(self, later: Window) -> Window:
        """This window followed by a later one, as one (windows that piled up while one was judged)."""
        return Window(self.start, later.end, self.parts + later.parts, later.final, self.char_start, later.char_end)


class TokenWindows:
    """Cuts one choice's text into growing windows; remembers approved text for context and holdback.

    `chunk_size=None` makes a single window of the whole answer, sealed at the end (final mode).
    After a window is approved, `cleared` is how much of the answer the window judges let the client have: all
    of it but the last words (half the window's tokens, at most `context_size`), which the next window sees
    again as context. Something unsafe split across two windows is so judged whole before any of it is
    released, and an unfinished word at a window's end is never released on its own.
    """

    def __init__(self, chunk_size: int | None, context_size: int = 0, first_size: int | None = None) -> None:
        self.chunk_size = chunk_size
        self.context_size = context_size
        self.size = min(first_size or chunk_size, chunk_size) if chunk_size is not None else None
        self.tokens = 0  # counted so far
        self.sealed = 0  # tokens already handed out in windows
        self.approved = 0  # tokens judged safe
        self.chars = 0  # characters of the answer so far
        self.cleared = 0  # characters the window judges released (see the class docstring)
        self._open_chars = 0  # where the open window's text starts
        self._open: list[tuple[str, int]] = []
        self._context: deque[tuple[str, int]] = deque()
        self._context_tokens = 0

    def add(self, text: str) -> Window | None:
        """Count a delta; return a window when this delta fills one."""
        n = count_tokens(text)
        if not n:
            return None
        self._open.append((text, n))
        self.tokens += n
        self.chars += len(text)
        if self.size is not None and self.tokens - self.sealed >= self.size:
            return self.seal()
        return None

    def seal(self, final: bool = False) -> Window | None:
        """Hand out the open (partial) window; None when it holds no text."""
        if not self._open:
            return None
        window = Window(self.sealed, self.tokens, self._open, final, self._open_chars, self.chars)
        self._open = []
        self.sealed = self.tokens
        self._open_chars = self.chars
        if self.size is not None and self.chunk_size is not None:
            self.size = min(self.size * 2, self.chunk_size)
        return window

    def context(self) -> str:
        """About the last `context_size` tokens of approved text (whole deltas: at least that many)."""
        return "".join(text for text, _ in self._context)

    def approve(self, window: Window) -> None:
        context = self.context()
        self.approved = window.end
        text = context + window.text
        held = min(self.context_size, max(1, (window.end - window.start) // 2)) if self.context_size else 0
        self.cleared = max(self.cleared, window.char_end - len(text) + words_start(text, held))
        if not self.context_size:
            return
        for part in window.parts:
            self._context.append(part)
            self._context_tokens += part[1]
        while self._context and self._context_tokens - self._context[0][1] >= self.context_size:
            self._context_tokens -= self._context.popleft()[1]


class WindowQueue:
    """At most one window being judged and one queued; windows that pile up merge into the queued one."""

    def __init__(self) -> None:
        self.inflight: Window | None = None
        self.queued: Window | None = None
        self.pushed = 0  # windows handed in (before merging)

    def push(self, window: Window) -> None:
        self.pushed += 1
        self.queued = window if self.queued is None else self.queued.merge(window)

    def take(self) -> Window | None:
        """The next window to judge (it becomes the one in flight), or None when idle."""
        self.inflight, self.queued = self.queued, None
        return self.inflight

    def clear(self) -> None:
        self.inflight = self.queued = None

    @property
    def idle(self) -> bool:
        return self.inflight is None and self.queued is None
