"""Processes the suite starts: CPU pinning, readiness, CPU time of a process tree, clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """`argv` under `taskset -c CPUS` (taskset execs, so the pid stays the program's)."""
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime+stime seconds) from /proc/PID/stat, None once the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_pids(root: int) -> list[int]:
    """`root` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None:
                children.setdefault(info[0], []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root: int) -> float:
    """User+system CPU seconds of a process and its live descendants (workers included)."""
    total = 0.0
    for pid in tree_pids(root):
        info = _stat(pid)
        if info is not None:
            total += info[1]
    return total


@dataclass
class Proc:
    """One started program (its own session, so a stop reaches its workers too)."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        """Signal the program and everything it started (its own process group)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace_s: float = 5.0) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGCONT)  # a paused program handles SIGTERM only once continued
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(grace_s)


@dataclass
class ProcGroup:
    """The processes of one benchmarked system; they are stopped together."""

    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], logdir: Path, *, cpus: str | None = None,
              env: dict[str, str] | None = None, cwd: str | Path | None = None) -> Proc:
        full = pinned(argv, cpus)
        log = logdir / f"{name}.log"
        with log.open("wb") as fh:
            popen = subprocess.Popen(full, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        proc = Proc(name, full, popen, log)
        self.procs.append(proc)
        return proc

    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds() for p in self.procs)

    def pause(self) -> None:
        """SIGSTOP: an idle system waiting its turn cannot take CPU from the one being measured."""
        for proc in self.procs:
            proc.signal(signal.SIGSTOP)

    def resume(self) -> None:
        for proc in self.procs:
            proc.signal(signal.SIGCONT)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


class NotReady(RuntimeError):
    """A started system never answered its readiness request."""


def wait_ready(url: str, body: dict, headers: dict[str, str], procs: Sequence[Proc], timeout_s: float = 60.0) -> None:
    """POST `body` to `url` until it answers 200; fail early when a process died."""
    data = json.dumps(body).encode()
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise NotReady(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    response.read()
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:300]!r}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in procs)
    raise NotReady(f"{url} not ready after {timeout_s:.0f} s ({last})\n{tails}")
