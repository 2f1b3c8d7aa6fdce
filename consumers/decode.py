"""Kafka message -> audit event, or the reason it cannot be one (dead letter).

The definition is the proxy's own: `proxy/schemas/events.py` (the `AuditEvent` model, and the JSON Schemas
beside it that `validation_errors` checks), so proxy and consumers never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from proxy.schemas.events import (
    COMPARISON_SCHEMA_NAME,
    KNOWN_SCHEMAS,
    SCHEMA_NAME,
    SCORE_TALLY_SCHEMA_NAME,
    TALLY_SCHEMA_NAME,
    validation_errors,
)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A valid event (with its parsed timestamp), or `reason` says why the bytes are a dead letter."""

    event: dict[str, Any] | None
    ts: datetime | None = None
    reason: str | None = None
    #: which schema it is: an audit event, a shadow tally (agreement counts, proxy/shadow.py), a score tally
    #: (reward score histograms, proxy/quality.py) or a comparison (proxy/comparison)
    schema: str = SCHEMA_NAME

    @property
    def is_tally(self) -> bool:
        return self.event is not None and self.schema == TALLY_SCHEMA_NAME

    @property
    def is_score_tally(self) -> bool:
        return self.event is not None and self.schema == SCORE_TALLY_SCHEMA_NAME

    @property
    def is_comparison(self) -> bool:
        return self.event is not None and self.schema == COMPARISON_SCHEMA_NAME

    @property
    def is_counts(self) -> bool:
        """A tally of either kind: counts for the metrics consumer, nothing to review."""
        return self.is_tally or self.is_score_tally


KNOWN = KNOWN_SCHEMAS


def parse_ts(value: str) -> datetime:
    """RFC 3339 -> naive UTC datetime (the store keeps UTC without zone)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp has no zone")
    return parsed.astimezone(UTC).replace(tzinfo=None)


def decode(raw: bytes | None) -> Decoded:
    if raw is None:
        return Decoded(None, reason="empty message (tombstone)")
    try:
        event = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Decoded(None, reason=f"malformed JSON: {exc}")
    if not isinstance(event, dict):
        return Decoded(None, reason=f"not a JSON object: {type(event).__name__}")
    name = event.get("schema")
    if name not in KNOWN:
        return Decoded(None, reason=f"unknown schema: {name!r} (expected {SCHEMA_NAME!r})")
    errors = validation_errors(event, name)
    if errors:
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        return Decoded(None, reason="schema-invalid: " + "; ".join(errors[:5]) + more)
    try:
        ts = parse_ts(event["ts"])
    except ValueError as exc:
        return Decoded(None, reason=f"schema-invalid: ts: not an RFC 3339 timestamp ({exc})")
    return Decoded(without_nul(event), ts=ts, schema=name)


def without_nul(value: Any) -> Any:
    """`value` with every NUL character (JSON "\\u0000", which a client can put in a prompt) replaced by U+FFFD:
    PostgreSQL text and JSON cannot hold NUL, and a rejected row would stop the consumer on that message."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value
