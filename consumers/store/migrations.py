"""Versioned schema migrations: numbered functions, applied once each, recorded in `gs_schema_migrations`.

Each migration runs in its own transaction together with the row that records
it (SQLite and PostgreSQL both have transactional DDL), under a lock so two
processes starting at once (review + metrics) cannot both apply it.
A migration creates or alters what it introduced; never edit one that shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, Table, inspect, select, text
from sqlalchemy.schema import CreateColumn

from consumers.store import tables as t

Migration = Callable[[Connection], None]


def _m0001_review_store(conn: Connection) -> None:
    for table in (t.events, t.event_categories, t.verdicts, t.labels, t.reviewers, t.dead_letters, t.settings):
        table.create(conn)


def _m0002_ops_metrics(conn: Connection) -> None:
    for table in (t.metric_events, t.metric_categories, t.metric_evaluators, t.consumer_offsets):
        table.create(conn)


def _m0003_review_queue_value(conn: Connection) -> None:
    """The value-ordered review queue and shadow evaluators: derived columns on events (backfilled), shadow
    verdicts, labelled events per category (backfilled from the labels), shadow agreement aggregates.
    Databases created after this version already have the columns (migration 1 creates the tables as
    tables.py defines them): only what is missing is added."""
    _add_missing_columns(conn, t.events, ("value_base", "lookalike_key", "snippet", "snippet_marks", "disagreement"))
    _add_missing_columns(conn, t.verdicts, ("shadow",))
    for index in t.events.indexes:
        if index.name == "ix_gs_events_lookalike_key":
            index.create(conn, checkfirst=True)
    t.category_labels.create(conn, checkfirst=True)
    t.metric_shadow.create(conn, checkfirst=True)
    from sqlalchemy import func

    from consumers.store.writes import backfill_derived

    backfill_derived(conn)
    L, EC, CL = t.labels, t.event_categories, t.category_labels
    counted = (select(EC.c.category, func.count(func.distinct(L.c.event_pk)))
               .select_from(L.join(EC, EC.c.event_pk == L.c.event_pk)).group_by(EC.c.category))
    if not conn.execute(select(CL.c.category).limit(1)).first():
        conn.execute(CL.insert().from_select(["category", "labelled"], counted))


def _m0004_quality(conn: Connection) -> None:
    """Comparisons of a candidate model with the baseline (events and reviewers' verdicts), comparison outcomes
    and reward scores per minute."""
    for table in (t.comparisons, t.comparison_labels, t.metric_comparisons, t.metric_scores):
        table.create(conn, checkfirst=True)


def _add_missing_columns(conn: Connection, table: Table, names: tuple[str, ...]) -> None:
    """ALTER TABLE ... ADD COLUMN for each of `names` the table does not have yet (DDL from tables.py)."""
    schema = _schema(conn)
    have = {c["name"] for c in inspect(conn).get_columns(table.name, schema=schema)}
    prep = conn.dialect.identifier_preparer
    qualified = (prep.quote_schema(schema) + "." if schema else "") + prep.quote(table.name)
    for name in names:
        if name not in have:
            ddl = CreateColumn(table.c[name]).compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {qualified} ADD COLUMN {ddl}"))


#: (version, name, function), in order
MIGRATIONS: tuple[tuple[int, str, Migration], ...] = (
    (1, "review store: events, verdicts, labels, reviewers, dead letters", _m0001_review_store),
    (2, "ops metrics: per-minute aggregates and consumer offsets", _m0002_ops_metrics),
    (3, "review queue by value, shadow evaluators: derived event columns, category labels, shadow metrics",
     _m0003_review_queue_value),
    (4, "quality: comparisons and their reviews, comparison outcomes and reward scores per minute", _m0004_quality),
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
                version=version, name=name, applied_at=datetime.now(UTC).replace(tzinfo=None)))
            applied_now.append(version)
    return applied_now
