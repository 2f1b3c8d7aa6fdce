"""The rule set of one record type: pydantic models of the YAML file and loading with located errors.

```yaml
record_type: vehicle_telemetry
fields:
  device_id: {type: string}
  ts: {type: timestamp}
  speed: {type: number, min: 0, max: 90, unit: m/s}
  note: {type: string, required: false, nullable: true}
time: {field: ts, series_key: device_id, max_gap: 60, time_unit: s}
rates:
  - {field: speed, max: 12, unit: m/s, time_unit: s}    # |Δspeed/Δt| <= 12 m/s per s
constraints:
  - "min_temp <= max_temp"
  - {name: lat_ok, expr: "abs(lat) <= 90"}
```

Every error names the file, line, column and key path (`rules.yaml:7:5: fields.speed.min: ...`).
These models are for loading only; `checker.py` compiles them into plain tuples and closures.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evaluators.data_quality.expressions import Expression, ExpressionError, compile_expression
from evaluators.data_quality.loader import Marks, YamlLocationError, load_yaml_with_marks, locate
from evaluators.data_quality.timeparse import TIME_UNITS

FieldType = Literal["string", "number", "integer", "boolean", "timestamp", "object", "array", "any"]
TimeUnit = Literal["ns", "us", "ms", "s", "min", "h", "d"]
NUMERIC_TYPES = ("number", "integer")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """One field: its type, completeness (`required`, `nullable`), inclusive range, allowed values, unit hint.

    A bare string is shorthand for the type: `speed: number`.
    """

    type: FieldType = "any"
    required: bool = True
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    values: list[str | int | float | bool] | None = Field(default=None, min_length=1)
    unit: str | None = None
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"type": data} if isinstance(data, str) else data


class TimeSpec(_Strict):
    """Time order within a series: strictly increasing timestamps, optional maximum gap.

    `time_unit` is the unit of `max_gap` (and the default for rates); `epoch_unit`
    the unit of numeric timestamps. ISO 8601 strings need no unit.
    """

    field: str
    series_key: str | None = None
    strictly_increasing: bool = True
    max_gap: float | None = Field(default=None, gt=0)
    time_unit: TimeUnit = "s"
    epoch_unit: TimeUnit = "s"


class RateSpec(_Strict):
    """|Δfield / Δt| <= max between consecutive accepted points of a series.

    `max` is in the field's unit per `time_unit`; `unit` is a hint that must match the field's.
    """

    field: str
    max: float = Field(gt=0)
    unit: str | None = None
    time_unit: TimeUnit | None = None

    def max_per_second(self, default_unit: str) -> float:
        return self.max / TIME_UNITS[self.time_unit or default_unit]


class ConstraintSpec(_Strict):
    """A cross-field condition written in the expression language; a bare string is shorthand."""

    expr: str
    name: str | None = None
    message: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"expr": data} if isinstance(data, str) else data

    @property
    def label(self) -> str:
        return self.name or self.expr


class RuleSet(_Strict):
    """All rules for one record type."""

    record_type: str
    description: str | None = None
    version: str | int | None = None
    fields: dict[str, FieldSpec] = Field(min_length=1)
    time: TimeSpec | None = None
    rates: list[RateSpec] = Field(default_factory=list)
    constraints: list[ConstraintSpec] = Field(default_factory=list)

    def digest(self) -> str:
        """sha256 of the canonical rule set: part of the evaluator version (and so of cache keys)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def epoch_scale(self) -> float:
        return TIME_UNITS[self.time.epoch_unit] if self.time else 1.0

    def compile_constraints(self) -> list[Expression]:
        types = {name: spec.type for name, spec in self.fields.items()}
        return [compile_expression(c.expr, types, self.epoch_scale) for c in self.constraints]


@dataclass(frozen=True, slots=True)
class RuleIssue:
    """One problem in a rule file, with where it is."""

    path: tuple[str | int, ...]
    message: str
    line: int | None = None
    column: int | None = None

    @property
    def dotted(self) -> str:
        return dotted_path(self.path)

    def render(self, source: str) -> str:
        where = source
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        key = f" {self.dotted}:" if self.path else ""
        return f"{where}:{key} {self.message}"


class RulesError(ValueError):
    """A rule file that cannot be used; `issues` lists each problem with its line and key."""

    def __init__(self, source: str, issues: Sequence[RuleIssue]):
        self.source = source
        self.issues = list(issues)
        super().__init__("\n".join(issue.render(source) for issue in self.issues))


def dotted_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_rules(path: str | os.PathLike[str]) -> RuleSet:
    """Read and validate a YAML rule file; raises `RulesError` naming the line and key."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(source, [RuleIssue((), f"cannot read rule file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise RulesError(source, [RuleIssue((), "rule file is not UTF-8 text")]) from None
    return parse_rules(text, source)


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Validate YAML text as a rule set (see `load_rules`)."""
    try:
        data, marks = load_yaml_with_marks(text)
    except YamlLocationError as exc:
        raise RulesError(source, [RuleIssue(exc.path, exc.message, exc.line, exc.column)]) from None
    return rules_from_data(data, source, marks)


def rules_from_data(data: Any, source: str = "<rules>", marks: Marks | None = None) -> RuleSet:
    """Validate already-parsed data (inline options); `marks` adds line numbers when known."""
    marks = marks or {}
    if not isinstance(data, Mapping):
        raise RulesError(source, [RuleIssue((), "the rule file must be a mapping (record_type, fields, ...)", 1, 1)])
    try:
        rules = RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RulesError(source, [_issue_from_pydantic(err, marks) for err in exc.errors()]) from None
    issues = [_located(path, message, marks) for path, message in semantic_issues(rules)]
    if issues:
        raise RulesError(source, issues)
    return rules


def _located(path: tuple[str | int, ...], message: str, marks: Marks) -> RuleIssue:
    line, column = locate(marks, path)
    return RuleIssue(path, message, line, column)


def _issue_from_pydantic(err: Mapping[str, Any], marks: Marks) -> RuleIssue:
    loc = tuple(err.get("loc") or ())
    known = loc
    if marks:  # keep the longest prefix that exists in the file (pydantic adds union/type tags)
        depth = len(loc)
        while depth > 0 and loc[:depth] not in marks:
            depth -= 1
        known = loc if err.get("type") == "missing" and depth == len(loc) - 1 else loc[:depth]
    message = str(err.get("msg", "invalid value"))
    if err.get("type") == "extra_forbidden":
        message = "unknown key"
    elif err.get("type") == "missing":
        message = "required key is missing"
    line, column = locate(marks, known)
    return RuleIssue(known, message, line, column)


def semantic_issues(rules: RuleSet) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-references pydantic cannot see: fields named by time/rates/constraints, ranges, units."""
    issues: list[tuple[tuple[str | int, ...], str]] = []
    fields = rules.fields
    for name, spec in fields.items():
        at = ("fields", name)
        if (spec.min is not None or spec.max is not None) and spec.type not in NUMERIC_TYPES:
            issues.append((at + ("min" if spec.min is not None else "max",),
                           f"ranges apply to number or integer fields, not {spec.type!r}"))
        if spec.min is not None and spec.max is not None and spec.min > spec.max:
            issues.append((at + ("min",), f"min {spec.min} is greater than max {spec.max}"))
        if spec.values is not None and spec.type not in ("string", "number", "integer", "boolean"):
            issues.append((at + ("values",),
                           f"allowed values apply to string/number/integer/boolean, not {spec.type!r}"))
    if rules.time is not None:
        time = rules.time
        if time.field not in fields:
            issues.append((("time", "field"), f"unknown field {time.field!r} (declare it under `fields`)"))
        elif fields[time.field].type != "timestamp":
            issues.append((("time", "field"), f"field {time.field!r} must have type timestamp"))
        if time.series_key is not None and time.series_key not in fields:
            issues.append((("time", "series_key"), f"unknown field {time.series_key!r} (declare it under `fields`)"))
    for i, rate in enumerate(rules.rates):
        rate_at: tuple[str | int, ...] = ("rates", i)
        if rules.time is None:
            issues.append((rate_at, "rate-of-change rules need a `time` section (which field is the time)"))
        rated = fields.get(rate.field)
        if rated is None:
            issues.append((rate_at + ("field",), f"unknown field {rate.field!r} (declare it under `fields`)"))
        elif rated.type not in NUMERIC_TYPES:
            issues.append((rate_at + ("field",), f"field {rate.field!r} must be a number or integer for a rate rule"))
        elif rate.unit and rated.unit and rate.unit != rated.unit:
            issues.append((rate_at + ("unit",), f"unit {rate.unit!r} differs from fields.{rate.field}.unit {rated.unit!r}"))
    types = {name: spec.type for name, spec in fields.items()}
    for i, constraint in enumerate(rules.constraints):
        try:
            compile_expression(constraint.expr, types, rules.epoch_scale)
        except ExpressionError as exc:
            issues.append((("constraints", i, "expr"), f"{exc} in {constraint.expr!r}"))
    return issues
