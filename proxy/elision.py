"""Keeping long texts within a size: the head and the tail kept, the middle replaced by a marker.

Audit events carry prompts and answers for reviewers; a 4 MB prompt or a long streamed answer must not make
an event Kafka refuses (1 MB by default) nor keep megabytes per stream in memory. Reviewers see where text
was left out: the marker says how many characters.
"""

from __future__ import annotations

from collections import deque

#: characters of prompt and answer text one audit event keeps by default (`audit.max_content_chars`): an event
#: stays under Kafka's 1 MB message limit
MAX_CONTENT_CHARS = 32_768
#: share of a kept text taken from its head; the rest comes from its tail (where a streamed answer was judged)
HEAD_SHARE = 0.25


def marker(elided: int) -> str:
    return f"\n[... {elided} characters elided ...]\n"


def elide(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its head and tail around a marker (about `limit` long)."""
    if len(text) <= limit:
        return text
    head = int(limit * HEAD_SHARE)
    tail = max(0, limit - head)
    return text[:head] + marker(len(text) - head - tail) + (text[-tail:] if tail else "")


def fit(texts: list[str | None], budget: int) -> list[str | None]:
    """Elide the longest texts so that together they keep about `budget` characters.

    Water-filling: texts shorter than an equal share are kept whole; the long ones share what is left equally.
    """
    sizes = [len(t) for t in texts if t]
    if sum(sizes) <= budget:
        return texts
    share = budget
    for count, size in enumerate(sorted(sizes)):
        share = budget // (len(sizes) - count)
        if size > share:
            break
        budget -= size
    return [elide(t, share) if t else t for t in texts]


class ElidedText:
    """A text built by appending pieces that keeps at most about `limit` characters: head and tail.

    `str(self)` is what `elide` would make of the whole text, without the whole text ever being held.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._head_limit = int(limit * HEAD_SHARE)
        self._tail_limit = limit - self._head_limit
        self._head: list[str] = []
        self._head_len = 0
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self.length = 0  # characters appended in all

    def append(self, piece: str) -> None:
        self.length += len(piece)
        if self._head_len + len(piece) <= self._head_limit and not self._tail:  # the usual: the head has room
            self._head.append(piece)
            self._head_len += len(piece)
            return
        if self._head_len < self._head_limit and not self._tail:
            room = self._head_limit - self._head_len
            self._head.append(piece[:room])
            self._head_len += min(room, len(piece))
            piece = piece[room:]
        if not piece:
            return
        self._tail.append(piece)
        self._tail_len += len(piece)
        while self._tail and self._tail_len - len(self._tail[0]) >= self._tail_limit:
            self._tail_len -= len(self._tail.popleft())

    def __str__(self) -> str:
        if self.length <= self.limit:
            return "".join(self._head) + "".join(self._tail)
        tail = "".join(self._tail)[-self._tail_limit:] if self._tail_limit else ""
        return "".join(self._head) + marker(self.length - self._head_len - len(tail)) + tail
