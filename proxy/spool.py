"""The audit write-ahead log: every event is appended here before it is sent, and trimmed once acknowledged.

Files in `spool_dir`: segments `{name}.{seq:06d}.spool` (JSON lines in order, then zeros up to the segment's
preallocated size) and `{name}.offset` ("seq offset": everything before that position is acknowledged by the
broker). `append` copies the lines into the segment through a shared memory map and returns: the bytes are in
the kernel's page cache, so a proxy killed at any moment afterwards loses nothing, and the copy takes no system
call (a write(2) per event would hand the GIL to the sender thread on every emit). fsync, which only matters
for an OS crash or power loss, runs on the sender's thread per policy (`always`: before each send, `batch`: at
most once a second, `never`), never on the caller's.

The sender reads from the acknowledged position, sends, and commits after the acks. Segments are rolled
when three quarters full and deleted once everything in them is acknowledged, so a log under steady load stays
small. On open, a torn last line (a crash mid-copy) is wiped and the waiting events are counted. JSON lines
never contain a NUL byte, so the end of the data is where the zeros start.

`append` may be called from any thread; `read`, `commit`, `maintain`, `open` and `close` belong to one owner
(the Kafka sink's sender thread). An exclusive `flock` keeps a second process out of the same directory (it
gets a pid-suffixed log and a warning).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

log = structlog.get_logger("guardstream.spool")

FsyncPolicy = Literal["always", "batch", "never"]
Position = tuple[int, int]  # (segment seq, byte offset)
_BATCH_FSYNC_S = 1.0
_READ_CHUNK = 1 << 20
_SEGMENT_RE = r"^{name}\.(\d{{6,}})\.spool$"


@dataclass(slots=True)
class _Segment:
    """The segment being written: its file, its map and where the data ends."""

    seq: int
    fd: int
    map: mmap.mmap
    end: int

    @property
    def capacity(self) -> int:
        return len(self.map)


class Spool:
    """Segmented append-only event log with a committed (acknowledged) position."""

    def __init__(self, directory: str | os.PathLike[str], name: str, *, fsync: FsyncPolicy = "batch",
                 max_bytes: int = 1 << 30, segment_bytes: int = 8 << 20) -> None:
        self.dir = Path(directory)
        self.name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        self.fsync = fsync
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.depth = 0  # events after the committed position
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}  # seq -> data bytes, every live segment
        self._committed: Position = (0, 0)
        self._w: _Segment | None = None
        self._sealed: list[_Segment] = []  # rolled by `append`, closed by the owner
        self._lockfd = -1
        self._rfds: dict[int, int] = {}
        self._dirty = False
        self._last_sync = time.monotonic()

    # -- paths and figures -------------------------------------------------------------------------------
    def segment_path(self, seq: int) -> Path:
        return self.dir / f"{self.name}.{seq:06d}.spool"

    @property
    def path(self) -> Path:
        """The segment being written."""
        return self.segment_path(self._w.seq if self._w else self._committed[0])

    @property
    def offset_path(self) -> Path:
        return self.dir / f"{self.name}.offset"

    @property
    def size_bytes(self) -> int:
        """Bytes not yet acknowledged."""
        return sum(self._sizes.values()) - self._committed[1]

    @property
    def is_open(self) -> bool:
        return self._w is not None

    # -- open / close --------------------------------------------------------------------------------
    def open(self) -> None:
        """Lock the directory, find the segments, wipe a torn tail, count what is waiting."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lockfd = os.open(self.dir / f"{self.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lockfd)
            fallback = f"{self.name}.{os.getpid()}"
            log.warning("spool_locked_by_another_process", dir=str(self.dir), using=fallback,
                        hint="give each proxy instance its own audit.spool_dir")
            self.name = fallback
            self._lockfd = os.open(self.dir / f"{self.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        pattern = re.compile(_SEGMENT_RE.format(name=re.escape(self.name)))
        seqs = sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := pattern.match(p.name)))
        cseq, coff = self._read_offset()
        for seq in [s for s in seqs if s < cseq]:  # acknowledged; the deletion was interrupted by a crash
            self.segment_path(seq).unlink(missing_ok=True)
        seqs = [s for s in seqs if s >= cseq] or [cseq]
        if seqs[0] != cseq:
            cseq, coff = seqs[0], 0
        for seq in seqs:
            self._sizes[seq] = _data_end(self.segment_path(seq))
        self._committed = (cseq, min(coff, self._sizes[cseq]))
        self._w = self._map(seqs[-1], self._sizes[seqs[-1]])
        self.depth = sum(self._count_lines(seq, self._committed[1] if seq == cseq else 0) for seq in seqs)
        if self.depth:
            log.info("spool_found", dir=str(self.dir), events=self.depth, segments=len(seqs))

    def _map(self, seq: int, end: int, at_least: int = 0) -> _Segment:
        fd = os.open(self.segment_path(seq), os.O_RDWR | os.O_CREAT, 0o600)
        capacity = max(self.segment_bytes, end + at_least, os.fstat(fd).st_size)
        os.ftruncate(fd, capacity)  # sparse: only written pages take disk space
        return _Segment(seq, fd, mmap.mmap(fd, capacity), end)

    def close(self) -> None:
        with self._lock:
            segment, self._w = self._w, None
            if segment is not None:
                self._sealed.append(segment)
        self._close_sealed(sync=self.fsync != "never" and self._dirty)
        for fd in self._rfds.values():
            os.close(fd)
        self._rfds.clear()
        if self._lockfd >= 0:
            os.close(self._lockfd)  # releases the flock
            self._lockfd = -1

    def _read_offset(self) -> Position:
        try:
            seq, _, off = self.offset_path.read_text().strip().partition(" ")
            return (int(seq), int(off)) if off else (0, int(seq or 0))
        except (OSError, ValueError):
            return (0, 0)

    def _count_lines(self, seq: int, start: int) -> int:
        fd = self._reader(seq)
        count, pos, end = 0, start, self._sizes[seq]
        while pos < end:
            block = os.pread(fd, min(_READ_CHUNK, end - pos), pos)
            if not block:
                break
            count += block.count(b"\n")
            pos += len(block)
        return count

    # -- write (any thread) ----------------------------------------------------------------------------
    def append(self, lines: list[bytes]) -> int:
        """Append complete lines (each ending in a newline); returns how many fitted under `max_bytes`."""
        if not lines:
            return 0
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        written = len(lines)
        with self._lock:
            segment = self._w
            if segment is None:
                raise OSError("spool is closed")
            room = self.max_bytes - self.size_bytes
            if len(data) > room:
                kept, total = [], 0
                for line in lines:
                    if total + len(line) > room:
                        break
                    kept.append(line)
                    total += len(line)
                data, written = b"".join(kept), len(kept)
                if not written:
                    return 0
            if segment.end + len(data) > segment.capacity:
                segment = self._roll_locked(len(data))
            end = segment.end + len(data)
            segment.map[segment.end:end] = data
            segment.end = self._sizes[segment.seq] = end
            self.depth += written
            self._dirty = True
            return written

    def _roll_locked(self, at_least: int = 0) -> _Segment:
        assert self._w is not None
        old = self._w
        self._sealed.append(old)
        self._w = self._map(old.seq + 1, 0, at_least)
        self._sizes[self._w.seq] = 0
        return self._w

    # -- the owner's side ------------------------------------------------------------------------------
    def _reader(self, seq: int) -> int:
        fd = self._rfds.get(seq)
        if fd is None:
            fd = self._rfds[seq] = os.open(self.segment_path(seq), os.O_RDONLY)
        return fd

    def read(self, max_events: int) -> tuple[list[bytes], list[Position]]:
        """Up to `max_events` lines from the committed position, with the end position of each line."""
        seq, pos = self._committed
        end = self._sizes.get(seq, 0)
        if pos >= end:
            with self._lock:
                if self._w is not None and seq == self._w.seq and pos >= self._w.end:
                    self.depth = 0  # nothing left in the files: trust them over the count
            return [], []
        fd = self._reader(seq)
        want = _READ_CHUNK
        while True:
            block = os.pread(fd, min(want, end - pos), pos)
            cut = block.rfind(b"\n") + 1
            if cut or pos + len(block) >= end:
                break
            want *= 2  # one line longer than the block: read more
        lines = block[:cut].splitlines(keepends=True)[:max_events]
        ends: list[Position] = []
        for line in lines:
            pos += len(line)
            ends.append((seq, pos))
        return lines, ends

    def commit(self, position: Position, events: int) -> None:
        """Everything before `position` is acknowledged; segments acknowledged in full are deleted."""
        seq, off = position
        drop: list[int] = []
        with self._lock:
            self.depth = max(0, self.depth - events)
            wseq = self._w.seq if self._w is not None else seq
            while seq != wseq and off >= self._sizes[seq]:  # a sealed segment, all acknowledged
                drop.append(seq)
                del self._sizes[seq]
                seq, off = seq + 1, 0
            self._committed = (seq, off)
        self._close_sealed(sync=self.fsync != "never")
        for old in drop:
            fd = self._rfds.pop(old, None)
            if fd is not None:
                os.close(fd)
            self.segment_path(old).unlink(missing_ok=True)
        self._write_offset(self._committed)

    def maintain(self) -> None:
        """Sender loop housekeeping: step past an acknowledged segment, roll a filling one, fsync per policy."""
        seq, off = self._committed
        if self._w is not None and seq != self._w.seq and off >= self._sizes.get(seq, 0):
            self.commit(self._committed, 0)
        if self._w is not None and self._w.end >= self.segment_bytes * 3 // 4:
            with self._lock:
                self._roll_locked()
        self._close_sealed(sync=self.fsync != "never")
        if self._dirty and (self.fsync == "always" or
                            (self.fsync == "batch" and time.monotonic() - self._last_sync >= _BATCH_FSYNC_S)):
            self.sync()

    def sync(self) -> None:
        """Flush the segment being written to disk."""
        self._dirty = False
        segment = self._w
        if segment is not None:
            try:
                segment.map.flush()
            except (ValueError, OSError):  # closed under us by close(): synced there
                pass
        self._last_sync = time.monotonic()

    def _close_sealed(self, sync: bool) -> None:
        """Rolled segments: flush (per policy), unmap, cut the preallocated zeros, close."""
        with self._lock:
            sealed, self._sealed = self._sealed, []
        for segment in sealed:
            if sync:
                segment.map.flush()
            segment.map.close()
            os.ftruncate(segment.fd, segment.end)
            os.close(segment.fd)

    def _write_offset(self, position: Position) -> None:
        tmp = self.offset_path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.write(f"{position[0]} {position[1]}\n")
            if self.fsync == "always":
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, self.offset_path)

    def pending_bytes(self) -> bytes:
        """Every line not yet acknowledged, in order (for tests and tools; reads the files)."""
        seq, off = self._committed
        return b"".join(os.pread(self._reader(s), self._sizes[s], 0)[off if s == seq else 0:]
                        for s in sorted(self._sizes) if s >= seq)


def _data_end(path: Path) -> int:
    """Where the complete lines of a segment end; a torn last line (a crash mid-copy) is wiped with zeros."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        pos = size
        while pos > 0:  # skip the preallocated zeros, backwards
            step = min(_READ_CHUNK, pos)
            block = os.pread(fd, step, pos - step).rstrip(b"\0")
            if block:
                pos = pos - step + len(block)
                break
            pos -= step
        data = pos
        end = data
        while end > 0:  # the last newline before that
            step = min(_READ_CHUNK, end)
            nl = os.pread(fd, step, end - step).rfind(b"\n")
            if nl >= 0:
                end = end - step + nl + 1
                break
            end -= step
        if end != data:
            log.warning("spool_torn_tail_cut", path=str(path), bytes=data - end)
            os.pwrite(fd, b"\0" * (data - end), end)
        return end
    finally:
        os.close(fd)
