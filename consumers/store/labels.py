"""Reviewer labels: appended, never overwritten (the history is the audit trail)."""

from __future__ import annotations

import json
import re
from datetime import datetime

from sqlalchemy import Connection, select

from consumers.store import tables as t
from consumers.store.models import LABELS, Label
from consumers.store.writes import upsert, utcnow

CATEGORY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_NOTE = 4000


def add_label(conn: Connection, event_pk: int, reviewer: str, label: str, categories: list[str] | None = None,
              note: str = "", at: datetime | None = None) -> Label:
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}")
    cats = sorted({c.strip() for c in (categories or []) if c.strip()}) if label == "unsafe" else []
    bad = [c for c in cats if not CATEGORY_RE.match(c)]
    if bad:
        raise ValueError(f"invalid category names: {bad}")
    note = (note or "").strip()[:MAX_NOTE]
    created = at or utcnow()
    first = conn.execute(select(t.labels.c.id).where(t.labels.c.event_pk == event_pk).limit(1)).first() is None
    inserted = conn.execute(t.labels.insert().values(event_pk=event_pk, reviewer=reviewer, label=label,
                                                     categories=json.dumps(cats), note=note, created_at=created)
                            ).inserted_primary_key
    assert inserted is not None  # an INSERT of one row has its key
    pk = inserted[0]
    if first:  # one more labelled event in each of its categories: they become less rare in the queue
        EC = t.event_categories
        upsert(conn, t.category_labels, ["category"],
               [{"category": c, "labelled": 1}
                for c in conn.execute(select(EC.c.category).where(EC.c.event_pk == event_pk)).scalars()],
               add=["labelled"])
    return Label(reviewer=reviewer, label=label, categories=cats, note=note, created_at=created, id=pk)
