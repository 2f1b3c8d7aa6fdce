"""The review store: SQLite file by default, PostgreSQL by URL; versioned migrations (migrations.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, inspect, select
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from consumers.store import queries, reviewers
from consumers.store import tables as t
from consumers.store.db import create_store_engine, safe_url
from consumers.store.labels import add_label
from consumers.store.migrations import migrate
from consumers.store.models import DeadLetter, IncomingEvent, Label, Position, QueueFilter, QueueRow, StoredEvent, WriteResult
from consumers.store.writes import write_batch

__all__ = ["Store", "StoreError", "open_store", "DeadLetter", "IncomingEvent", "Label", "Position", "QueueFilter",
           "QueueRow", "StoredEvent", "WriteResult"]


class Store:
    """A migrated database: `write()` for write transactions, `read()` for read-only ones."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self._reader = engine.execution_options(gs_write=False)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._reader.begin() as conn:
            yield conn

    # -- the review consumer ------------------------------------------------------------------------
    def write_batch(self, items: Sequence[IncomingEvent], dead: Sequence[DeadLetter] = (),
                    comparisons: Sequence[IncomingEvent] = ()) -> WriteResult:
        """One transaction; when this returns, the batch is durable."""
        with self.write() as conn:
            return write_batch(conn, items, dead, comparisons)

    # -- reviewers and labels -----------------------------------------------------------------------
    def add_reviewer(self, name: str, secret: str | None = None) -> str:
        with self.write() as conn:
            return reviewers.add_reviewer(conn, name, secret)

    def authenticate(self, name: str, secret: str) -> bool:
        with self.read() as conn:
            return reviewers.authenticate(conn, name, secret)

    def add_label(self, event_id: str, reviewer: str, label: str, categories: list[str] | None = None,
                  note: str = "") -> Label | None:
        with self.write() as conn:
            pk = conn.execute(select(t.events.c.id).where(t.events.c.event_id == event_id)).scalar()
            if pk is None:
                return None
            return add_label(conn, pk, reviewer, label, categories, note)

    def add_labels(self, event_id: str, reviewer: str, label: str, categories: list[str] | None = None,
                   note: str = "", lookalikes: Sequence[str] = ()) -> list[Label] | None:
        """Label `event_id` and those of `lookalikes` that still look like it, in one transaction (a batch
        label). None when `event_id` does not exist; ids that are gone or no longer alike are left out."""
        with self.write() as conn:
            pk = conn.execute(select(t.events.c.id).where(t.events.c.event_id == event_id)).scalar()
            if pk is None:
                return None
            pks = [pk, *queries.same_lookalike(conn, event_id, list(lookalikes))]
            return [add_label(conn, p, reviewer, label, categories, note) for p in pks]

    def get_event(self, event_id: str) -> StoredEvent | None:
        with self.read() as conn:
            return queries.get_event(conn, event_id)

    def secret_setting(self, key: str) -> str:
        """A stored random secret (the UI's session key), created once on first use."""
        with self.read() as conn:
            value = conn.execute(select(t.settings.c.value).where(t.settings.c.key == key)).scalar()
        if value is not None:
            return str(value)
        with self.write() as conn:
            value = conn.execute(select(t.settings.c.value).where(t.settings.c.key == key)).scalar()
            if value is None:
                value = secrets.token_hex(32)
                conn.execute(t.settings.insert().values(key=key, value=value))
            return value

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({safe_url(self.url)!r})"


def open_store(db: str, schema: str | None = None, *, run_migrations: bool = True) -> Store:
    """Connect to `db` (a file path or a SQLAlchemy URL) and bring its schema up to date; a store that cannot
    be opened is a `StoreError` of one line naming the option (`--db` or `--db-schema`)."""
    try:
        engine = create_store_engine(db, schema=schema)
        if schema and schema not in inspect(engine).get_schema_names():
            hint = ("SQLite has no schemas: leave --db-schema out" if engine.dialect.name == "sqlite"
                    else f"create it first: CREATE SCHEMA {schema}")
            raise StoreError(f"--db-schema {schema}: no such schema in {_shown(db)} ({hint})")
        if run_migrations:
            migrate(engine)
    except (SQLAlchemyError, ImportError, OSError, ValueError) as exc:
        raise StoreError(f"--db {_shown(db)}: {_reason(exc)}") from None
    return Store(engine, db)


class StoreError(Exception):
    """The review store cannot be opened (bad URL, unreachable server, missing schema or driver)."""


def _shown(db: str) -> str:
    try:
        return safe_url(db)
    except (ArgumentError, ValueError):
        return db.rpartition("@")[2]  # not a URL: at least no password in the message


def _reason(exc: Exception) -> str:
    if isinstance(exc, NoSuchModuleError):
        return "unknown kind of database (give a file path, sqlite:///FILE or postgresql://USER@HOST/DB)"
    if isinstance(exc, ImportError):
        return (f"its driver is not installed ({exc.name}); for PostgreSQL: pip install 'guardstream[postgres]'")
    if isinstance(exc, ArgumentError):
        return "not a database URL (give a file path, sqlite:///FILE or postgresql://USER@HOST/DB)"
    detail = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
    return " ".join(detail.split()) or type(exc).__name__
