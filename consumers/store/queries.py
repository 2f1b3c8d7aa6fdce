"""Read side of the review store: the filtered queue, one event, facets for the filter menus."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, and_, case, exists, func, literal, or_, select, tuple_

from consumers.store import tables as t
from consumers.store.derive import HASH_FACTOR, W_RARE
from consumers.store.models import FiredVerdict, Label, QueueFilter, QueueRow, StoredEvent

E = t.events


def _fewest_labels() -> Any:
    """event_pk -> labelled events in its least-labelled category (one grouped pass over the categories)."""
    EC, CL = t.event_categories, t.category_labels
    return (select(EC.c.event_pk.label("event_pk"), func.min(func.coalesce(CL.c.labelled, 0)).label("fewest"))
            .select_from(EC.outerjoin(CL, CL.c.category == EC.c.category))
            .group_by(EC.c.event_pk).subquery("fewest_labels"))


def _valued(fewest: Any) -> Any:
    """What labelling an event would teach (derive.VALUE_DOC): the stored part plus the rarity of its
    least-labelled category, computed here because it changes with every label."""
    rare = func.coalesce(1.0 / (1.0 + fewest), 0.0)
    return (E.c.value_base + W_RARE * rare) * case((E.c.content_mode == "hash", HASH_FACTOR), else_=1.0)


def _from_valued() -> tuple[Any, Any]:
    """(events joined with what their value needs, the value expression). The categories are aggregated once
    and joined: a correlated subquery per event was 4x slower on PostgreSQL at 20,000 events, and no faster on
    SQLite (bench/review_queue_bench.py)."""
    fewest = _fewest_labels()
    return E.outerjoin(fewest, fewest.c.event_pk == E.c.id), _valued(fewest.c.fewest)


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
    if f.disagreement:
        clauses.append(E.c.disagreement.is_(True))
    labelled = exists().where(t.labels.c.event_pk == E.c.id)
    if f.status == "unreviewed":
        clauses.append(~labelled)
    elif f.status == "reviewed":
        clauses.append(labelled)
    return clauses


def _order(f: QueueFilter, value: Any) -> list[Any]:
    return [value.desc(), E.c.ts.desc(), E.c.id.desc()] if f.order == "value" else [E.c.ts.desc(), E.c.id.desc()]


def queue(conn: Connection, f: QueueFilter, reviewer: str | None, limit: int = 50,
          offset: int = 0) -> tuple[list[QueueRow], int]:
    """One page of the queue (most valuable first, or newest first) and the number of matching events."""
    where = _where(f)
    total = conn.execute(select(func.count()).select_from(E).where(*where)).scalar_one()
    L = t.labels
    label_count = (select(func.count(func.distinct(L.c.reviewer))).where(L.c.event_pk == E.c.id)
                   .scalar_subquery())
    mine = (select(L.c.label).where(L.c.event_pk == E.c.id, L.c.reviewer == (reviewer or ""))
            .order_by(L.c.created_at.desc(), L.c.id.desc()).limit(1).scalar_subquery())
    source, value = _from_valued()
    rows = conn.execute(
        select(E.c.id, E.c.event_id, E.c.ts, E.c.tenant, E.c.stage, E.c.action, E.c.mode, E.c.categories,
               E.c.content_mode, E.c.snippet, E.c.snippet_marks, E.c.lookalike_key, E.c.disagreement,
               label_count.label("label_count"), mine.label("my_label"), value.label("value"))
        .select_from(source).where(*where).order_by(*_order(f, value)).limit(limit).offset(offset)
    ).all()
    verdicts = _verdicts_of(conn, [r.id for r in rows])
    alike = _unreviewed_per_key(conn, {r.lookalike_key for r in rows if r.lookalike_key})
    return [QueueRow(event_id=r.event_id, ts=r.ts, tenant=r.tenant, stage=r.stage, action=r.action, mode=r.mode,
                     categories=json.loads(r.categories),
                     evaluators=[v.evaluator for v in verdicts.get(r.id, []) if not v.shadow],
                     content_mode=r.content_mode, label_count=r.label_count, my_label=r.my_label,
                     value=float(r.value or 0.0), snippet=r.snippet,
                     marks=[tuple(m) for m in json.loads(r.snippet_marks or "[]")],  # stored as [start, end] pairs
                     fired=[v for v in verdicts.get(r.id, []) if v.shadow or v.error or not v.safe],
                     lookalikes=max(0, alike.get(r.lookalike_key, 0) - (0 if r.label_count else 1)),
                     disagreement=bool(r.disagreement))
            for r in rows], total


def _verdicts_of(conn: Connection, pks: list[int]) -> dict[int, list[FiredVerdict]]:
    V = t.verdicts
    out: dict[int, list[FiredVerdict]] = {}
    if pks:
        for r in conn.execute(select(V.c.event_pk, V.c.evaluator, V.c.safe, V.c.score, V.c.categories, V.c.shadow,
                                     V.c.error).where(V.c.event_pk.in_(pks)).order_by(V.c.event_pk, V.c.position)):
            out.setdefault(r.event_pk, []).append(FiredVerdict(
                evaluator=r.evaluator, safe=bool(r.safe), score=r.score, categories=json.loads(r.categories),
                shadow=bool(r.shadow), error=r.error is not None))
    return out


def _unreviewed_per_key(conn: Connection, keys: set[str]) -> dict[str, int]:
    if not keys:
        return {}
    return dict(conn.execute(  # rows are (key, value) pairs
        select(E.c.lookalike_key, func.count()).where(E.c.lookalike_key.in_(keys), _unlabelled())
        .group_by(E.c.lookalike_key)).all())


def _unlabelled() -> Any:
    return ~exists().where(t.labels.c.event_pk == E.c.id)


def lookalikes(conn: Connection, event: StoredEvent, limit: int = 200) -> tuple[list[QueueRow], int]:
    """The other unreviewed events that look like `event` (same look-alike key), newest first, and how many
    there are: what a batch label applies to."""
    key = conn.execute(select(E.c.lookalike_key).where(E.c.id == event.pk)).scalar()
    if not key:
        return [], 0
    where = [E.c.lookalike_key == key, E.c.id != event.pk, _unlabelled()]
    total = conn.execute(select(func.count()).select_from(E).where(*where)).scalar_one()
    rows = conn.execute(select(E.c.event_id, E.c.ts, E.c.tenant, E.c.stage, E.c.action, E.c.mode, E.c.categories,
                               E.c.content_mode, E.c.snippet, E.c.snippet_marks)
                        .where(*where).order_by(E.c.ts.desc(), E.c.id.desc()).limit(limit)).all()
    return [QueueRow(event_id=r.event_id, ts=r.ts, tenant=r.tenant, stage=r.stage, action=r.action, mode=r.mode,
                     categories=json.loads(r.categories), evaluators=[], content_mode=r.content_mode,
                     label_count=0, my_label=None, snippet=r.snippet,
                     marks=[tuple(m) for m in json.loads(r.snippet_marks or "[]")])  # stored as [start, end] pairs
            for r in rows], total


def same_lookalike(conn: Connection, event_id: str, others: list[str]) -> list[int]:
    """The primary keys of those of `others` that look like `event_id` (what a batch label may touch)."""
    key = conn.execute(select(E.c.lookalike_key).where(E.c.event_id == event_id)).scalar()
    if not key or not others:
        return []
    return list(conn.execute(select(E.c.id).where(E.c.event_id.in_(others), E.c.lookalike_key == key,
                                                  E.c.event_id != event_id)).scalars())


def neighbours(conn: Connection, f: QueueFilter, event: StoredEvent) -> tuple[str | None, str | None]:
    """(previous, next) event ids around `event` in the queue order, under the same filters."""
    where = _where(f)
    source: Any = E
    if f.order == "value":
        source, value = _from_valued()
        current = conn.execute(select(value).select_from(source).where(E.c.id == event.pk)).scalar() or 0.0
        key, here = tuple_(value, E.c.ts, E.c.id), tuple_(literal(current), literal(event.ts), literal(event.pk))
        before, after = key > here, key < here
        up, down = [value.asc(), E.c.ts.asc(), E.c.id.asc()], _order(f, value)
    else:
        before = or_(E.c.ts > event.ts, and_(E.c.ts == event.ts, E.c.id > event.pk))
        after = or_(E.c.ts < event.ts, and_(E.c.ts == event.ts, E.c.id < event.pk))
        up, down = [E.c.ts.asc(), E.c.id.asc()], _order(f, None)
    step = select(E.c.event_id).select_from(source)
    prev_id = conn.execute(step.where(*where, before).order_by(*up).limit(1)).scalar()
    next_id = conn.execute(step.where(*where, after).order_by(*down).limit(1)).scalar()
    return prev_id, next_id


def first_in_queue(conn: Connection, f: QueueFilter) -> str | None:
    """The event at the head of the queue (after a label, the most valuable one left)."""
    source, value = _from_valued()
    return conn.execute(select(E.c.event_id).select_from(source).where(*_where(f)).order_by(*_order(f, value))
                        .limit(1)).scalar()


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
