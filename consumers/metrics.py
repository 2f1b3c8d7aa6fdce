"""Metrics consumer: audit events -> per-minute aggregates (stage, action, tenant, category, evaluator); the
proxies' shadow tallies -> shadow agreement per minute; comparison events -> win / tie / loss per (baseline,
candidate, tenant) and minute; score tallies -> reward score histograms per (evaluator, model) and minute.

Exactly once without relying on idempotent rows: the aggregates and the
consumer's Kafka positions are written in ONE transaction (`gs_consumer_offsets`);
on (re)assignment the consumer seeks to the stored positions, and records below
them are skipped. The Kafka offset commit afterwards only serves lag monitoring.
Minutes are event time (the event's `ts`), UTC.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, select

from consumers.decode import decode
from consumers.kafka import KafkaSettings
from consumers.stall import ConsumerStalled, StallGuard
from consumers.store import Store
from consumers.store import tables as t
from consumers.store.writes import clip, upsert
from proxy.schemas.events import COMPARISON_SCHEMA_NAME, SCORE_TALLY_SCHEMA_NAME, TALLY_SCHEMA_NAME, AuditEvent

log = structlog.get_logger("guardstream.metrics")


@dataclass(slots=True)
class Aggregates:
    """Counts for one batch, keyed like the tables' primary keys."""

    events: dict[tuple[datetime, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    categories: dict[tuple[datetime, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    evaluators: dict[tuple[datetime, str, str], list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0, 0.0]))  # calls, unsafe, errors, cached, ms
    #: shadow agreement: (minute, stage, shadow, live, category, outcome) -> count, from the shadow tallies
    shadow: dict[tuple[datetime, str, str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    #: comparison outcomes: (minute, baseline, candidate, tenant, outcome) -> count, from comparison events
    comparisons: dict[tuple[datetime, str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    #: reward scores: (minute, evaluator, model, le) -> [count, sum], from the score tallies
    scores: dict[tuple[datetime, str, str, float], list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0.0]))

    def add_comparison(self, event: Mapping[str, Any], ts: datetime) -> None:
        minute = ts.replace(second=0, microsecond=0)
        C = t.metric_comparisons
        key = (minute, clip(C, "baseline", event["baseline"].get("model") or "unknown"),
               clip(C, "candidate", event["candidate"]["name"]), clip(C, "tenant", event["tenant"]), event["outcome"])
        self.comparisons[key] += 1

    def add_score_tally(self, tally: Mapping[str, Any], ts: datetime) -> None:
        """A proxy's reward score counts per bucket (proxy/quality.py), in the minute it was sent."""
        minute = ts.replace(second=0, microsecond=0)
        S, edges = t.metric_scores, list(tally["edges"])
        for c in tally["counts"]:
            bucket = int(c["bucket"])
            le = float(edges[bucket]) if bucket < len(edges) else t.OVERFLOW_LE
            row = self.scores[(minute, clip(S, "evaluator", c["evaluator"]), clip(S, "model", c["model"]), le)]
            row[0] += int(c["n"])
            row[1] += float(c["sum"])

    def add_tally(self, tally: Mapping[str, Any], ts: datetime) -> None:
        """A proxy's shadow tally (proxy/shadow.py), counted in the minute it was sent."""
        minute = ts.replace(second=0, microsecond=0)
        S = t.metric_shadow
        for c in tally["counts"]:
            key = (minute, c["stage"], clip(S, "shadow", c["shadow"]), clip(S, "live", c["live"]),
                   clip(S, "category", c["category"]), c["outcome"])
            self.shadow[key] += int(c["n"])

    def add_decoded(self, schema: str, event: Mapping[str, Any], ts: datetime) -> None:
        """One decoded message of any kind the proxies send."""
        if schema == TALLY_SCHEMA_NAME:
            self.add_tally(event, ts)
        elif schema == SCORE_TALLY_SCHEMA_NAME:
            self.add_score_tally(event, ts)
        elif schema == COMPARISON_SCHEMA_NAME:
            self.add_comparison(event, ts)
        else:
            self.add(event, ts)

    def add(self, event: Mapping[str, Any], ts: datetime) -> None:
        """An audit event (read through the proxy's `AuditEvent` model)."""
        e = AuditEvent.model_validate(event)
        minute = ts.replace(second=0, microsecond=0)
        stage, action = e.stage, e.action
        # keys cut to their columns' widths (keys that then meet are counted together)
        self.events[(minute, stage, action, clip(t.metric_events, "tenant", e.tenant))] += 1
        for category in sorted({clip(t.metric_categories, "category", c) for c in e.categories}):
            self.categories[(minute, stage, action, category)] += 1
        for verdict in e.verdicts:
            row = self.evaluators[(minute, clip(t.metric_evaluators, "evaluator", verdict.evaluator), stage)]
            row[0] += 1
            row[1] += 0 if verdict.safe or verdict.error else 1
            row[2] += 1 if verdict.error else 0
            row[3] += 1 if verdict.cached else 0
            row[4] += verdict.latency_ms


def write_aggregates(conn: Connection, agg: Aggregates) -> None:
    upsert(conn, t.metric_events, ["minute", "stage", "action", "tenant"],
            [dict(minute=m, stage=s, action=a, tenant=te, count=n) for (m, s, a, te), n in agg.events.items()],
            add=["count"])
    upsert(conn, t.metric_categories, ["minute", "stage", "action", "category"],
            [dict(minute=m, stage=s, action=a, category=c, count=n) for (m, s, a, c), n in agg.categories.items()],
            add=["count"])
    upsert(conn, t.metric_evaluators, ["minute", "evaluator", "stage"],
            [dict(minute=m, evaluator=e, stage=s, calls=int(v[0]), unsafe=int(v[1]), errors=int(v[2]),
                  cached=int(v[3]), latency_ms_sum=v[4]) for (m, e, s), v in agg.evaluators.items()],
            add=["calls", "unsafe", "errors", "cached", "latency_ms_sum"])
    upsert(conn, t.metric_shadow, ["minute", "stage", "shadow", "live", "category", "outcome"],
           [dict(minute=m, stage=s, shadow=sh, live=lv, category=c, outcome=o, count=n)
            for (m, s, sh, lv, c, o), n in agg.shadow.items()], add=["count"])
    upsert(conn, t.metric_comparisons, ["minute", "baseline", "candidate", "tenant", "outcome"],
           [dict(minute=m, baseline=b, candidate=c, tenant=te, outcome=o, count=n)
            for (m, b, c, te, o), n in agg.comparisons.items()], add=["count"])
    upsert(conn, t.metric_scores, ["minute", "evaluator", "model", "le"],
           [dict(minute=m, evaluator=e, model=mo, le=le, count=int(v[0]), score_sum=v[1])
            for (m, e, mo, le), v in agg.scores.items()], add=["count", "score_sum"])


def stored_positions(conn: Connection, group: str, topic: str) -> dict[int, int]:
    offsets = t.consumer_offsets
    return dict(conn.execute(select(offsets.c.partition, offsets.c.next_offset)
                             .where(offsets.c.group_id == group, offsets.c.topic == topic)).all())


def save_positions(conn: Connection, group: str, topic: str, positions: Mapping[int, int]) -> None:
    upsert(conn, t.consumer_offsets, ["group_id", "topic", "partition"],
            [dict(group_id=group, topic=topic, partition=p, next_offset=o) for p, o in positions.items()],
            replace=["next_offset"])


class MetricsConsumer:
    """Consumes the audit topic into the per-minute tables; `after_write` runs after the DB commit."""

    def __init__(self, store: Store, settings: KafkaSettings, *,
                 after_write: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.settings = settings
        self.after_write = after_write
        self.counted = 0
        self.skipped_replayed = 0
        self.invalid = 0
        self._positions: dict[int, int] = {}
        self._consumer: Any = None
        self._guard = StallGuard("metrics", settings.stall_limit_s, settings.max_stalls)

    def start(self) -> None:
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        outer = self

        class SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python ships no types
            def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            def on_partitions_assigned(self, assigned: Any) -> None:
                with outer.store.read() as conn:
                    stored = stored_positions(conn, outer.settings.group_id, outer.settings.topic)
                for tp in assigned:
                    if tp.partition in stored:
                        outer._consumer.seek(tp, stored[tp.partition])
                outer._positions.update(stored)

        self._consumer = KafkaConsumer(**self.settings.consumer_config())
        self._consumer.subscribe([self.settings.topic], listener=SeekToStored())

    def poll_once(self) -> int | None:
        """One poll -> one transaction (aggregates + positions). Returns the events counted, None if idle."""
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        batch = self._guard.poll(self._consumer, timeout_ms=self.settings.poll_timeout_ms,
                                 max_records=self.settings.max_poll_records)
        if not batch:
            return None
        agg = Aggregates()
        counted = 0
        positions: dict[int, int] = {}
        for tp, records in batch.items():
            floor = self._positions.get(tp.partition, -1)
            for rec in records:
                if rec.offset < floor:
                    self.skipped_replayed += 1
                    continue
                decoded = decode(rec.value)
                if decoded.event is None or decoded.ts is None:
                    self.invalid += 1
                    continue
                agg.add_decoded(decoded.schema, decoded.event, decoded.ts)
                counted += 1
            positions[tp.partition] = records[-1].offset + 1
        with self.store.write() as conn:
            write_aggregates(conn, agg)
            save_positions(conn, self.settings.group_id, self.settings.topic, positions)
        self._positions.update(positions)
        self.counted += counted
        if self.after_write:
            self.after_write(counted)
        try:
            self._guard.call(self._consumer, lambda: self._consumer.commit(
                {tp: OffsetAndMetadata(positions[tp.partition], "", -1) for tp in batch}))
        except KafkaError as exc:  # harmless: the DB positions are the truth
            log.warning("offset commit failed (lag display only)", error=type(exc).__name__)
        return counted

    def run(self, stop: threading.Event) -> None:
        if self._consumer is None:
            self.start()
        try:
            while not stop.is_set():
                try:
                    self.poll_once()
                except ConsumerStalled:
                    raise  # the Kafka client stopped answering: the command exits for a restart
                except Exception as exc:  # keep consuming; the batch is re-read after a seek to stored positions
                    log.error("metrics batch failed", error=type(exc).__name__)
                    self._rewind()
                    stop.wait(1.0)
        finally:
            self.close()

    def _rewind(self) -> None:
        with self.store.read() as conn:
            stored = stored_positions(conn, self.settings.group_id, self.settings.topic)
        for tp in self._consumer.assignment():
            if tp.partition in stored:
                self._consumer.seek(tp, stored[tp.partition])

    def close(self) -> None:
        self._guard.close()
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None

    def state(self) -> dict[str, Any]:
        return {"counted": self.counted, "invalid": self.invalid, "skipped_replayed": self.skipped_replayed,
                "stalls": self._guard.stalls}


def aggregate(events: Iterable[tuple[Mapping[str, Any], datetime]]) -> Aggregates:
    """Events, tallies and comparisons (told apart by their `schema`) into one batch of aggregates."""
    agg = Aggregates()
    for event, ts in events:
        agg.add_decoded(str(event.get("schema")), event, ts)
    return agg
