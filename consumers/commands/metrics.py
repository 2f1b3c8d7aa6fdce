"""`guardstream metrics`: aggregate audit events per minute and serve the ops dashboard.

    guardstream metrics --bootstrap kafka:9092 --topic guardstream.events --db var/review.db --port 8091

Use the review store's database (`--db`): the dashboard's backlog and agreement read its labels.
"""

from __future__ import annotations

import argparse
import sys
import threading

from consumers.commands.common import (
    add_db_arguments,
    open_store_or_exit,
    run_consumer,
    serve_beside_consumer,
    stop_on_signals,
)
from consumers.kafka import add_kafka_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    add_db_arguments(parser)
    add_kafka_arguments(parser, default_group="guardstream-metrics")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-consume", action="store_true", help="only serve the dashboard")
    mode.add_argument("--no-ui", action="store_true", help="only aggregate")


def run(args: argparse.Namespace) -> int:
    from consumers.kafka import kafka_settings_from_args
    from consumers.metrics import MetricsConsumer

    if not args.no_consume and not args.bootstrap:
        print("guardstream metrics: --bootstrap is required (or --no-consume)", file=sys.stderr)
        return 2
    store = open_store_or_exit(args, "metrics")
    stop = threading.Event()
    consumer = None if args.no_consume else MetricsConsumer(
        store, kafka_settings_from_args(args, client_id="guardstream-metrics"))
    try:
        if args.no_ui:
            assert consumer is not None
            stop_on_signals(stop)
            return run_consumer(consumer, stop, "metrics")
        from consumers.dashboard import create_app

        app = create_app(store, state=(lambda: {"consumer": consumer.state()}) if consumer else None)
        return serve_beside_consumer(app, consumer, stop, host=args.host, port=args.port, thread_name="metrics-consumer",
                                     banner=f"guardstream metrics: dashboard on http://{args.host}:{args.port}/")
    finally:
        store.dispose()
