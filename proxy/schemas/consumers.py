"""The consumers' settings: the `consumers:` section of the proxy's config file (docs/configuration.md).

The proxy validates the whole file, this section included (`proxy.config.Settings.consumers`); the consumer
commands (`guardstream review / metrics / export --config FILE`) read only this section with
`load_consumers_settings`, so they need nothing else from the proxy. Precedence, as for the proxy: flag >
environment (`GUARDSTREAM__CONSUMERS__...`, and `GUARDSTREAM_REVIEW_DB` for `db`) > file > default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxy.schemas.config_file import apply_overrides, read_mapping, set_path, validation_error
from proxy.schemas.events import DEFAULT_TOPIC

DEFAULT_DB = "var/review.db"
#: the review store's database, from before the config file had a `consumers` section (an alias of
#: GUARDSTREAM__CONSUMERS__DB, which wins when both are set)
REVIEW_DB_ENV = "GUARDSTREAM_REVIEW_DB"
#: records per poll (and per DB transaction), the session timeout and the longest gap between polls
DEFAULT_BATCH_SIZE = 500
DEFAULT_SESSION_TIMEOUT_MS = 10_000
DEFAULT_MAX_POLL_INTERVAL_MS = 300_000
#: seconds a guarded Kafka call may run; polls are bounded at about a second, commits at the request timeout
DEFAULT_STALL_LIMIT_S = 60.0
#: stalls in a row after which a consumer gives up and its process exits for a restart
DEFAULT_MAX_STALLS = 3
#: how an error names the source when no file was given (errors then come from the environment or flags)
NO_FILE = "(no config file)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsumerKafkaConfig(_Strict):
    """The Kafka side of the review and metrics consumers (kafka-python, manual commits)."""

    bootstrap: str | None = Field(default=None, description="bootstrap servers, HOST:PORT[,...] (null: "
                                                            "audit.kafka_bootstrap of the same file)")
    topic: str | None = Field(default=None, description="the audit topic (null: audit.topic of the same file, "
                                                        f"else {DEFAULT_TOPIC})")
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, gt=0, description="records per poll, written in one DB transaction")
    session_timeout_ms: int = Field(default=DEFAULT_SESSION_TIMEOUT_MS, gt=0,
                                    description="how fast a dead consumer's partitions move")
    max_poll_interval_ms: int = Field(default=DEFAULT_MAX_POLL_INTERVAL_MS, gt=0, description="max time between polls")
    security_protocol: Literal["PLAINTEXT", "SSL"] = "PLAINTEXT"
    ssl_cafile: str | None = None
    stall_limit_s: float = Field(default=DEFAULT_STALL_LIMIT_S, gt=0, description=(
        "a Kafka poll or commit still running after this long is released (consumers/stall.py)"))
    max_stalls: int = Field(default=DEFAULT_MAX_STALLS, gt=0, description=(
        "stalls in a row after which the consumer gives up and its command exits for a restart"))


class ReviewConfig(_Strict):
    """`guardstream review`: its consumer group and the review UI."""

    group: str = "guardstream-review"
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    secure_cookies: bool = Field(default=False, description="session cookies marked Secure (serve over TLS)")


class MetricsConfig(_Strict):
    """`guardstream metrics`: its consumer group and the ops dashboard."""

    group: str = "guardstream-metrics"
    host: str = "127.0.0.1"
    port: int = Field(default=8091, ge=0, le=65535)


class ConsumersConfig(_Strict):
    """The `consumers:` section."""

    db: str = Field(default=DEFAULT_DB, description="the review store: a SQLite file path or a SQLAlchemy URL")
    db_schema: str | None = Field(default=None, description="PostgreSQL schema of the tables (null: the "
                                                            "connection's search path)")
    kafka: ConsumerKafkaConfig = Field(default_factory=ConsumerKafkaConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)


class _ConsumersFile(BaseModel):
    """The file as the consumers see it: their section; the proxy's sections are the proxy's to validate."""

    model_config = ConfigDict(extra="ignore")

    consumers: ConsumersConfig = Field(default_factory=ConsumersConfig)


def load_consumers_settings(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
                            overrides: Mapping[str, Any] | None = None) -> ConsumersConfig:
    """The `consumers` section of the YAML file at `path` (none: defaults), with environment and flag overrides
    (`overrides`: dotted key -> value, None for a flag not given), validated; a ConfigError of one line per error
    naming the file and the key. Kafka's bootstrap and topic left null come from the file's `audit` section."""
    env = os.environ if env is None else env
    source: Path | str = Path(path) if path else NO_FILE
    raw = read_mapping(source) if isinstance(source, Path) else {}
    if env.get(REVIEW_DB_ENV):
        set_path(raw, ["consumers", "db"], env[REVIEW_DB_ENV])
    apply_overrides(raw, env, overrides)
    try:
        settings = _ConsumersFile.model_validate(raw).consumers
    except ValidationError as exc:
        raise validation_error(source, exc) from None
    audit = raw.get("audit")
    audit = audit if isinstance(audit, dict) else {}
    kafka = settings.kafka
    bootstrap = kafka.bootstrap or _text(audit.get("kafka_bootstrap"))
    topic = kafka.topic or _text(audit.get("topic")) or DEFAULT_TOPIC
    return settings.model_copy(update={"kafka": kafka.model_copy(update={"bootstrap": bootstrap, "topic": topic})})


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
