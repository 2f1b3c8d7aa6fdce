"""`guardstream review`: consume audit events into the review store and serve the review UI.

    guardstream review --bootstrap kafka:9092 --topic guardstream.events --db var/review.db --port 8090
    guardstream review --no-consume --db postgresql://review@db/review      # UI only
    guardstream review --no-ui --bootstrap kafka:9092 --db ...               # consumer only
    guardstream review add-reviewer alice --db ...                           # prints a new secret once
    guardstream review --config guardstream.yaml                             # settings from `consumers:`
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING

from consumers.commands.common import (
    add_config_arguments,
    load_settings_or_exit,
    open_store_or_exit,
    run_consumer,
    serve_beside_consumer,
    stop_on_signals,
)
from consumers.kafka import add_kafka_arguments, kafka_overrides

if TYPE_CHECKING:
    from proxy.schemas.consumers import ConsumersConfig


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    add_kafka_arguments(parser)
    web = parser.add_argument_group("review UI (flags override the config file's consumers.review)")
    web.add_argument("--host", help="bind address (default: 127.0.0.1)")
    web.add_argument("--port", type=int, help="port (default: 8090)")
    web.add_argument("--secure-cookies", action="store_true", default=None,
                     help="mark session cookies Secure (serve over TLS)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-consume", action="store_true", help="only serve the UI")
    mode.add_argument("--no-ui", action="store_true", help="only consume")
    sub = parser.add_subparsers(dest="review_action", metavar="ACTION")
    add = sub.add_parser("add-reviewer", help="create a reviewer (or reset their secret); prints the secret once")
    add.add_argument("name")
    add.add_argument("--secret-stdin", action="store_true", help="read the secret from stdin instead of generating")
    add_config_arguments(add, suppress=True)
    remove = sub.add_parser("remove-reviewer", help="deactivate a reviewer (their labels stay)")
    remove.add_argument("name")
    add_config_arguments(remove, suppress=True)
    listing = sub.add_parser("list-reviewers", help="list reviewers")
    add_config_arguments(listing, suppress=True)
    migrate = sub.add_parser("migrate", help="create or upgrade the store's tables, then exit")
    add_config_arguments(migrate, suppress=True)


def run(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit(args, {
        **kafka_overrides(args, "review"), "consumers.review.host": args.host, "consumers.review.port": args.port,
        "consumers.review.secure_cookies": args.secure_cookies})
    if not args.review_action and not args.no_consume and not settings.kafka.bootstrap:
        print("guardstream review: --bootstrap is required (or consumers.kafka.bootstrap in --config; or "
              "--no-consume to only serve the UI)", file=sys.stderr)
        return 2
    store = open_store_or_exit(settings, "review")
    try:
        if args.review_action:
            return _admin(store, args)
        return _serve(store, settings, args.no_consume, args.no_ui)
    finally:
        store.dispose()


def _admin(store, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]  # store: the review Store, imported lazily
    from consumers.store import reviewers

    if args.review_action == "migrate":
        print(f"store is up to date: {store!r}")
        return 0
    if args.review_action == "add-reviewer":
        secret = sys.stdin.readline().strip() if args.secret_stdin else None
        try:
            secret = store.add_reviewer(args.name, secret)
        except ValueError as exc:
            print(f"guardstream review add-reviewer: {exc}", file=sys.stderr)
            return 2
        if args.secret_stdin:
            print(f"reviewer {args.name} saved")
        else:
            print(f"reviewer {args.name} saved; secret (shown once, only its scrypt hash is stored):\n{secret}")
        return 0
    with store.write() as conn:
        if args.review_action == "remove-reviewer":
            if not reviewers.deactivate_reviewer(conn, args.name):
                print(f"no reviewer {args.name!r}", file=sys.stderr)
                return 1
            print(f"reviewer {args.name} deactivated")
            return 0
        for name, active in reviewers.list_reviewers(conn):
            print(f"{name}\t{'active' if active else 'inactive'}")
    return 0


def _serve(store, settings: ConsumersConfig, no_consume: bool, no_ui: bool) -> int:  # type: ignore[no-untyped-def]  # store: the review Store, imported lazily
    from consumers.kafka import kafka_settings
    from consumers.review import ReviewConsumer

    stop = threading.Event()
    web = settings.review
    kafka = None if no_consume else kafka_settings(settings.kafka, web.group, client_id="guardstream-review")
    consumer = None if kafka is None else ReviewConsumer(store, kafka)
    if no_ui:
        stop_on_signals(stop)
        assert consumer is not None
        return run_consumer(consumer, stop, "review")

    from consumers.review_ui import create_app

    state = (lambda: {"consumer": consumer.state()}) if consumer else None
    app = create_app(store, state=state, secure_cookies=web.secure_cookies)
    return serve_beside_consumer(
        app, consumer, stop, host=web.host, port=web.port, thread_name="review-consumer",
        banner=f"guardstream review: UI on http://{web.host}:{web.port}/ "
               f"({'consuming ' + kafka.topic if kafka else 'not consuming'})")
