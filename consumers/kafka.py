"""Kafka consumer settings shared by the review and metrics consumers (kafka-python, manual commits)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from consumers.stall import DEFAULT_MAX_STALLS, DEFAULT_STALL_LIMIT_S
from proxy.schemas.events import DEFAULT_TOPIC


@dataclass(slots=True)
class KafkaSettings:
    bootstrap: str
    topic: str = DEFAULT_TOPIC
    group_id: str = "guardstream-review"
    client_id: str = "guardstream-consumer"
    max_poll_records: int = 500
    poll_timeout_ms: int = 1000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str | None = None
    #: a poll or commit still running after this long is released (consumers/stall.py)
    stall_limit_s: float = DEFAULT_STALL_LIMIT_S
    #: stalls in a row after which the consumer gives up (its command exits for a restart)
    max_stalls: int = DEFAULT_MAX_STALLS
    extra: dict[str, Any] = field(default_factory=dict)

    def consumer_config(self) -> dict[str, Any]:
        """kafka-python KafkaConsumer keyword arguments: offsets are committed by us, after the DB commit."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap.split(","),
            "group_id": self.group_id,
            "client_id": self.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": self.max_poll_records,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "max_poll_interval_ms": self.max_poll_interval_ms,
            "security_protocol": self.security_protocol,
        }
        if self.ssl_cafile:
            config["ssl_cafile"] = self.ssl_cafile
        config.update(self.extra)
        return config


def add_kafka_arguments(parser: argparse.ArgumentParser, default_group: str) -> None:
    group = parser.add_argument_group("Kafka")
    group.add_argument("--bootstrap", metavar="HOST:PORT[,...]", help="Kafka bootstrap servers")
    group.add_argument("--topic", default=DEFAULT_TOPIC, help="audit topic (default: %(default)s)")
    group.add_argument("--group", default=default_group, help="consumer group id (default: %(default)s)")
    group.add_argument("--batch-size", type=int, default=500, help="max records per poll = per DB transaction")
    group.add_argument("--session-timeout-ms", type=int, default=10_000,
                       help="group session timeout: how fast a dead consumer's partitions move")
    group.add_argument("--max-poll-interval-ms", type=int, default=300_000,
                       help="max time between polls (also the rebalance timeout new members wait for)")
    group.add_argument("--security-protocol", default="PLAINTEXT",
                       choices=["PLAINTEXT", "SSL"])
    group.add_argument("--ssl-cafile", default=None)


def kafka_settings_from_args(args: argparse.Namespace, client_id: str) -> KafkaSettings:
    return KafkaSettings(bootstrap=args.bootstrap, topic=args.topic, group_id=args.group, client_id=client_id,
                         max_poll_records=args.batch_size, session_timeout_ms=args.session_timeout_ms,
                         heartbeat_interval_ms=max(100, min(3000, args.session_timeout_ms // 5)),
                         max_poll_interval_ms=args.max_poll_interval_ms, security_protocol=args.security_protocol,
                         ssl_cafile=args.ssl_cafile)
