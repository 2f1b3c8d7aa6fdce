"""Arguments and helpers shared by the consumer commands (kept light: no heavy imports here)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.schemas.consumers import ConsumersConfig

#: exit status of a consumer command whose consumer died (EX_TEMPFAIL): its supervisor restarts it
EXIT_RESTART = 75


def add_config_arguments(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """`--config FILE` and the review store's `--db` / `--db-schema`, which override the file's `consumers.db` /
    `consumers.db_schema`; `suppress` for sub-actions (keeps the parent's)."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", default=default, metavar="FILE",
                        help="YAML config file (the proxy's): its `consumers:` section, docs/configuration.md; "
                             "GUARDSTREAM__CONSUMERS__... environment variables override it, flags override both")
    parser.add_argument("--db", default=default,
                        help="review store: a SQLite file path or a URL such as postgresql://user@host/db "
                             "(default: $GUARDSTREAM_REVIEW_DB, else consumers.db, else var/review.db)")
    parser.add_argument("--db-schema", default=default,
                        help="PostgreSQL schema to keep the tables in (default: consumers.db_schema, else the "
                             "connection's search path)")


def load_settings_or_exit(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> ConsumersConfig:
    """The `consumers` section of `--config` (none: defaults) under the environment and `--db` / `--db-schema`
    and `overrides` (the command's own flags); a bad key ends the command before anything opens or listens, with
    one line per error naming the file and the key (`guardstream: FILE: consumers.review.prot: ...`) and exit
    status 2."""
    from proxy.schemas.config_file import ConfigError, error_lines
    from proxy.schemas.consumers import load_consumers_settings

    flags = {"consumers.db": args.db, "consumers.db_schema": args.db_schema, **(overrides or {})}
    try:
        return load_consumers_settings(args.config, overrides=flags)
    except ConfigError as exc:
        print(error_lines(exc), file=sys.stderr)
        raise SystemExit(2) from None


def open_store_or_exit(settings: ConsumersConfig, command: str) -> Any:
    """The review store of `consumers.db` / `db_schema`; one that cannot be opened ends the command with one line
    on stderr and exit status 2 (not a traceback)."""
    from consumers.store import StoreError, open_store

    try:
        return open_store(settings.db, schema=settings.db_schema)
    except StoreError as exc:
        print(f"guardstream {command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def stop_on_signals(stop: threading.Event) -> None:
    """SIGINT/SIGTERM set `stop` (main thread only)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


class ConsumerThread(threading.Thread):
    """Runs `consumer.run(stop)` beside a web app. A consumer that dies (its Kafka client stopped answering,
    consumers/stall.py) ends the whole command: SIGTERM to itself, and the command exits EXIT_RESTART, rather
    than leaving a UI up over a consumer that no longer consumes."""

    def __init__(self, consumer: Any, stop: threading.Event, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.consumer = consumer
        self.stop = stop
        self.failed: Exception | None = None

    def run(self) -> None:
        try:
            self.consumer.run(self.stop)
        except Exception as exc:
            self.failed = exc
            print(f"guardstream {self.name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)


def run_consumer(consumer: Any, stop: threading.Event, command: str) -> int:
    """`consumer.run(stop)` in this thread (no UI); a consumer whose Kafka client stopped answering ends the
    command with EXIT_RESTART and one line on stderr."""
    from consumers.stall import ConsumerStalled

    try:
        consumer.run(stop)
    except ConsumerStalled as exc:
        print(f"guardstream {command}: {exc}", file=sys.stderr, flush=True)
        return EXIT_RESTART
    return 0


def serve_beside_consumer(app: Any, consumer: Any | None, stop: threading.Event, *, host: str, port: int,
                          banner: str, thread_name: str) -> int:
    """Serve `app` with `consumer` (if any) running in a `ConsumerThread` started and stopped (bounded wait) with
    it; returns the command's exit status (EXIT_RESTART when the consumer died)."""
    from aiohttp import web

    thread = ConsumerThread(consumer, stop, thread_name) if consumer is not None else None

    async def start_consumer(_app: Any) -> None:
        if thread:
            thread.start()

    async def stop_consumer(_app: Any) -> None:
        stop.set()
        if thread and thread.is_alive():
            thread.join(timeout=15)

    app.on_startup.append(start_consumer)
    app.on_cleanup.append(stop_consumer)
    print(banner, flush=True)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
    return EXIT_RESTART if thread and thread.failed else 0
