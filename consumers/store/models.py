"""Plain records passed in and out of the review store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

LABELS = ("unsafe", "safe", "not_sure")
#: how the UI names each label
LABEL_TITLES = {"unsafe": "confirmed unsafe", "safe": "false positive (safe)", "not_sure": "not sure"}


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message came from in Kafka."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    event: dict[str, Any]
    ts: datetime
    position: Position | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    position: Position
    key: bytes | None
    raw: bytes | None
    reason: str


@dataclass(slots=True)
class WriteResult:
    inserted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    dead_letter_duplicates: int = 0

    def add(self, other: WriteResult) -> None:
        self.inserted += other.inserted
        self.duplicates += other.duplicates
        self.dead_letters += other.dead_letters
        self.dead_letter_duplicates += other.dead_letter_duplicates


@dataclass(frozen=True, slots=True)
class Label:
    reviewer: str
    label: str
    categories: list[str]
    note: str
    created_at: datetime
    id: int = 0


@dataclass(slots=True)
class QueueFilter:
    """Queue filters; None/empty means "any"."""

    stage: str | None = None
    category: str | None = None
    evaluator: str | None = None
    tenant: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: str = "unreviewed"  # unreviewed | reviewed | all
    order: str = "value"  # value (what a label would teach, see derive.VALUE_DOC) | newest
    disagreement: bool = False  # only events where a shadow evaluator disagreed with the live one

    def as_params(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in ("stage", "category", "evaluator", "tenant", "action"):
            value = getattr(self, name)
            if value:
                out[name] = value
        for name in ("since", "until"):
            value = getattr(self, name)
            if value:
                out[name] = value.strftime("%Y-%m-%dT%H:%M")
        if self.disagreement:
            out["disagreement"] = "1"
        out["status"] = self.status
        out["order"] = self.order
        return out


@dataclass(frozen=True, slots=True)
class FiredVerdict:
    """A verdict worth showing in the queue: an unsafe or failed live one, or any shadow (candidate) one."""

    evaluator: str
    safe: bool
    score: float | None
    categories: list[str]
    shadow: bool = False
    error: bool = False


@dataclass(slots=True)
class QueueRow:
    event_id: str
    ts: datetime
    tenant: str
    stage: str
    action: str
    mode: str
    categories: list[str]
    evaluators: list[str]
    content_mode: str
    label_count: int
    my_label: str | None
    value: float = 0.0
    snippet: str | None = None
    marks: list[tuple[int, int, str]] = field(default_factory=list)
    fired: list[FiredVerdict] = field(default_factory=list)
    lookalikes: int = 0  # other unreviewed events that look alike (labelled together from the event page)
    disagreement: bool = False


@dataclass(slots=True)
class StoredEvent:
    """One event as the event page shows it."""

    pk: int
    event_id: str
    ts: datetime
    payload: dict[str, Any]
    labels: list[Label] = field(default_factory=list)

    @property
    def content(self) -> dict[str, Any]:
        return self.payload.get("content") or {}

    def latest_by_reviewer(self) -> dict[str, Label]:
        latest: dict[str, Label] = {}
        for label in sorted(self.labels, key=lambda lab: (lab.created_at, lab.id)):
            latest[label.reviewer] = label
        return latest
