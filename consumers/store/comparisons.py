"""Comparisons in the review store: the list reviewers work through, one comparison, reviewers' verdicts, and
what the DPO export reads.

A reviewer says which answer is better: `baseline`, `candidate` or `tie` (confirming the judge, or flipping
it). Each reviewer's latest verdict counts; `verdict_of` is the consensus: every reviewer agreeing, else none.
The list is ordered by what the judge was least sure of (smallest |margin|; decisions made on safety grounds
last: they need no taste) or newest first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, exists, func, select

from consumers.store import tables as t
from consumers.store.writes import utcnow

C, CL = t.comparisons, t.comparison_labels
WINNERS = ("baseline", "candidate", "tie")
ORDERS = ("uncertain", "newest")
STATUSES = ("unreviewed", "reviewed", "all")


@dataclass(frozen=True, slots=True)
class ComparisonLabel:
    reviewer: str
    winner: str
    note: str
    created_at: datetime
    id: int = 0


@dataclass(slots=True)
class ComparisonFilter:
    candidate: str | None = None
    tenant: str | None = None
    outcome: str | None = None
    status: str = "unreviewed"
    order: str = "uncertain"

    def as_params(self) -> dict[str, str]:
        out = {k: v for k in ("candidate", "tenant", "outcome") if (v := getattr(self, k))}
        return {**out, "status": self.status, "order": self.order}


@dataclass(slots=True)
class ComparisonRow:
    event_id: str
    ts: datetime
    tenant: str
    baseline: str
    candidate: str
    outcome: str
    decided_by: str
    margin: float | None
    content_mode: str
    label_count: int
    my_winner: str | None


@dataclass(slots=True)
class StoredComparison:
    pk: int
    event_id: str
    ts: datetime
    payload: dict[str, Any]
    labels: list[ComparisonLabel] = field(default_factory=list)

    @property
    def judged_winner(self) -> str:
        """The judge's (or safety's) pick, as a winner: candidate for a win, baseline for a loss, else tie."""
        return {"win": "candidate", "loss": "baseline"}.get(self.payload["outcome"], "tie")

    def latest_by_reviewer(self) -> dict[str, ComparisonLabel]:
        latest: dict[str, ComparisonLabel] = {}
        for label in sorted(self.labels, key=lambda lab: (lab.created_at, lab.id)):
            latest[label.reviewer] = label
        return latest


def verdict_of(labels: list[ComparisonLabel]) -> str | None:
    """The reviewers' winner when every reviewer's latest verdict names the same one; None otherwise."""
    latest: dict[str, ComparisonLabel] = {}
    for label in sorted(labels, key=lambda lab: (lab.created_at, lab.id)):
        latest[label.reviewer] = label
    winners = {label.winner for label in latest.values()}
    return winners.pop() if len(winners) == 1 else None


def _where(f: ComparisonFilter) -> list[Any]:
    clauses: list[Any] = [C.c[name] == value for name in ("candidate", "tenant", "outcome")
                          if (value := getattr(f, name))]
    labelled = exists().where(CL.c.comparison_pk == C.c.id)
    if f.status == "unreviewed":
        clauses.append(~labelled)
    elif f.status == "reviewed":
        clauses.append(labelled)
    return clauses


def _order(f: ComparisonFilter) -> list[Any]:
    if f.order == "newest":
        return [C.c.ts.desc(), C.c.id.desc()]
    return [case((C.c.decided_by == "safety", 1), else_=0), func.abs(func.coalesce(C.c.margin, 0.0)),
            C.c.ts.desc(), C.c.id.desc()]


def page(conn: Connection, f: ComparisonFilter, reviewer: str | None, limit: int = 50,
         offset: int = 0) -> tuple[list[ComparisonRow], int]:
    where = _where(f)
    total = conn.execute(select(func.count()).select_from(C).where(*where)).scalar_one()
    count = select(func.count(func.distinct(CL.c.reviewer))).where(CL.c.comparison_pk == C.c.id).scalar_subquery()
    mine = (select(CL.c.winner).where(CL.c.comparison_pk == C.c.id, CL.c.reviewer == (reviewer or ""))
            .order_by(CL.c.created_at.desc(), CL.c.id.desc()).limit(1).scalar_subquery())
    rows = conn.execute(select(C.c.event_id, C.c.ts, C.c.tenant, C.c.baseline, C.c.candidate, C.c.outcome,
                               C.c.decided_by, C.c.margin, C.c.content_mode, count.label("label_count"),
                               mine.label("my_winner"))
                        .where(*where).order_by(*_order(f)).limit(limit).offset(offset)).all()
    return [ComparisonRow(**r._mapping) for r in rows], total


def next_after(conn: Connection, f: ComparisonFilter, event_id: str) -> str | None:
    """The first comparison of the list other than `event_id` (after a verdict: the next one to look at)."""
    return conn.execute(select(C.c.event_id).where(*_where(f), C.c.event_id != event_id).order_by(*_order(f))
                        .limit(1)).scalar()


def get(conn: Connection, event_id: str) -> StoredComparison | None:
    row = conn.execute(select(C.c.id, C.c.event_id, C.c.ts, C.c.payload).where(C.c.event_id == event_id)).first()
    if row is None:
        return None
    return StoredComparison(row.id, row.event_id, row.ts, json.loads(row.payload), labels_of(conn, [row.id])[row.id])


def labels_of(conn: Connection, pks: list[int]) -> dict[int, list[ComparisonLabel]]:
    out: dict[int, list[ComparisonLabel]] = {pk: [] for pk in pks}
    for r in conn.execute(select(CL).where(CL.c.comparison_pk.in_(pks)).order_by(CL.c.created_at, CL.c.id)):
        out[r.comparison_pk].append(ComparisonLabel(r.reviewer, r.winner, r.note, r.created_at, r.id))
    return out


def add_label(conn: Connection, event_id: str, reviewer: str, winner: str, note: str = "") -> ComparisonLabel | None:
    """Store a reviewer's verdict (None when the comparison does not exist). ValueError for an unknown winner."""
    if winner not in WINNERS:
        raise ValueError(f"winner must be one of {', '.join(WINNERS)}")
    pk = conn.execute(select(C.c.id).where(C.c.event_id == event_id)).scalar()
    if pk is None:
        return None
    now = utcnow()
    note = note[:4000]
    new_id = conn.execute(CL.insert().values(comparison_pk=pk, reviewer=reviewer[:128], winner=winner, note=note,
                                             created_at=now).returning(CL.c.id)).scalar_one()
    return ComparisonLabel(reviewer, winner, note, now, new_id)


def candidates(conn: Connection) -> list[str]:
    return list(conn.execute(select(C.c.candidate).distinct().order_by(C.c.candidate)).scalars())


def counts(conn: Connection) -> dict[str, int]:
    labelled = exists().where(CL.c.comparison_pk == C.c.id)
    return {"comparisons": conn.execute(select(func.count()).select_from(C)).scalar_one(),
            "unreviewed": conn.execute(select(func.count()).select_from(C).where(~labelled)).scalar_one()}


def all_comparisons(conn: Connection, chunk: int = 500) -> Iterator[StoredComparison]:
    """Every comparison with its verdicts, in store order (keyset pages): what the DPO export reads."""
    last = 0
    while True:
        rows = conn.execute(select(C.c.id, C.c.event_id, C.c.ts, C.c.payload).where(C.c.id > last).order_by(C.c.id)
                            .limit(chunk)).all()
        if not rows:
            return
        labels = labels_of(conn, [r.id for r in rows])
        for r in rows:
            yield StoredComparison(r.id, r.event_id, r.ts, json.loads(r.payload), labels[r.id])
        last = rows[-1].id
