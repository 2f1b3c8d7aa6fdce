"""Token accounting and window scheduling for one streamed choice: pure state, no I/O.

Tokens: each upstream content delta counts as its whitespace-split words, at
least 1 for non-empty text. vLLM and OpenAI send about one token per delta, so
this is about one per delta; a server that packs many tokens into one delta is
counted by words, so a window stays about `chunk_size` tokens of text either way.
Windows end on delta boundaries (a delta is never split: buffered mode releases
the upstream's own events).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from proxy.elision import ElidedText


def count_tokens(text: str) -> int:
    """Approximate token count of one delta (see the module docstring)."""
    if not text:
        return 0
    return len(text.split()) or 1


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

    def merge(self, later: "Window") -> "Window":
        """This window followed by a later one, as one (windows that piled up while one was judged)."""
        return Window(self.start, later.end, self.parts + later.parts, later.final, self.char_start, later.char_end)


class TokenWindows:
    """Cuts one choice's text into windows of `chunk_size` tokens; remembers approved text for context.

    `chunk_size=None` makes a single window of the whole answer, sealed at the end (final mode).
    Approved text is kept for audit events up to `keep_chars` characters (head and tail, see proxy.elision).
    """

    def __init__(self, chunk_size: int | None, context_size: int = 0, keep_chars: int = 32_768) -> None:
        self.chunk_size = chunk_size
        self.context_size = context_size
        self.tokens = 0  # counted so far
        self.sealed = 0  # tokens already handed out in windows
        self.approved = 0  # tokens judged safe
        self.chars = 0  # characters of the answer so far
        self._open_chars = 0  # where the open window's text starts
        self._open: list[tuple[str, int]] = []
        self._context: deque[tuple[str, int]] = deque()
        self._context_tokens = 0
        self._approved_text = ElidedText(keep_chars)

    def add(self, text: str) -> Window | None:
        """Count a delta; return a window when this delta fills one."""
        n = count_tokens(text)
        if not n:
            return None
        self._open.append((text, n))
        self.tokens += n
        self.chars += len(text)
        if self.chunk_size is not None and self.tokens - self.sealed >= self.chunk_size:
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
        return window

    def context(self) -> str:
        """About the last `context_size` tokens of approved text (whole deltas: at least that many)."""
        return "".join(text for text, _ in self._context)

    def approve(self, window: Window) -> None:
        self.approved = window.end
        self._approved_text.append(window.text)
        if not self.context_size:
            return
        for part in window.parts:
            self._context.append(part)
            self._context_tokens += part[1]
        while self._context and self._context_tokens - self._context[0][1] >= self.context_size:
            self._context_tokens -= self._context.popleft()[1]

    def approved_answer(self) -> str:
        """The approved text so far (the whole answer once every window passed; a long one elided)."""
        return str(self._approved_text)

    def answer_through(self, window: Window) -> str:
        """The answer from its start through `window` (what an audit event shows; a long one elided)."""
        return str(self._approved_text) + window.text


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
