"""The audit event v1, defined once: the proxy builds events with `AuditEvent`, the consumers read them with it,
and `event.v1.json` beside this file is generated from it (`python -m proxy.schemas.events` rewrites it;
a test fails when the two differ).

Like the rest of `proxy.schemas`, the consumers may import it (tests/test_layering.py): it imports nothing
else from the project. The other message kinds on the audit topic (shadow and score tallies, comparisons) are
named here too; their JSON Schemas are still written by hand beside this file.

Changing the event: edit the models below, run `python -m proxy.schemas.events`, and fill the new field where
`proxy/recording.py` builds events. New fields are optional (the v1 line only grows: stored events must
still read).
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

SCHEMA_NAME: Literal["guardstream.event.v1"] = "guardstream.event.v1"
SCHEMA_PATH = Path(__file__).with_name("event.v1.json")
#: the shadow evaluators' agreement counts, sent on the same topic (proxy/shadow.py)
TALLY_SCHEMA_NAME = "guardstream.shadow_tally.v1"
#: reward score histograms, sent on the same topic (proxy/quality.py)
SCORE_TALLY_SCHEMA_NAME = "guardstream.score_tally.v1"
#: a candidate model's answer compared with the baseline's, on the same topic (proxy/comparison)
COMPARISON_SCHEMA_NAME = "guardstream.comparison.v1"
#: the Kafka topic the proxies send these messages on, unless configured (`audit.topic`, the consumers' --topic)
DEFAULT_TOPIC = "guardstream.events"
#: every message kind the proxies send on the audit topic
KNOWN_SCHEMAS = (SCHEMA_NAME, TALLY_SCHEMA_NAME, SCORE_TALLY_SCHEMA_NAME, COMPARISON_SCHEMA_NAME)
_SCHEMA_FILES = {SCHEMA_NAME: SCHEMA_PATH, TALLY_SCHEMA_NAME: SCHEMA_PATH.with_name("shadow_tally.v1.json"),
                 SCORE_TALLY_SCHEMA_NAME: SCHEMA_PATH.with_name("score_tally.v1.json"),
                 COMPARISON_SCHEMA_NAME: SCHEMA_PATH.with_name("comparison.v1.json")}
#: upper bounds of the reward score buckets a score tally counts in (its `edges`); the proxy's histogram too
SCORE_BUCKETS = (-8.0, -6.0, -4.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)

Stage = Literal["input", "output"]
Action = Literal["block", "flag", "redact", "allow", "error"]
ContentMode = Literal["full", "redacted", "hash"]


class _Record(BaseModel):
    """Tolerant of fields it does not know (a newer proxy's)."""

    model_config = ConfigDict(extra="allow")


class FindingRecord(_Record):
    """A located match in the judged text (rule engines; data quality checks name rule, record and field)."""

    category: str
    kind: str
    start: int
    end: int


class VerdictRecord(_Record):
    """One evaluator's judgement as audited."""

    evaluator: str
    version: str
    safe: bool
    categories: list[str]
    score: float | None = None
    latency_ms: float = 0.0
    cached: bool = False
    error: str | None = None
    findings: list[FindingRecord] = Field(default_factory=list, description="span offsets in the judged text")
    threshold: float | SkipJsonSchema[None] = Field(
        default=None, description="the score at which this evaluator calls an item unsafe (evaluators with one)")


class ShadowVerdictRecord(VerdictRecord):
    """A shadow (candidate) evaluator's verdict, compared with its live counterpart."""

    compared_with: str | None = Field(default=None,
                                      description="the live evaluator; null: the stage's decision")
    compared: bool = Field(default=True, description="false when it or its counterpart errored")
    differs: list[str] = Field(default_factory=list)


class ShadowRecord(_Record):
    """Shadow (candidate) evaluators that judged the same item without acting (added in the v1 line:
    optional)."""

    disagreement: bool = Field(description="some candidate differs from its live counterpart")
    categories: list[str] = Field(default_factory=list,
                                  description="where they differ ('any': the overall verdict)")
    verdicts: list[ShadowVerdictRecord]


class Turn(_Record):
    role: str
    content: str


class EventContent(_Record):
    """What the event keeps of the conversation (`audit.content`); the digest is always of the whole text."""

    mode: ContentMode
    messages: list[Turn] | None = None
    completion: str | None = None
    sha256: str = Field(pattern="^[0-9a-f]{64}$")


def new_event_id() -> str:
    return str(uuid.uuid4())


def now_ts() -> str:
    """RFC 3339 UTC timestamp with milliseconds and a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditEvent(_Record):
    """One guard decision. Kafka key = request_id. Consumers dedupe on event_id."""

    schema_: Literal["guardstream.event.v1"] = Field(default=SCHEMA_NAME, alias="schema")
    event_id: str = Field(default_factory=new_event_id, min_length=32, json_schema_extra={"format": "uuid"})
    ts: str = Field(default_factory=now_ts, description="RFC 3339 UTC timestamp")
    request_id: str = Field(min_length=1)
    tenant: str
    policy: str
    stage: Stage
    action: Action
    mode: Literal["enforce", "shadow"]
    route: str | SkipJsonSchema[None] = None
    stream_mode: str | None = None
    choice_index: int | None = None
    categories: list[str]
    failed_open: list[str] = Field(default_factory=list,
                                   description="evaluators that errored and were let through (on_error: open)")
    verdicts: list[VerdictRecord]
    model: str | None
    upstream: str
    content: EventContent
    latency_ms: float = Field(ge=0)
    shadow: ShadowRecord | SkipJsonSchema[None] = None

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True,
                              json_schema_extra=lambda schema: _require(schema, "schema", "event_id", "ts"))

    def wire(self) -> dict[str, Any]:
        """The JSON object as sent: keys in declaration order, then unknown ones; `threshold` and `shadow`
        (optional keys added to the v1 line) only where set."""
        out = self.model_dump()
        verdicts = out["verdicts"]
        if out["shadow"] is None:
            del out["shadow"]
        else:
            verdicts = verdicts + out["shadow"]["verdicts"]
        for verdict in verdicts:
            if verdict["threshold"] is None:
                del verdict["threshold"]
        return out


def _require(schema: dict[str, Any], *names: str) -> None:
    """Fields the proxy fills in by default are still required on the wire."""
    required = schema.setdefault("required", [])
    required[:0] = [n for n in names if n not in required]


def json_schema() -> dict[str, Any]:
    """The event's JSON Schema (Draft 2020-12), as checked in beside this file."""
    generated = AuditEvent.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_NAME,
            "title": "guardstream audit event v1", **{k: v for k, v in generated.items() if k != "title"}}


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


@lru_cache(maxsize=8)
def schema(name: str = SCHEMA_NAME) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(_SCHEMA_FILES[name].read_text())
    return loaded


@lru_cache(maxsize=8)
def _validator(name: str) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(schema(name))


def validation_errors(event: Mapping[str, Any], name: str = SCHEMA_NAME) -> list[str]:
    """Every way `event` breaks the schema `name`, as readable strings (empty when valid)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in _validator(name).iter_errors(event)]


def content_digest(messages: Iterable[Mapping[str, str]] | None, completion: str | None) -> str:
    """`content.sha256`: of the whole conversation and answer, whatever the event keeps of them."""
    blob = json.dumps({"messages": list(messages or []), "completion": completion}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def new_event(**fields: Any) -> dict[str, Any]:
    """A v1 event's wire form from its fields, identity and timestamp filled in (checked by the model)."""
    return AuditEvent.model_validate(fields).wire()


def main(argv: list[str] | None = None) -> int:
    """`python -m proxy.schemas.events [--check]`: rewrite event.v1.json from the model, or only compare."""
    args = sys.argv[1:] if argv is None else argv
    current = SCHEMA_PATH.read_text() if SCHEMA_PATH.exists() else ""
    if "--check" in args:
        if current != render_schema():
            print(f"{SCHEMA_PATH} is stale: run python -m proxy.schemas.events", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(render_schema())
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
