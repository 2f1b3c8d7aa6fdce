"""Options of the `data_quality` evaluator type (the `options:` mapping in the YAML config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from evaluators.base import Stage
from evaluators.options import EngineOptions, Stages

DEFAULT_STAGES: frozenset[Stage] = frozenset({"output"})


class DataQualityOptions(EngineOptions):
    #: the YAML rule file's path, or the rule set inline (checked when the evaluator is built)
    rules: str | dict[str, Any] = Field(default=None, validate_default=True)
    #: the key under which an answer's object lists its records (default: found by shape)
    records_key: str | None = None
    #: an answer with no JSON records at all fails
    require_records: bool = False
    #: findings (failing records) one verdict carries at most
    max_findings: int = Field(default=100, ge=1)
    stages: Stages = DEFAULT_STAGES

    @field_validator("rules", mode="before")
    @classmethod
    def _path_or_rule_set(cls, value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if not isinstance(value, (str, dict)):
            raise ValueError("must be a rule-file path or an inline rule set")
        return value

    @field_validator("stages", mode="before")
    @classmethod
    def _null_is_output(cls, value: Any) -> Any:
        return DEFAULT_STAGES if not value else value
