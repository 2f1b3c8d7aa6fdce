"""Kafka audit sink: events to a topic (key = request id), through an on-disk write-ahead log.

`emit` appends the event to the log (`proxy/spool.py`) before it returns, on the caller's thread: a proxy
killed at any moment afterwards, with the broker up or down, loses nothing. kafka-python is synchronous, so
everything Kafka happens on one dedicated sender thread, which reads the log from the acknowledged position,
sends a chunk (acks=all, idempotent, compressed), waits for the acks and commits the position. Records not
acknowledged within `delivery_timeout_ms` mean the broker is away: the producer is dropped, events keep
accumulating in the log, a background connect attempt runs with backoff, and once connected the sender goes
on from the acknowledged position. A log left by an earlier process is sent first after a restart.

Order is kept per partition (i.e. per request id), as Kafka defines it. Delivery is at least once: a chunk
whose acknowledgement was lost is sent again, and consumers dedupe on `event_id`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog
from kafka.errors import MessageSizeTooLargeError

from proxy.config import AuditConfig, ConfigError
from proxy.metrics import AUDIT_BROKER_UP, AUDIT_EVENTS, AUDIT_SPOOL_DEPTH
from proxy.spool import FsyncPolicy, Spool

log = structlog.get_logger("guardstream.audit")

_Item = tuple[bytes, bytes]  # (key, value)


def kafka_record(event: dict[str, Any]) -> _Item:
    """Kafka key (request id) and value (compact JSON, one line) of an event."""
    value = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
    return str(event.get("request_id", "")).encode("utf-8"), value


def _key_of(line: bytes) -> bytes:
    return str(json.loads(line).get("request_id", "")).encode("utf-8")


class KafkaAuditSink:
    """Audit events to Kafka through a write-ahead log. See the module docstring.

    `counts`: emitted (in the log), sent (acknowledged), replayed (acknowledged while catching up after an
    outage or a restart), spooled (emitted while the broker was unreachable), dropped (log full or closed,
    or an event the broker can never take).
    """

    def __init__(self, bootstrap: str, topic: str, *, spool_dir: str | Path = "var/spool",
                 spool_fsync: FsyncPolicy = "batch", spool_max_mb: int = 1024, compression: str = "gzip",
                 delivery_timeout_ms: int = 5000, flush_timeout_s: float = 5.0,
                 security_protocol: str = "PLAINTEXT", ssl_cafile: str | None = None,
                 max_pending: int = 100_000, batch_size: int = 1000, linger_ms: int = 5,
                 reconnect_max_s: float = 5.0, segment_mb: int = 64) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._spool = Spool(spool_dir, topic, fsync=spool_fsync, max_bytes=spool_max_mb << 20,
                            segment_bytes=segment_mb << 20)
        self._compression = None if compression == "none" else compression
        self._delivery_timeout_ms = delivery_timeout_ms
        self._flush_timeout_s = flush_timeout_s
        self._security = {"security_protocol": security_protocol, "ssl_cafile": ssl_cafile}
        self._max_pending = max_pending
        self._batch_size = batch_size
        self._linger_ms = linger_ms
        self._reconnect_max_s = reconnect_max_s

        self._early: list[bytes] = []  # emitted before start() opened the log
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._close_deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._closed = False
        self._catching_up = False  # acks count as "replayed" until the log is drained

        self._producer: Any = None
        self._connector = ThreadPoolExecutor(1, thread_name_prefix="audit-kafka-connect")
        self._connecting: Future[Any] | None = None
        self._next_connect = 0.0
        self._backoff = 0.25
        self._last_error: str | None = None
        self.counts = {"emitted": 0, "sent": 0, "spooled": 0, "replayed": 0, "dropped": 0}
        self._metric = {outcome: AUDIT_EVENTS.labels(outcome) for outcome in self.counts}

    @classmethod
    def from_config(cls, cfg: AuditConfig) -> KafkaAuditSink:
        assert cfg.kafka_bootstrap
        return cls(cfg.kafka_bootstrap, cfg.topic, spool_dir=cfg.spool_dir, spool_fsync=cfg.spool_fsync,
                   spool_max_mb=cfg.spool_max_mb, compression=cfg.compression,
                   delivery_timeout_ms=cfg.delivery_timeout_ms, flush_timeout_s=cfg.flush_timeout_s,
                   security_protocol=cfg.security_protocol, ssl_cafile=cfg.ssl_cafile)

    # -- the event loop side -----------------------------------------------------------------------------
    @property
    def destination(self) -> str:
        return f"kafka:{self.bootstrap}/{self.topic} (write-ahead log: {self._spool.dir})"

    def emit(self, event: dict[str, Any]) -> None:
        """Append the event to the log, then wake the sender. Never raises; blocks only for a write(2)."""
        try:
            if self._closed:
                self._count("dropped")
                return
            line = kafka_record(event)[1] + b"\n"
            if not self._spool.is_open:
                if len(self._early) >= self._max_pending:
                    self._count("dropped")
                    return
                self._early.append(line)
            elif not self._spool.append([line]):
                log.error("spool_full_dropping", limit_bytes=self._spool.max_bytes)
                self._count("dropped")
                return
            self._count("emitted")
            if self._producer is None:
                self._count("spooled")
            if not self._wake.is_set():
                self._wake.set()
        except Exception as exc:  # noqa: BLE001 - auditing must never break a request
            log.error("audit_emit_failed", error=f"{type(exc).__name__}: {exc}")
            self._count("dropped")

    async def start(self) -> None:
        """Open the log (a config error when the directory is unusable) and start the sender."""
        if self._thread is not None:
            return
        try:
            await asyncio.to_thread(self._open_spool)
        except OSError as exc:
            raise ConfigError(f"audit.spool_dir: cannot use {self._spool.dir} for the audit log: {exc}") from None
        self._thread = threading.Thread(target=self._run, name="audit-kafka-sender", daemon=True)
        self._thread.start()

    def _open_spool(self) -> None:
        self._spool.open()
        early, self._early = self._early, []
        self._spool.append(early)
        self._catching_up = self._spool.depth > 0
        AUDIT_SPOOL_DEPTH.set(self._spool.depth)

    async def close(self) -> None:
        """Send what is in the log (bounded by `flush_timeout_s`); the rest waits there for the next start."""
        if self._closed:
            return
        self._closed = True
        self._close_deadline = time.monotonic() + self._flush_timeout_s
        if self._thread is None:
            try:
                await self.start()
            except ConfigError:
                return
        self._stop.set()
        self._wake.set()
        assert self._thread is not None
        await asyncio.to_thread(self._thread.join, self._flush_timeout_s + 15)

    def state(self) -> dict[str, Any]:
        up = self._producer is not None
        return {"backend": "kafka", "ok": up, "broker_up": up, "topic": self.topic, "bootstrap": self.bootstrap,
                "mode": "direct" if up else "spooling",
                "spool_depth": self._spool.depth, "spool_bytes": self._spool.size_bytes,
                "spool_path": str(self._spool.path), "pending": self._spool.depth + len(self._early),
                "last_error": self._last_error, **self.counts}

    def _count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.counts[outcome] += n
            self._metric[outcome].inc(n)

    # -- the sender thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        AUDIT_BROKER_UP.set(0)
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    self._poll_connect()
                    busy = self._producer is not None and self._spool.depth > 0 and self._send_chunk()
                    self._spool.maintain()
                except Exception:  # pragma: no cover - a bug must not stop auditing: reset and go on
                    log.exception("audit_sender_error")
                    self._drop_producer()
                    busy = False
                AUDIT_SPOOL_DEPTH.set(self._spool.depth)
                if not busy:
                    self._wake.wait(0.1 if self._producer is None else 0.5)
            self._shutdown()
        except Exception:  # pragma: no cover - last resort at shutdown: the log keeps everything
            log.exception("audit_shutdown_error")
        finally:
            self._spool.close()
            AUDIT_SPOOL_DEPTH.set(self._spool.depth)

    def _send_chunk(self) -> bool:
        """Send the next chunk of the log and commit what was acknowledged; False when nothing was."""
        if self._spool.fsync == "always":
            self._spool.maintain()  # fsync before anything leaves the machine
        lines, ends = self._spool.read(self._batch_size)
        if not lines:
            self._spool.maintain()
            return False
        items: list[_Item | None] = []
        for line in lines:
            try:
                items.append((_key_of(line), line[:-1]))
            except (ValueError, AttributeError):
                log.error("spool_corrupt_line_skipped", bytes=len(line))
                items.append(None)
        sent = iter(self._send_and_wait([it for it in items if it is not None]))
        status = [next(sent) if it is not None else _DROP for it in items]
        acked = status.index(_RETRY) if _RETRY in status else len(status)  # stop at the first unacknowledged
        if acked:
            self._spool.commit(ends[acked - 1], acked)
            self._count("replayed" if self._catching_up else "sent", status[:acked].count(_OK))
            self._count("dropped", status[:acked].count(_DROP))
        if self._catching_up and not self._spool.depth:
            self._catching_up = False
            log.info("spool_drained", replayed=self.counts["replayed"])
        return acked > 0

    def _send_and_wait(self, items: list[_Item]) -> list[str]:
        """Send in order, wait for the acks (delivery timeout, or the close deadline): per item ok/retry/drop.

        `drop` is for events the broker can never take (too large, unserialisable): spooling them would
        stall the spool forever.
        """
        producer = self._producer
        futures: list[Any] = []
        for key, value in items:
            try:
                futures.append(producer.send(self.topic, key=key, value=value))
            except _REJECTED as exc:
                log.error("audit_event_rejected", error=f"{type(exc).__name__}: {exc}", bytes=len(value))
                futures.append(None)
            except Exception as exc:  # noqa: BLE001 - metadata timeout, closed producer: the rest waits
                self._last_error = f"send: {type(exc).__name__}: {exc}"
                break
        pending = [f for f in futures if f is not None]
        deadline = time.monotonic() + self._delivery_timeout_ms / 1000 + 1.0
        while pending and not all(f.is_done for f in pending):
            deadline = min(deadline, self._close_deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._last_error = "delivery deadline passed"
                self._drop_producer()
                break
            try:
                producer.flush(timeout=min(0.25, remaining))
            except Exception:  # noqa: BLE001 - KafkaTimeoutError: just not yet
                pass
        _wait_done(pending, 1.0)
        status = [_status(f) for f in futures] + [_RETRY] * (len(items) - len(futures))
        if _RETRY in status:
            errors = sorted({type(f.exception).__name__ for f in pending if f.is_done and f.failed()})
            self._last_error = self._last_error or f"delivery failed: {errors}"
            log.warning("kafka_delivery_failed", failed=status.count(_RETRY), of=len(status), errors=errors)
            self._drop_producer()
        return status

    # -- connection management -------------------------------------------------------------------------
    def _new_producer(self) -> Any:
        """Build a producer (connector thread). A quick TCP check first: a down broker costs no bootstrap wait."""
        from kafka import KafkaProducer

        _check_reachable(self.bootstrap)
        request_timeout = max(300, self._delivery_timeout_ms - self._linger_ms - 200)
        return KafkaProducer(
            bootstrap_servers=self.bootstrap.split(","), acks="all", enable_idempotence=True,
            compression_type=self._compression, linger_ms=self._linger_ms,
            delivery_timeout_ms=self._delivery_timeout_ms, request_timeout_ms=request_timeout,
            max_block_ms=min(self._delivery_timeout_ms, 5000), bootstrap_timeout_ms=2000,
            reconnect_backoff_max_ms=1000, client_id="guardstream-audit", batch_size=256 * 1024, **self._security)

    def _poll_connect(self) -> None:
        if self._producer is not None:
            return
        now = time.monotonic()
        if self._connecting is None:
            if now >= self._next_connect:
                self._connecting = self._connector.submit(self._new_producer)
            return
        if not self._connecting.done():
            return
        future, self._connecting = self._connecting, None
        try:
            self._producer = future.result()
        except Exception as exc:  # noqa: BLE001 - still down
            self._last_error = f"connect: {type(exc).__name__}: {exc}"
            self._next_connect = now + self._backoff
            self._backoff = min(self._backoff * 2, self._reconnect_max_s)
            return
        self._backoff = 0.25
        self._last_error = None
        AUDIT_BROKER_UP.set(1)
        log.info("kafka_connected", bootstrap=self.bootstrap, topic=self.topic, spool_depth=self._spool.depth)

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        AUDIT_BROKER_UP.set(0)
        self._catching_up = True
        self._next_connect = time.monotonic() + self._backoff
        log.warning("kafka_unavailable_spooling", bootstrap=self.bootstrap, error=self._last_error)
        _hard_close(producer)

    def _shutdown(self) -> None:
        """Closing: send what we can until the deadline; the log keeps the rest for the next start."""
        while self._spool.depth and time.monotonic() < self._close_deadline:
            if self._producer is not None:
                self._send_chunk()
                continue
            if self._connecting is None and self._next_connect >= self._close_deadline:
                break
            self._poll_connect()
            time.sleep(0.02)
        if self._producer is not None:
            producer, self._producer = self._producer, None
            _hard_close(producer, max(0.0, self._close_deadline - time.monotonic()))
        if self._connecting is not None:  # a connect attempt still running: close what it makes
            self._connecting.add_done_callback(_close_when_made)
        self._connector.shutdown(wait=False, cancel_futures=True)
        self._spool.sync()
        AUDIT_BROKER_UP.set(0)
        log.info("audit_closed", **self.counts, spool_depth=self._spool.depth)


_OK, _RETRY, _DROP = "ok", "retry", "drop"


#: events the broker will never take (spooling them would stall the spool): dropped and logged
_REJECTED = (TypeError, ValueError, MessageSizeTooLargeError)


def _status(future: Any) -> str:
    if future is None:
        return _DROP
    if not future.is_done:
        return _RETRY
    if future.succeeded():
        return _OK
    return _DROP if isinstance(future.exception, _REJECTED) else _RETRY


def _wait_done(futures: list[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(not f.is_done for f in futures) and time.monotonic() < deadline:
        time.sleep(0.005)


def _hard_close(producer: Any, timeout: float = 0.0) -> None:
    """Close a producer, even with records pending (kafka-python 3 `close` raises when its flush times out)."""
    try:
        producer.close(timeout=timeout)
    except Exception:  # noqa: BLE001
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        producer._closed = True


def _close_when_made(made: Future[Any]) -> None:
    """Close the producer a connect attempt made, once it is made (nothing if the attempt failed)."""
    if made.exception() is None:
        _hard_close(made.result())


def _check_reachable(bootstrap: str, timeout: float = 1.0) -> None:
    """Raise OSError unless some bootstrap server accepts a TCP connection."""
    errors = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port or 9092)), timeout=timeout):
                return
        except OSError as exc:
            errors.append(f"{server}: {exc}")
    raise OSError("; ".join(errors) or "no bootstrap servers")
