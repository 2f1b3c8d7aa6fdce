"""Read side of the review store: the filtered queue, one event, facets for the filter menus."""

from __future__ import annotations

import json
from typing import Any, Iterator

from sqlalchemy import Connection, and_, exists, func, or_, select

from consumers.store import tables as t
from consumers.store.models import Label, QueueFilter, QueueRow, StoredEvent

E = t.events


def _where(f: QueueFilter) -> list[Any]:
    clauses: list[Any] = []
    for name in ("stage", "tenant", "action"):
        value = getattr(f, name)
        if value:
            clauses.append(E.c[name] == value)
    if f.category:
        clauses.append(exists().where(t.event_categories.c.event_pk == E.c.id,
                                      t.event_categories.c.category == f.category))
    if f.evaluator:
        clauses.append(exists().where(t.verdicts.c.event_pk == E.c.id, t.verdicts.c.evaluator == f.evaluator))
    if f.since:
        clauses.append(E.c.ts >= f.since)
    if f.until:
        clauses.append(E.c.ts < f.until)
    labelled = exists().where(t.labels.c.event_pk == E.c.id)
    if f.status == "unreviewed":
        clauses.append(~labelled)
    elif f.status == "reviewed":
        clauses.append(labelled)
    return clauses


def queue(conn: Connection, f: QueueFilter, reviewer: str | None, limit: int = 50,
          offset: int = 0) -> tuple[list[QueueRow], int]:
    """One page of the queue (newest first) and the total number of matching events."""
    where = _where(f)
    total = conn.execute(select(func.count()).select_from(E).where(*where)).scalar_one()
    L = t.labels
    label_count = (select(func.count(func.distinct(L.c.reviewer))).where(L.c.event_pk == E.c.id)
                   .scalar_subquery())
    mine = (select(L.c.label).where(L.c.event_pk == E.c.id, L.c.reviewer == (reviewer or ""))
            .order_by(L.c.created_at.desc(), L.c.id.desc()).limit(1).scalar_subquery())
    rows = conn.execute(
        select(E.c.id, E.c.event_id, E.c.ts, E.c.tenant, E.c.stage, E.c.action, E.c.mode, E.c.categories,
               E.c.content_mode, label_count.label("label_count"), mine.label("my_label"))
        .where(*where).order_by(E.c.ts.desc(), E.c.id.desc()).limit(limit).offset(offset)
    ).all()
    evaluators: dict[int, list[str]] = {}
    if rows:
        for pk, name in conn.execute(select(t.verdicts.c.event_pk, t.verdicts.c.evaluator)
                                     .where(t.verdicts.c.event_pk.in_([r.id for r in rows]))
                                     .order_by(t.verdicts.c.event_pk, t.verdicts.c.position)):
            evaluators.setdefault(pk, []).append(name)
    return [QueueRow(event_id=r.event_id, ts=r.ts, tenant=r.tenant, stage=r.stage, action=r.action, mode=r.mode,
                     categories=json.loads(r.categories), evaluators=evaluators.get(r.id, []),
                     content_mode=r.content_mode, label_count=r.label_count, my_label=r.my_label)
            for r in rows], total


def neighbours(conn: Connection, f: QueueFilter, event: StoredEvent) -> tuple[str | None, str | None]:
    """(previous, next) event ids around `event` in the queue order (newest first), under the same filters."""
    where = _where(f)
    newer = or_(E.c.ts > event.ts, and_(E.c.ts == event.ts, E.c.id > event.pk))
    older = or_(E.c.ts < event.ts, and_(E.c.ts == event.ts, E.c.id < event.pk))
    prev_id = conn.execute(select(E.c.event_id).where(*where, newer)
                           .order_by(E.c.ts.asc(), E.c.id.asc()).limit(1)).scalar()
    next_id = conn.execute(select(E.c.event_id).where(*where, older)
                           .order_by(E.c.ts.desc(), E.c.id.desc()).limit(1)).scalar()
    return prev_id, next_id


def get_event(conn: Connection, event_id: str) -> StoredEvent | None:
    row = conn.execute(select(E.c.id, E.c.event_id, E.c.ts, E.c.payload).where(E.c.event_id == event_id)).first()
    if row is None:
        return None
    return StoredEvent(pk=row.id, event_id=row.event_id, ts=row.ts, payload=json.loads(row.payload),
                       labels=labels_of(conn, row.id))


def labels_of(conn: Connection, event_pk: int) -> list[Label]:
    L = t.labels
    return [Label(reviewer=r.reviewer, label=r.label, categories=json.loads(r.categories), note=r.note,
                  created_at=r.created_at, id=r.id)
            for r in conn.execute(select(L).where(L.c.event_pk == event_pk).order_by(L.c.created_at, L.c.id))]


def facets(conn: Connection) -> dict[str, list[str]]:
    """Distinct values for the filter menus."""
    def distinct(col: Any) -> list[str]:
        return [v for v in conn.execute(select(col).distinct().order_by(col)).scalars() if v is not None]

    return {
        "tenant": distinct(E.c.tenant),
        "category": distinct(t.event_categories.c.category),
        "evaluator": distinct(t.verdicts.c.evaluator),
    }


def evaluator_categories(conn: Connection) -> dict[str, set[str]]:
    """evaluator -> every category its stored unsafe verdicts named (what it can name, as far as seen)."""
    V = t.verdicts
    named: dict[str, set[str]] = {}
    for name, cats in conn.execute(select(V.c.evaluator, V.c.categories).distinct()
                                   .where(V.c.safe.is_(False), V.c.error.is_(None))):
        named.setdefault(name, set()).update(json.loads(cats))
    return named


def counts(conn: Connection) -> dict[str, int]:
    labelled = exists().where(t.labels.c.event_pk == E.c.id)
    return {
        "events": conn.execute(select(func.count()).select_from(E)).scalar_one(),
        "unreviewed": conn.execute(select(func.count()).select_from(E).where(~labelled)).scalar_one(),
        "labels": conn.execute(select(func.count()).select_from(t.labels)).scalar_one(),
        "dead_letters": conn.execute(select(func.count()).select_from(t.dead_letters)).scalar_one(),
    }


def dead_letter_page(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    D = t.dead_letters
    rows = conn.execute(select(D).order_by(D.c.id.desc()).limit(limit)).all()
    return [{"id": r.id, "topic": r.topic, "partition": r.partition, "offset": r.offset, "reason": r.reason,
             "received_at": r.received_at, "key": (r.key or b"").decode("utf-8", "replace"),
             "raw": (r.raw or b"")[:2000].decode("utf-8", "replace"), "size": len(r.raw or b"")}
            for r in rows]


def reviewer_active(conn: Connection, name: str) -> bool:
    return bool(conn.execute(select(t.reviewers.c.active).where(t.reviewers.c.name == name)).scalar())


def reviewed_count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(E)
                        .where(exists().where(t.labels.c.event_pk == E.c.id))).scalar_one()


def reviewed_events(conn: Connection, chunk: int = 500, newest_first: bool = False) -> Iterator[StoredEvent]:
    """Every event with at least one label, with all its labels, in store order (keyset pages)."""
    L = t.labels
    last: int | None = None
    while True:
        q = select(E.c.id, E.c.event_id, E.c.ts, E.c.payload).where(exists().where(L.c.event_pk == E.c.id))
        if last is not None:
            q = q.where(E.c.id < last if newest_first else E.c.id > last)
        rows = conn.execute(q.order_by(E.c.id.desc() if newest_first else E.c.id).limit(chunk)).all()
        if not rows:
            return
        by_event: dict[int, list[Label]] = {}
        for r in conn.execute(select(L).where(L.c.event_pk.in_([row.id for row in rows]))
                              .order_by(L.c.created_at, L.c.id)):
            by_event.setdefault(r.event_pk, []).append(
                Label(reviewer=r.reviewer, label=r.label, categories=json.loads(r.categories), note=r.note,
                      created_at=r.created_at, id=r.id))
        for row in rows:
            yield StoredEvent(pk=row.id, event_id=row.event_id, ts=row.ts, payload=json.loads(row.payload),
                              labels=by_event.get(row.id, []))
        last = rows[-1].id
