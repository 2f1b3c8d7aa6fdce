"""Engines for the review store: a SQLite file by default, PostgreSQL by URL.

SQLite runs in WAL mode with `synchronous=FULL` (a committed transaction is on
disk before offsets are committed to Kafka), foreign keys on, and real
transactions: writes begin with `BEGIN IMMEDIATE`, so DDL is transactional and
concurrent writers queue on the busy timeout instead of failing mid-way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def normalize_url(db: str) -> str:
    """`path/to/file.db` or `sqlite:///...` or `postgresql://...` -> a SQLAlchemy URL (psycopg 3 driver)."""
    if "://" not in db:
        path = Path(db).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    url = make_url(db)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def safe_url(db: str) -> str:
    """The URL with its password hidden, for logs and manifests."""
    if "://" not in db:
        return db
    return make_url(db).render_as_string(hide_password=True)


def create_store_engine(db: str, schema: str | None = None, **kwargs: Any) -> Engine:
    url = normalize_url(db)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _sqlite_transactions(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
    if schema:
        engine = engine.execution_options(schema_translate_map={None: schema})
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (SQLAlchemy's documented pysqlite recipe)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # every transaction that may write takes the write lock up front; reads stay deferred
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("gs_write", True) else "BEGIN")
