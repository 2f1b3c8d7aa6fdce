"""Writing a consumed batch: events insert-or-ignore on event_id, dead letters on their Kafka position."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from consumers.store import tables as t
from consumers.store.derive import Derived, derive, marks_json
from consumers.store.models import DeadLetter, IncomingEvent, WriteResult
from proxy.schemas.events import AuditEvent


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def insert_ignore(conn: Connection, table: Table, conflict: Sequence[str]) -> Any:
    """INSERT ... ON CONFLICT (conflict) DO NOTHING for the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=list(conflict))


def upsert(conn: Connection, table: Table, keys: list[str], rows: list[dict[str, Any]], *,
           add: Iterable[str] = (), replace: Iterable[str] = ()) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE: `add` columns are incremented, `replace` ones overwritten."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    set_ = {c: table.c[c] + stmt.excluded[c] for c in add} | {c: stmt.excluded[c] for c in replace}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=set_), rows)


def clip(table: Table, column: str, value: Any) -> Any:
    """A string cut to its column's length: PostgreSQL refuses longer ones (SQLite does not check), and a
    client chooses some of them (`model`). Anything else as it is."""
    length = getattr(table.c[column].type, "length", None)
    return value[:length] if length and isinstance(value, str) else value


def fit(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """`row` with every string cut to its column's length (see `clip`)."""
    return {name: clip(table, name, value) for name, value in row.items()}


def derived_columns(d: Derived) -> dict[str, Any]:
    """The review queue's columns of an event (see derive.py)."""
    return {"value_base": d.value_base, "lookalike_key": d.lookalike_key, "snippet": d.snippet,
            "snippet_marks": json.dumps(marks_json(d.marks)) if d.snippet is not None else None,
            "disagreement": d.disagreement}


def _event_row(item: IncomingEvent, received_at: datetime, derived: Derived) -> dict[str, Any]:
    e = AuditEvent.model_validate(item.event)
    pos = item.position
    return fit(t.events, {
        **derived_columns(derived),
        "event_id": e.event_id, "ts": item.ts, "request_id": e.request_id, "tenant": e.tenant,
        "policy": e.policy, "stage": e.stage, "action": e.action, "mode": e.mode,
        "model": e.model, "upstream": e.upstream, "route": e.route,
        "stream_mode": e.stream_mode, "choice_index": e.choice_index,
        "categories": json.dumps(e.categories), "content_mode": e.content.mode,
        "content_sha256": e.content.sha256, "latency_ms": e.latency_ms,
        # the event as received, unknown fields included
        "payload": json.dumps(item.event, ensure_ascii=False, separators=(",", ":")),
        "kafka_topic": pos.topic if pos else None, "kafka_partition": pos.partition if pos else None,
        "kafka_offset": pos.offset if pos else None, "received_at": received_at,
    })


def _comparison_row(item: IncomingEvent, received_at: datetime) -> dict[str, Any]:
    e = item.event
    pos = item.position
    margin = e["judge"].get("margin")
    return fit(t.comparisons, {
        "event_id": e["event_id"], "ts": item.ts, "request_id": e["request_id"], "tenant": e["tenant"],
        "policy": e["policy"], "baseline": e["baseline"].get("model") or "unknown", "candidate": e["candidate"]["name"],
        "outcome": e["outcome"], "decided_by": e["decided_by"],
        "margin": float(margin) if isinstance(margin, (int, float)) and math.isfinite(margin) else None,
        "content_mode": e["content"]["mode"], "payload": json.dumps(e, ensure_ascii=False, separators=(",", ":")),
        "kafka_topic": pos.topic if pos else None, "kafka_partition": pos.partition if pos else None,
        "kafka_offset": pos.offset if pos else None, "received_at": received_at,
    })


def write_comparisons(conn: Connection, items: Sequence[IncomingEvent], result: WriteResult,
                      now: datetime) -> None:
    """Comparison events, insert-or-ignore on event_id (a replayed batch stores nothing twice)."""
    unique = {item.event["event_id"]: item for item in items}
    result.duplicates += len(items) - len(unique)
    if not unique:
        return
    stmt = insert_ignore(conn, t.comparisons, ["event_id"]).returning(t.comparisons.c.id)
    stored = len(conn.execute(stmt, [_comparison_row(i, now) for i in unique.values()]).all())
    result.inserted += stored
    result.duplicates += len(unique) - stored


def write_batch(conn: Connection, items: Sequence[IncomingEvent], dead: Sequence[DeadLetter],
                comparisons: Sequence[IncomingEvent] = ()) -> WriteResult:
    """Store a batch inside the caller's transaction. Safe to replay: nothing is stored twice."""
    result = WriteResult()
    now = utcnow()
    write_comparisons(conn, comparisons, result, now)
    unique: dict[str, IncomingEvent] = {}
    for item in items:
        if item.event["event_id"] in unique:
            result.duplicates += 1
        else:
            unique[item.event["event_id"]] = item
    if unique:
        existing = set(conn.execute(select(t.events.c.event_id)
                                    .where(t.events.c.event_id.in_(list(unique)))).scalars())
        result.duplicates += len(existing)
        fresh = [item for event_id, item in unique.items() if event_id not in existing]
        ids: dict[str, int] = {}
        derived = {item.event["event_id"]: derive(item.event) for item in fresh}
        if fresh:
            # one multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING (SQLAlchemy "insertmanyvalues")
            stmt = insert_ignore(conn, t.events, ["event_id"]).returning(t.events.c.id, t.events.c.event_id)
            rows = [_event_row(i, now, derived[i.event["event_id"]]) for i in fresh]
            ids = {event_id: pk for pk, event_id in conn.execute(stmt, rows)}
        result.duplicates += len(fresh) - len(ids)  # lost a race with another consumer
        result.inserted += len(ids)
        verdict_rows: list[dict[str, Any]] = []
        category_rows: list[dict[str, Any]] = []
        for item in fresh:
            pk = ids.get(item.event["event_id"])
            if pk is None:
                continue
            categories = {clip(t.event_categories, "category", c)
                          for c in derived[item.event["event_id"]].categories}
            category_rows += [{"event_pk": pk, "category": c} for c in sorted(categories)]
            shadow = (item.event.get("shadow") or {}).get("verdicts") or []
            for i, (v, is_shadow) in enumerate([(v, False) for v in item.event["verdicts"]] +
                                               [(v, True) for v in shadow]):
                verdict_rows.append(fit(t.verdicts, {
                    "event_pk": pk, "position": i, "evaluator": v["evaluator"], "version": v["version"],
                    "safe": bool(v["safe"]), "categories": json.dumps(list(v["categories"])),
                    "score": v.get("score"), "latency_ms": v.get("latency_ms"), "cached": v.get("cached"),
                    "error": v.get("error"), "shadow": is_shadow,
                }))
        if verdict_rows:
            conn.execute(t.verdicts.insert(), verdict_rows)
        if category_rows:
            conn.execute(t.event_categories.insert(), category_rows)
    if dead:
        stmt = insert_ignore(conn, t.dead_letters, ["topic", "partition", "offset"]).returning(t.dead_letters.c.id)
        for letter in dead:
            pk = conn.execute(stmt, {
                "topic": letter.position.topic, "partition": letter.position.partition,
                "offset": letter.position.offset, "key": letter.key, "raw": letter.raw,
                "reason": letter.reason[:4000].replace("\x00", "\ufffd"), "received_at": now,
            }).scalar()
            if pk is None:
                result.dead_letter_duplicates += 1
            else:
                result.dead_letters += 1
    return result


def backfill_derived(conn: Connection, chunk: int = 500) -> int:
    """Work out the queue's columns for events stored before they existed (migration 3). Returns how many."""
    E = t.events
    done = 0
    last = 0
    while True:
        rows = conn.execute(select(E.c.id, E.c.payload).where(E.c.lookalike_key.is_(None), E.c.id > last)
                            .order_by(E.c.id).limit(chunk)).all()
        if not rows:
            return done
        for pk, payload in rows:
            columns = derived_columns(derive(json.loads(payload)))
            conn.execute(E.update().where(E.c.id == pk).values(fit(t.events, columns)))
        done += len(rows)
        last = rows[-1].id
