"""Kafka consumer settings shared by the review and metrics consumers (kafka-python, manual commits)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from proxy.schemas.consumers import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_POLL_INTERVAL_MS,
    DEFAULT_MAX_STALLS,
    DEFAULT_SESSION_TIMEOUT_MS,
    DEFAULT_STALL_LIMIT_S,
    ConsumerKafkaConfig,
)
from proxy.schemas.events import DEFAULT_TOPIC


@dataclass(slots=True)
class KafkaSettings:
    bootstrap: str
    topic: str = DEFAULT_TOPIC
    group_id: str = "guardstream-review"
    client_id: str = "guardstream-consumer"
    max_poll_records: int = DEFAULT_BATCH_SIZE
    poll_timeout_ms: int = 1000
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = DEFAULT_MAX_POLL_INTERVAL_MS
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


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """The Kafka flags; each overrides its `consumers.kafka` key (`--group`: `consumers.<command>.group`)."""
    group = parser.add_argument_group("Kafka (flags override the config file's consumers.kafka)")
    group.add_argument("--bootstrap", metavar="HOST:PORT[,...]",
                       help="Kafka bootstrap servers (default: consumers.kafka.bootstrap, else audit.kafka_bootstrap)")
    group.add_argument("--topic", help=f"audit topic (default: consumers.kafka.topic, else audit.topic, else "
                                       f"{DEFAULT_TOPIC})")
    group.add_argument("--group", help="consumer group id (default: consumers.<command>.group, else "
                                       "guardstream-<command>)")
    group.add_argument("--batch-size", type=int,
                       help=f"max records per poll = per DB transaction (default: {DEFAULT_BATCH_SIZE})")
    group.add_argument("--session-timeout-ms", type=int,
                       help="group session timeout: how fast a dead consumer's partitions move (default: 10000)")
    group.add_argument("--max-poll-interval-ms", type=int,
                       help="max time between polls (also the rebalance timeout new members wait for; default: 300000)")
    group.add_argument("--security-protocol", choices=["PLAINTEXT", "SSL"])
    group.add_argument("--ssl-cafile")


def kafka_overrides(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The Kafka flags as config overrides (dotted key -> value; None: the flag was not given)."""
    keys = ("bootstrap", "topic", "batch_size", "session_timeout_ms", "max_poll_interval_ms", "security_protocol",
            "ssl_cafile")
    return {**{f"consumers.kafka.{key}": getattr(args, key) for key in keys},
            f"consumers.{command}.group": args.group}


def kafka_settings(config: ConsumerKafkaConfig, group_id: str, client_id: str) -> KafkaSettings:
    """The consumer's KafkaSettings from its validated config section (the command checked `bootstrap` is set)."""
    if not config.bootstrap:
        raise ValueError("consumers.kafka.bootstrap: no Kafka bootstrap servers")
    return KafkaSettings(bootstrap=config.bootstrap, topic=config.topic or DEFAULT_TOPIC, group_id=group_id,
                         client_id=client_id, max_poll_records=config.batch_size,
                         session_timeout_ms=config.session_timeout_ms,
                         heartbeat_interval_ms=max(100, min(3000, config.session_timeout_ms // 5)),
                         max_poll_interval_ms=config.max_poll_interval_ms,
                         security_protocol=config.security_protocol, ssl_cafile=config.ssl_cafile,
                         stall_limit_s=config.stall_limit_s, max_stalls=config.max_stalls)
