"""Options of the `classifier` evaluator type (the `options:` mapping in the YAML config)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from evaluators.base import STAGES
from evaluators.options import EngineOptions, Stages

#: thresholds an encoder artifact carries per stage: `default` (few false alarms), `strict` (high recall)
OperatingPoint = Literal["default", "strict"]
OPERATING_POINTS: tuple[OperatingPoint, ...] = ("default", "strict")


class ClassifierOptions(EngineOptions):
    #: artifact directory (None: the shipped model, evaluators/classifier/models/default)
    path: str | None = None
    #: encoder artifacts only
    operating_point: OperatingPoint = "default"
    #: overrides the artifact's threshold(s): unsafe when score >= threshold
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    #: largest batch one forward pass takes
    max_batch_size: int = Field(default=32, gt=0)
    #: how long the batcher waits to fill a batch
    max_wait_ms: float = Field(default=2.0, ge=0)
    stages: Stages = frozenset(STAGES)

    @field_validator("stages", mode="before")
    @classmethod
    def _null_is_every_stage(cls, value: Any) -> Any:
        return frozenset(STAGES) if not value else value
