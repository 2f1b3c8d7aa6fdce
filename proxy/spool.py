"""The audit spool: an append-only JSONL file of events the broker has not acknowledged yet.

One file per topic in `spool_dir` (`{topic}.spool`) plus `{topic}.spool.offset`, the byte offset up to
which events were replayed and acknowledged. Events are appended at the end and replayed from the
offset, in order; the file is truncated only once everything in it has been acknowledged. It survives
a restart: a crash mid-append leaves at most a partial last line, which is cut off on open.

Not thread-safe: the Kafka sink's sender thread is its only user. An exclusive `flock` keeps a second
process on the same directory out (it gets a pid-suffixed file and a warning).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path
from typing import Literal

import structlog

log = structlog.get_logger("guardstream.spool")

FsyncPolicy = Literal["always", "batch", "never"]
_BATCH_FSYNC_S = 1.0
_READ_CHUNK = 1 << 20


class Spool:
    """Append-only event file with a committed replay offset."""

    def __init__(self, directory: str | os.PathLike[str], name: str, *, fsync: FsyncPolicy = "batch",
                 max_bytes: int = 1 << 30) -> None:
        self.dir = Path(directory)
        self.name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        self.fsync = fsync
        self.max_bytes = max_bytes
        self.path = self.dir / f"{self.name}.spool"
        self.depth = 0  # events after the committed offset
        self._offset = 0  # committed (replayed and acknowledged) byte offset
        self._size = 0
        self._wfd = -1
        self._rfh = None  # type: ignore[var-annotated]
        self._dirty = False
        self._last_sync = time.monotonic()

    @property
    def offset_path(self) -> Path:
        return self.path.with_name(self.path.name + ".offset")

    # -- open / close --------------------------------------------------------------------------------
    def open(self) -> None:
        """Open (creating) the spool, lock it, cut a torn last line, count what is waiting."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._wfd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(self._wfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._wfd)
            fallback = self.path.with_name(f"{self.name}.{os.getpid()}.spool")
            log.warning("spool_locked_by_another_process", path=str(self.path), using=str(fallback),
                        hint="give each proxy instance its own audit.spool_dir")
            self.path = fallback
            self._wfd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(self._wfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._size = self._cut_torn_tail()
        self._offset = self._read_offset()
        if self._offset > self._size:  # truncated after a full replay, offset not yet reset
            self._offset = 0
        self._rfh = open(self.path, "rb")
        self.depth = self._count_lines(self._offset)
        if self.depth:
            log.info("spool_found", path=str(self.path), events=self.depth)

    def close(self) -> None:
        if self._wfd >= 0:
            if self._dirty and self.fsync != "never":
                os.fsync(self._wfd)
            os.close(self._wfd)  # releases the flock
            self._wfd = -1
        if self._rfh is not None:
            self._rfh.close()
            self._rfh = None

    def _cut_torn_tail(self) -> int:
        size = os.fstat(self._wfd).st_size
        if size == 0:
            return 0
        with open(self.path, "rb") as fh:
            pos = size
            while pos > 0:
                step = min(_READ_CHUNK, pos)
                fh.seek(pos - step)
                block = fh.read(step)
                nl = block.rfind(b"\n")
                if nl >= 0:
                    end = pos - step + nl + 1
                    break
                pos -= step
            else:
                end = 0
        if end != size:
            log.warning("spool_torn_tail_cut", path=str(self.path), bytes=size - end)
            os.ftruncate(self._wfd, end)
        return end

    def _read_offset(self) -> int:
        try:
            return int(self.offset_path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _count_lines(self, start: int) -> int:
        assert self._rfh is not None
        self._rfh.seek(start)
        count = 0
        while block := self._rfh.read(_READ_CHUNK):
            count += block.count(b"\n")
        return count

    # -- write -----------------------------------------------------------------------------------------
    def append(self, lines: list[bytes]) -> int:
        """Append complete lines (each ending in a newline); returns how many fitted under `max_bytes`."""
        if not lines:
            return 0
        room = self.max_bytes - self._size
        data = b"".join(lines)
        written = len(lines)
        if len(data) > room:
            kept, total = [], 0
            for line in lines:
                if total + len(line) > room:
                    break
                kept.append(line)
                total += len(line)
            data, written = b"".join(kept), len(kept)
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._wfd, view)
                view = view[n:]
        except OSError:
            os.ftruncate(self._wfd, self._size)  # no half-written line in front of the next append
            raise
        self._size += len(data)
        self.depth += written
        self._dirty = True
        self._maybe_sync(force=self.fsync == "always")
        return written

    def _maybe_sync(self, force: bool = False) -> None:
        if not self._dirty or self.fsync == "never":
            return
        if force or time.monotonic() - self._last_sync >= _BATCH_FSYNC_S:
            os.fsync(self._wfd)
            self._dirty = False
            self._last_sync = time.monotonic()

    def tick(self) -> None:
        """Called from the sender loop: the `batch` policy syncs at most once a second."""
        self._maybe_sync()

    # -- replay ----------------------------------------------------------------------------------------
    def read(self, max_events: int) -> tuple[list[bytes], list[int]]:
        """Up to `max_events` lines from the committed offset, with the end offset of each line."""
        assert self._rfh is not None
        self._rfh.seek(self._offset)
        lines: list[bytes] = []
        ends: list[int] = []
        pos = self._offset
        while len(lines) < max_events and pos < self._size:
            line = self._rfh.readline()
            if not line.endswith(b"\n"):
                break
            pos += len(line)
            lines.append(line)
            ends.append(pos)
        return lines, ends

    def commit(self, end_offset: int, events: int) -> None:
        """Everything before `end_offset` is acknowledged; reset the file once it is all replayed."""
        self._offset = end_offset
        self.depth = max(0, self.depth - events)
        if self._offset >= self._size:
            self._reset()
        else:
            self._write_offset(self._offset)

    def _reset(self) -> None:
        os.ftruncate(self._wfd, 0)
        if self.fsync != "never":
            os.fsync(self._wfd)
        self._size = self._offset = self.depth = 0
        self._dirty = False
        self._write_offset(0)

    def _write_offset(self, offset: int) -> None:
        tmp = self.offset_path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.write(f"{offset}\n")
            if self.fsync == "always":
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, self.offset_path)

    @property
    def size_bytes(self) -> int:
        return self._size
