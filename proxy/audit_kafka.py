"""Kafka audit sink: events to a topic (key = request id), spooled to disk while the broker is away.

kafka-python is synchronous, so everything Kafka happens on one dedicated sender thread; `emit` only
appends to an in-memory queue and never blocks the event loop. The sender thread has two modes:

- direct: take a batch from the queue, send it (acks=all, idempotent, compressed), wait for the acks.
  Records not acknowledged within `delivery_timeout_ms` go to the spool, the producer is dropped, and
  the sink switches to spooling.
- spooling (broker unreachable, or anything left in the spool): new events are appended to the spool
  behind older ones; a background connect attempt runs with backoff; once connected, the spool is
  replayed in order, its offset committed after each acknowledged chunk, the file truncated when
  empty, and the sink is back to direct. An existing spool is replayed first after a restart.

Order is kept per partition (i.e. per request id), as Kafka defines it. Delivery is at least once:
a chunk whose acknowledgement was lost is sent again, and consumers dedupe on `event_id`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog
from kafka.errors import MessageSizeTooLargeError

from proxy.config import AuditConfig
from proxy.metrics import AUDIT_BROKER_UP, AUDIT_EVENTS, AUDIT_SPOOL_DEPTH
from proxy.spool import FsyncPolicy, Spool

log = structlog.get_logger("guardstream.audit")

_Item = tuple[bytes, bytes]  # (key, value)


def encode_event(event: dict[str, Any]) -> _Item:
    """Kafka key (request id) and value (compact JSON, one line) of an event."""
    value = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
    return str(event.get("request_id", "")).encode("utf-8"), value


def _key_of(line: bytes) -> bytes:
    return str(json.loads(line).get("request_id", "")).encode("utf-8")


class KafkaAuditSink:
    """Audit events to Kafka with a local spool for broker outages. See the module docstring."""

    def __init__(self, bootstrap: str, topic: str, *, spool_dir: str | Path = "var/spool",
                 spool_fsync: FsyncPolicy = "batch", spool_max_mb: int = 1024, compression: str = "gzip",
                 delivery_timeout_ms: int = 5000, flush_timeout_s: float = 5.0,
                 security_protocol: str = "PLAINTEXT", ssl_cafile: str | None = None,
                 max_pending: int = 100_000, batch_size: int = 1000, linger_ms: int = 5,
                 reconnect_max_s: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._spool = Spool(spool_dir, topic, fsync=spool_fsync, max_bytes=spool_max_mb << 20)
        self._compression = None if compression == "none" else compression
        self._delivery_timeout_ms = delivery_timeout_ms
        self._flush_timeout_s = flush_timeout_s
        self._security = {"security_protocol": security_protocol, "ssl_cafile": ssl_cafile}
        self._max_pending = max_pending
        self._batch_size = batch_size
        self._linger_ms = linger_ms
        self._reconnect_max_s = reconnect_max_s

        self._queue: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._close_deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._closed = False
        self._spool_ok = False

        self._producer: Any = None
        self._connector = ThreadPoolExecutor(1, thread_name_prefix="audit-kafka-connect")
        self._connecting: Future[Any] | None = None
        self._next_connect = 0.0
        self._backoff = 0.25
        self._last_error: str | None = None
        self.counts = {"emitted": 0, "sent": 0, "spooled": 0, "replayed": 0, "dropped": 0}

    @classmethod
    def from_config(cls, cfg: AuditConfig) -> "KafkaAuditSink":
        assert cfg.kafka_bootstrap
        return cls(cfg.kafka_bootstrap, cfg.topic, spool_dir=cfg.spool_dir, spool_fsync=cfg.spool_fsync,
                   spool_max_mb=cfg.spool_max_mb, compression=cfg.compression,
                   delivery_timeout_ms=cfg.delivery_timeout_ms, flush_timeout_s=cfg.flush_timeout_s,
                   security_protocol=cfg.security_protocol, ssl_cafile=cfg.ssl_cafile)

    # -- the event loop side -----------------------------------------------------------------------------
    @property
    def destination(self) -> str:
        return f"kafka:{self.bootstrap}/{self.topic} (spool: {self._spool.path})"

    def emit(self, event: dict[str, Any]) -> None:
        """Queue an event (the sink owns the dict from now on). Never blocks, never raises."""
        try:
            if self._closed or len(self._queue) >= self._max_pending:
                self._count("dropped")
                return
            self._queue.append(event)
            self._count("emitted")
            self._wake.set()
        except Exception:  # noqa: BLE001 - auditing must never break a request
            pass

    async def start(self) -> None:
        self._start_thread()

    async def close(self) -> None:
        """Send what is queued (bounded by `flush_timeout_s`), spool the rest, stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._close_deadline = time.monotonic() + self._flush_timeout_s
        self._start_thread()
        self._stop.set()
        self._wake.set()
        assert self._thread is not None
        await asyncio.to_thread(self._thread.join, self._flush_timeout_s + 15)

    def state(self) -> dict[str, Any]:
        up = self._producer is not None
        return {"backend": "kafka", "ok": up, "broker_up": up, "topic": self.topic, "bootstrap": self.bootstrap,
                "mode": "direct" if up and not self._spool.depth else "spooling",
                "spool_depth": self._spool.depth, "spool_bytes": self._spool.size_bytes,
                "spool_path": str(self._spool.path), "pending": len(self._queue), "last_error": self._last_error,
                **self.counts}

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-kafka-sender", daemon=True)
            self._thread.start()

    def _count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.counts[outcome] += n
            AUDIT_EVENTS.labels(outcome).inc(n)

    # -- the sender thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._spool.open()
            self._spool_ok = True
        except OSError as exc:
            log.error("spool_unusable", path=str(self._spool.path), error=str(exc))
        AUDIT_SPOOL_DEPTH.set(self._spool.depth)
        AUDIT_BROKER_UP.set(0)
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    self._poll_connect()
                    busy = self._step()
                    if self._spool_ok:
                        self._spool.tick()
                except Exception:  # pragma: no cover - a bug must not stop auditing: reset and go on
                    log.exception("audit_sender_error")
                    self._drop_producer()
                    busy = False
                AUDIT_SPOOL_DEPTH.set(self._spool.depth)
                if not busy:
                    self._wake.wait(0.1 if self._producer is None else 0.5)
            self._shutdown()
        except Exception:  # pragma: no cover - last resort at shutdown: keep what is queued
            log.exception("audit_shutdown_error")
            self._spool_pending()
        finally:
            if self._spool_ok:
                self._spool.close()
            AUDIT_SPOOL_DEPTH.set(self._spool.depth)

    def _step(self) -> bool:
        """One unit of work; False when there was nothing to do."""
        if self._producer is not None and not self._spool.depth:
            batch = self._take(self._batch_size)
            if not batch:
                return False
            self._send_direct(batch)
            return True
        spooled = self._spool_pending()
        if self._producer is not None and self._spool.depth:
            self._replay_chunk()
            return True
        return spooled > 0

    def _take(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while self._queue and len(out) < n:
            out.append(self._queue.popleft())
        return out

    def _spool_pending(self) -> int:
        """Move the whole queue into the spool (behind what is there)."""
        total = 0
        while batch := self._take(self._batch_size):
            total += self._spool_items([encode_event(e) for e in batch])
        return total

    def _spool_items(self, items: list[_Item]) -> int:
        if not self._spool_ok:
            self._count("dropped", len(items))
            return 0
        try:
            written = self._spool.append([value + b"\n" for _, value in items])
        except OSError as exc:
            log.error("spool_write_failed", error=str(exc), events=len(items))
            written = 0
        self._count("spooled", written)
        if written < len(items):
            log.error("spool_full_dropping", dropped=len(items) - written, limit_bytes=self._spool.max_bytes)
            self._count("dropped", len(items) - written)
        return written

    def _send_direct(self, batch: list[dict[str, Any]]) -> None:
        items = [encode_event(e) for e in batch]
        try:
            status = self._send_and_wait(items)
        except Exception:  # pragma: no cover - a bug: keep the batch, not the producer
            log.exception("audit_send_error")
            self._drop_producer()
            status = [_RETRY] * len(items)
        self._count("sent", status.count(_OK))
        self._count("dropped", status.count(_DROP))
        self._spool_items([item for item, st in zip(items, status) if st == _RETRY])

    def _replay_chunk(self) -> None:
        lines, ends = self._spool.read(self._batch_size)
        if not lines:  # depth and file disagree (should not happen): trust the file
            self._spool.commit(self._spool.size_bytes, self._spool.depth)
            return
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
            self._count("replayed", status[:acked].count(_OK))
            self._count("dropped", status[:acked].count(_DROP))
        if not self._spool.depth:
            log.info("spool_drained", replayed=self.counts["replayed"])

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
        if self._producer is not None or self._stop.is_set():
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
        self._next_connect = time.monotonic() + self._backoff
        log.warning("kafka_unavailable_spooling", bootstrap=self.bootstrap, error=self._last_error)
        _hard_close(producer)

    def _shutdown(self) -> None:
        """Closing: send what we can until the deadline, spool the rest."""
        while self._queue and self._producer is not None and time.monotonic() < self._close_deadline:
            if self._spool.depth:
                self._spool_pending()
                self._replay_chunk()
            else:
                self._send_direct(self._take(self._batch_size))
        while self._producer is not None and self._spool.depth and time.monotonic() < self._close_deadline:
            self._replay_chunk()
        self._spool_pending()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            _hard_close(producer, max(0.0, self._close_deadline - time.monotonic()))
        if self._connecting is not None:  # a connect attempt still running: close what it makes
            self._connecting.add_done_callback(lambda f: f.exception() is None and _hard_close(f.result()))
        self._connector.shutdown(wait=False, cancel_futures=True)
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
