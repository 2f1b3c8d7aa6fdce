"""Versioned schema migrations: numbered functions, applied once each, recorded in `gs_schema_migrations`.

Each migration runs in its own transaction together with the row that records
it (SQLite and PostgreSQL both have transactional DDL), under a lock so two
processes starting at once (review + metrics) cannot both apply it.
A migration creates or alters what it introduced; never edit one that shipped.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import Connection, Engine, select, text

from consumers.store import tables as t

Migration = Callable[[Connection], None]


def _m0001_review_store(conn: Connection) -> None:
    for table in (t.events, t.event_categories, t.verdicts, t.labels, t.reviewers, t.dead_letters, t.settings):
        table.create(conn)


def _m0002_ops_metrics(conn: Connection) -> None:
    for table in (t.metric_events, t.metric_categories, t.metric_evaluators, t.consumer_offsets):
        table.create(conn)


#: (version, name, function), in order
MIGRATIONS: tuple[tuple[int, str, Migration], ...] = (
    (1, "review store: events, verdicts, labels, reviewers, dead letters", _m0001_review_store),
    (2, "ops metrics: per-minute aggregates and consumer offsets", _m0002_ops_metrics),
)

_PG_LOCK_ID = 0x6775617264  # "guard"


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
    # SQLite: the write transaction is BEGIN IMMEDIATE (see db.py), which already excludes other writers


def applied_versions(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        if not conn.dialect.has_table(conn, t.schema_migrations.name, schema=_schema(conn)):
            return []
        return list(conn.execute(select(t.schema_migrations.c.version).order_by(t.schema_migrations.c.version))
                    .scalars())


def _schema(conn: Connection) -> str | None:
    translate = conn.get_execution_options().get("schema_translate_map") or {}
    return translate.get(None)


def migrate(engine: Engine) -> list[int]:
    """Apply every pending migration; returns the versions applied now."""
    applied_now: list[int] = []
    for version, name, func in MIGRATIONS:
        with engine.begin() as conn:
            _lock(conn)
            t.schema_migrations.create(conn, checkfirst=True)
            done = conn.execute(select(t.schema_migrations.c.version)
                                .where(t.schema_migrations.c.version == version)).first()
            if done:
                continue
            func(conn)
            conn.execute(t.schema_migrations.insert().values(
                version=version, name=name, applied_at=datetime.now(timezone.utc).replace(tzinfo=None)))
            applied_now.append(version)
    return applied_now
