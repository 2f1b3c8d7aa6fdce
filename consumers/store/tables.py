"""The review store's tables (SQLAlchemy Core), as the latest migration leaves them.

Change a table only through a new migration in `migrations.py`; this module is
what the code reads and writes against.
"""

from __future__ import annotations

from sqlalchemy import (
                        BigInteger,
                        Boolean,
                        Column,
                        DateTime,
                        Float,
                        ForeignKey,
                        Index,
                        Integer,
                        LargeBinary,
                        MetaData,
                        String,
                        Table,
                        Text,
                        UniqueConstraint,
                        false,
)

metadata = MetaData()

#: applied migrations (see migrations.py)
schema_migrations = Table(
    "gs_schema_migrations", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("applied_at", DateTime, nullable=False),
)

#: one row per audit event (deduplicated on event_id); `payload` is the event as received
events = Table(
    "gs_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("ts", DateTime, nullable=False, index=True),
    Column("request_id", String(256), nullable=False, index=True),
    Column("tenant", String(256), nullable=False, index=True),
    Column("policy", String(256), nullable=False),
    Column("stage", String(16), nullable=False, index=True),
    Column("action", String(16), nullable=False, index=True),
    Column("mode", String(16), nullable=False),
    Column("model", String(256)),
    Column("upstream", String(1024), nullable=False),
    Column("route", String(256)),
    Column("stream_mode", String(32)),
    Column("choice_index", Integer),
    Column("categories", Text, nullable=False),  # JSON list, for display
    Column("content_mode", String(16), nullable=False),
    Column("content_sha256", String(64), nullable=False, index=True),
    Column("latency_ms", Float, nullable=False),
    Column("payload", Text, nullable=False),
    Column("kafka_topic", String(255)),
    Column("kafka_partition", Integer),
    Column("kafka_offset", BigInteger),
    Column("received_at", DateTime, nullable=False),
    # the review queue's view of the event (consumers/store/derive.py), worked out when it is stored (m0003)
    Column("value_base", Float, nullable=False, server_default="0"),
    Column("lookalike_key", String(64), index=True),
    Column("snippet", Text),
    Column("snippet_marks", Text),  # JSON [[start, end, label], ...] in the snippet
    Column("disagreement", Boolean, nullable=False, server_default=false()),
)

#: event -> category (queue filter)
event_categories = Table(
    "gs_event_categories", metadata,
    Column("event_pk", Integer, ForeignKey("gs_events.id", ondelete="CASCADE"), primary_key=True),
    Column("category", String(64), primary_key=True),
    Index("ix_gs_event_categories_category", "category"),
)

#: every evaluator verdict of an event
verdicts = Table(
    "gs_verdicts", metadata,
    Column("id", Integer, primary_key=True),
    Column("event_pk", Integer, ForeignKey("gs_events.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("evaluator", String(256), nullable=False, index=True),
    Column("version", String(128), nullable=False),
    Column("safe", Boolean, nullable=False),
    Column("categories", Text, nullable=False),  # JSON list
    Column("score", Float),
    Column("latency_ms", Float),
    Column("cached", Boolean),
    Column("error", Text),
    Column("shadow", Boolean, nullable=False, server_default=false()),  # a shadow (candidate) evaluator's (m0003)
)

#: reviewer labels; never updated, so the history is kept (latest per reviewer counts)
labels = Table(
    "gs_labels", metadata,
    Column("id", Integer, primary_key=True),
    Column("event_pk", Integer, ForeignKey("gs_events.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("reviewer", String(128), nullable=False, index=True),
    Column("label", String(16), nullable=False),  # unsafe | safe | not_sure
    Column("categories", Text, nullable=False),  # JSON list (corrected categories for unsafe)
    Column("note", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

reviewers = Table(
    "gs_reviewers", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("secret_hash", String(512), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

#: messages that could not be stored as events: kept raw, with the reason
dead_letters = Table(
    "gs_dead_letters", metadata,
    Column("id", Integer, primary_key=True),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("key", LargeBinary),
    Column("raw", LargeBinary),
    Column("reason", Text, nullable=False),
    Column("received_at", DateTime, nullable=False),
    UniqueConstraint("topic", "partition", "offset", name="uq_gs_dead_letters_position"),
)

#: small key/value settings (the UI's session signing secret)
settings = Table(
    "gs_settings", metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)

#: labelled events per category (an event counts once, for each of its categories): the queue's rarity
category_labels = Table(
    "gs_category_labels", metadata,
    Column("category", String(64), primary_key=True),
    Column("labelled", BigInteger, nullable=False),
)

# -- ops metrics (consumers/metrics.py) ---------------------------------------------------------------
#: events per minute by stage, action and tenant
metric_events = Table(
    "gs_metric_events", metadata,
    Column("minute", DateTime, primary_key=True),
    Column("stage", String(16), primary_key=True),
    Column("action", String(16), primary_key=True),
    Column("tenant", String(256), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

#: events per minute by stage, action and category (an event counts once per category)
metric_categories = Table(
    "gs_metric_categories", metadata,
    Column("minute", DateTime, primary_key=True),
    Column("stage", String(16), primary_key=True),
    Column("action", String(16), primary_key=True),
    Column("category", String(64), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

#: evaluator verdicts per minute: calls, unsafe verdicts, errors, cache hits, latency sum
metric_evaluators = Table(
    "gs_metric_evaluators", metadata,
    Column("minute", DateTime, primary_key=True),
    Column("evaluator", String(256), primary_key=True),
    Column("stage", String(16), primary_key=True),
    Column("calls", BigInteger, nullable=False),
    Column("unsafe", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("cached", BigInteger, nullable=False),
    Column("latency_ms_sum", Float, nullable=False),
)

#: the metrics consumer's positions, written in the same transaction as its aggregates (exactly once)
consumer_offsets = Table(
    "gs_consumer_offsets", metadata,
    Column("group_id", String(255), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)

#: shadow evaluators' agreement with their live counterparts, per minute (from the proxies' shadow tallies)
metric_shadow = Table(
    "gs_metric_shadow", metadata,
    Column("minute", DateTime, primary_key=True),
    Column("stage", String(16), primary_key=True),
    Column("shadow", String(256), primary_key=True),
    Column("live", String(256), primary_key=True),
    Column("category", String(64), primary_key=True),
    Column("outcome", String(16), primary_key=True),
    Column("count", BigInteger, nullable=False),
)
