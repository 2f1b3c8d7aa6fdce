"""Review consumer: audit topic -> review store, exactly once per event_id.

Per poll: decode every record (invalid ones become dead letters), write the
whole batch in ONE database transaction, and only then commit the Kafka
offsets. A crash after the DB commit but before the offset commit replays the
batch on restart; the store ignores what it already has (event_id and
dead-letter position are unique), so nothing is lost and nothing is doubled.

A batch the database refuses for its data (not for being unreachable) is
written again record by record, and the records it still refuses become dead
letters with the database's reason: one bad record never stops the consumer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from consumers.decode import decode
from consumers.kafka import KafkaSettings
from consumers.stall import StallGuard
from consumers.store import DeadLetter, IncomingEvent, Position, Store, WriteResult

log = structlog.get_logger("guardstream.review")

AfterWrite = Callable[[WriteResult], None]


class ReviewConsumer:
    """Consumes the audit topic into `store`. `after_write` runs between the DB commit and the offset commit."""

    def __init__(self, store: Store, settings: KafkaSettings, *, after_write: AfterWrite | None = None) -> None:
        self.store = store
        self.settings = settings
        self.after_write = after_write
        self.stats = WriteResult()
        self.batches = 0
        self.tallies = 0  # shadow tallies passed over
        self.last_error: str | None = None
        self._consumer: Any = None
        self._backoff = 0.0
        self._guard = StallGuard("review", settings.stall_limit_s, settings.max_stalls)

    def start(self) -> None:
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(self.settings.topic, **self.settings.consumer_config())

    def poll_once(self) -> WriteResult | None:
        """One poll -> one transaction -> one offset commit. None when the poll returned nothing."""
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata
        from sqlalchemy.exc import SQLAlchemyError

        batch = self._guard.poll(self._consumer, timeout_ms=self.settings.poll_timeout_ms,
                                 max_records=self.settings.max_poll_records)
        if not batch:
            return None
        items: list[IncomingEvent] = []
        compared: list[IncomingEvent] = []
        dead: list[DeadLetter] = []
        offsets = {}
        raw: dict[Position, Any] = {}
        for tp, records in batch.items():
            for rec in records:
                pos = Position(tp.topic, tp.partition, rec.offset)
                decoded = decode(rec.value)
                if decoded.is_counts:  # shadow and score tallies, for the metrics consumer: nothing to review
                    self.tallies += 1
                elif decoded.is_comparison and decoded.ts is not None:  # reviewed side by side
                    compared.append(IncomingEvent(decoded.event, decoded.ts, pos))  # type: ignore[arg-type]  # a decoded comparison carries its event
                    raw[pos] = rec
                elif decoded.event is not None and decoded.ts is not None:
                    items.append(IncomingEvent(decoded.event, decoded.ts, pos))
                    raw[pos] = rec
                else:
                    dead.append(DeadLetter(pos, rec.key, rec.value, decoded.reason or "invalid"))
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        try:
            try:
                result = self.store.write_batch(items, dead, compared)
            except SQLAlchemyError as exc:
                if not refuses_data(exc):
                    raise
                log.warning("store refused a batch; writing it record by record", error=type(exc).__name__,
                            records=len(items) + len(dead) + len(compared))
                result = self._write_one_by_one(items, dead, raw, compared)
        except SQLAlchemyError as exc:
            # nothing committed anywhere: rewind and read the same batch again after a pause
            for tp, records in batch.items():
                self._consumer.seek(tp, records[0].offset)
            self.last_error = f"store: {type(exc).__name__}"
            self._backoff = min(max(self._backoff * 2, 0.5), self.settings.max_poll_interval_ms / 2000, 30.0)
            log.error("store write failed; batch will be retried", error=type(exc).__name__,
                      records=len(items) + len(dead), retry_in_s=self._backoff)
            time.sleep(self._backoff)
            return WriteResult()
        self._backoff = 0.0
        self.last_error = None
        if self.after_write:
            self.after_write(result)
        try:
            self._guard.call(self._consumer, lambda: self._consumer.commit(offsets))
        except (CommitFailedError, KafkaError) as exc:
            # e.g. a rebalance took the partitions away: the new owner re-reads them and the store dedupes
            self.last_error = f"commit: {type(exc).__name__}"
            log.warning("offset commit failed; records will be redelivered and deduplicated",
                        error=type(exc).__name__)
        self.batches += 1
        self.stats.add(result)
        log.info("batch stored", inserted=result.inserted, duplicates=result.duplicates,
                 dead_letters=result.dead_letters, partitions=len(offsets))
        return result

    def _write_one_by_one(self, items: list[IncomingEvent], dead: list[DeadLetter],
                          raw: dict[Position, Any], compared: Sequence[IncomingEvent] = ()) -> WriteResult:
        """Each record in its own transaction; those the store refuses become dead letters with its reason.
        Any other error (the database went away meanwhile) propagates: the batch is retried whole."""
        from sqlalchemy.exc import SQLAlchemyError

        result = WriteResult()
        refused = list(dead)
        for item, is_comparison in [(i, False) for i in items] + [(c, True) for c in compared]:
            try:
                result.add(self.store.write_batch([], [], [item]) if is_comparison
                           else self.store.write_batch([item], []))
            except SQLAlchemyError as exc:
                if not refuses_data(exc):
                    raise
                position = item.position
                assert position is not None  # read from Kafka: every item has one
                rec = raw[position]
                reason = f"store refused: {type(exc).__name__}: {str(getattr(exc, 'orig', exc))[:300]}"
                log.error("event refused by the store; kept as a dead letter", error=type(exc).__name__,
                          event_id=item.event.get("event_id"))
                refused.append(DeadLetter(position, rec.key, rec.value, reason))
        result.add(self.store.write_batch([], refused))
        return result

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; closes the consumer (leaving the group) on the way out."""
        if self._consumer is None:
            self.start()
        try:
            while not stop.is_set():
                self.poll_once()
        finally:
            self.close()

    def close(self) -> None:
        self._guard.close()
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None

    def state(self) -> dict[str, Any]:
        return {"batches": self.batches, "inserted": self.stats.inserted, "duplicates": self.stats.duplicates,
                "dead_letters": self.stats.dead_letters, "shadow_tallies": self.tallies, "last_error": self.last_error,
                "stalls": self._guard.stalls}



def refuses_data(exc: Exception) -> bool:
    """The database refused the data itself (a value it cannot hold, a constraint), which retrying cannot fix.
    Anything else (unreachable, locked, timed out, a schema problem) is retried: nothing is dead-lettered for
    the database's own trouble."""
    from sqlalchemy.exc import DataError, IntegrityError

    return isinstance(exc, (DataError, IntegrityError)) and not getattr(exc, "connection_invalidated", False)
