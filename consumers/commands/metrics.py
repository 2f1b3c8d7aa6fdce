"""`guardstream metrics`: aggregate audit events per minute and serve the ops dashboard.

    guardstream metrics --bootstrap kafka:9092 --topic guardstream.events --db var/review.db --port 8091
    guardstream metrics --config guardstream.yaml      # the same from the file's `consumers:` section

Use the review store's database (`--db`): the dashboard's backlog and agreement read its labels.
"""

from __future__ import annotations

import argparse
import sys
import threading

from consumers.commands.common import (
    add_config_arguments,
    load_settings_or_exit,
    open_store_or_exit,
    run_consumer,
    serve_beside_consumer,
    stop_on_signals,
)
from consumers.kafka import add_kafka_arguments, kafka_overrides


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    add_kafka_arguments(parser)
    web = parser.add_argument_group("ops dashboard (flags override the config file's consumers.metrics)")
    web.add_argument("--host", help="bind address (default: 127.0.0.1)")
    web.add_argument("--port", type=int, help="port (default: 8091)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-consume", action="store_true", help="only serve the dashboard")
    mode.add_argument("--no-ui", action="store_true", help="only aggregate")


def run(args: argparse.Namespace) -> int:
    from consumers.kafka import kafka_settings
    from consumers.metrics import MetricsConsumer

    settings = load_settings_or_exit(args, {**kafka_overrides(args, "metrics"), "consumers.metrics.host": args.host,
                                            "consumers.metrics.port": args.port})
    if not args.no_consume and not settings.kafka.bootstrap:
        print("guardstream metrics: --bootstrap is required (or consumers.kafka.bootstrap in --config; or "
              "--no-consume)", file=sys.stderr)
        return 2
    web = settings.metrics
    store = open_store_or_exit(settings, "metrics")
    stop = threading.Event()
    consumer = None if args.no_consume else MetricsConsumer(
        store, kafka_settings(settings.kafka, web.group, client_id="guardstream-metrics"))
    try:
        if args.no_ui:
            assert consumer is not None
            stop_on_signals(stop)
            return run_consumer(consumer, stop, "metrics")
        from consumers.dashboard import create_app

        app = create_app(store, state=(lambda: {"consumer": consumer.state()}) if consumer else None)
        return serve_beside_consumer(app, consumer, stop, host=web.host, port=web.port, thread_name="metrics-consumer",
                                     banner=f"guardstream metrics: dashboard on http://{web.host}:{web.port}/")
    finally:
        store.dispose()
