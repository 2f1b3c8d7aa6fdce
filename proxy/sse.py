"""Server-sent events: an incremental parser over upstream bytes and the encoder for what we send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.jsonio import dumps


@dataclass(slots=True)
class SSEEvent:
    """One event as received: its raw bytes (relayed as is) and its joined `data` field, if any."""

    raw: bytes
    data: str | None

    @property
    def is_done(self) -> bool:
        return self.data is not None and self.data.strip() == "[DONE]"


class SSEParser:
    """Splits a byte stream into events at blank lines; tolerant of \\r\\n, \\r and of events split across reads
    (a \\r at the end of a read waits for the next one: it may be half of a \\r\\n).

    `feed` raises ValueError, and nothing else, when an event grows past `max_event_bytes`."""

    def __init__(self, max_event_bytes: int = 4 * 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._max = max_event_bytes
        self._cr = False  # the buffer ends with a \\r not yet normalised

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return [SSEEvent(raw, data_of(raw)) for raw in self.feed_raw(chunk)]

    def feed_raw(self, chunk: bytes) -> list[bytes]:
        """`feed`, each event as its raw bytes only (`data_of` reads its data when it is needed)."""
        if self._buffer or self._cr or b"\r" in chunk:
            self._buffer += chunk
            if self._cr or b"\r" in chunk:
                self._normalise(final=False)
            data = bytes(self._buffer)
        else:  # the usual read: whole events, nothing left over from the last one
            data = chunk
        events: list[bytes] = []
        pos = 0
        find = data.find
        while (end := find(b"\n\n", pos)) >= 0:
            events.append(data[pos: end + 2] if pos or end + 2 < len(data) else data)
            pos = end + 2
        if pos or data is not chunk:
            self._buffer[:] = data[pos:]
        elif data:  # no event complete yet
            self._buffer += data
        if len(self._buffer) > self._max:
            raise ValueError(f"SSE event larger than {self._max} bytes")
        return events

    def _normalise(self, final: bool) -> None:
        keep = not final and self._buffer.endswith(b"\r")
        body = bytes(self._buffer[:-1] if keep else self._buffer)
        self._buffer[:] = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if keep else b"")
        self._cr = keep

    def flush(self) -> list[SSEEvent]:
        """Whatever is left when the stream ends (an event without its final blank line)."""
        return [SSEEvent(raw, data_of(raw)) for raw in self.flush_raw()]

    def flush_raw(self) -> list[bytes]:
        """`flush`, each event as its raw bytes only."""
        if self._cr:
            self._normalise(final=True)
        events: list[bytes] = []
        while (end := self._buffer.find(b"\n\n")) >= 0:  # a trailing \\r completed a blank line
            events.append(bytes(self._buffer[: end + 2]))
            del self._buffer[: end + 2]
        if self._buffer.strip():
            events.append(bytes(self._buffer).rstrip(b"\n") + b"\n\n")
        self._buffer.clear()
        return events


def data_of(raw: bytes) -> str | None:
    """The joined `data` field of one raw event (None when it has none: a comment, say)."""
    if raw.startswith(b"data: ") and raw.count(b"\n") == 2:  # one data line: what LLM servers send
        return raw[6:-2].decode("utf-8", "replace")
    lines = []
    for line in raw.decode("utf-8", "replace").split("\n"):
        if line.startswith("data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(" ") else value)
    return "\n".join(lines) if lines else None


def encode_event(payload: Any) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"
