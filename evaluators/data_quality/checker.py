"""The streaming checker: records in, failures out, O(1) state per series.

`Checker(rules).check(record, index)` returns the failures of one record (an
empty tuple when it passes). Records must come in series order. The state kept
per series (the `time.series_key` value) is the last timestamp seen and, per
rate rule, the time and value of the last *accepted* point, so memory depends
on the number of series, never on the number of records.

Semantics worth knowing:
- time order: a record whose timestamp is not after the series clock fails
  `time_order` and leaves the clock alone; any later timestamp moves the clock,
  even in a record rejected for another reason (so one gap is one failure).
- rates compare with the last accepted point of the series, so a single spike
  fails once and a step change is accepted once enough time has passed.
- constraints whose fields are missing, null or ill-typed are skipped: the
  completeness and type rules already report that record.

The per-record path uses plain tuples, precompiled closures and no pydantic.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from evaluators.data_quality.expressions import SkipRecord
from evaluators.data_quality.rules import FieldSpec, RuleSet
from evaluators.data_quality.timeparse import TIME_UNITS, to_seconds

#: every rule kind a failure can carry, in report order
RULE_KINDS = ("parse", "record", "required", "null", "type", "range", "values",
              "constraint", "time_order", "max_gap", "rate")

_BIG = sys.float_info.max
_NUM = frozenset((int, float))
_OK: tuple[()] = ()


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed rule: which record, which rule kind, which field (or constraint), and why."""

    index: int
    rule: str
    field: str
    message: str

    @property
    def rule_id(self) -> str:
        """`rule:field`, the key of the per-rule summary (e.g. `range:speed`)."""
        return f"{self.rule}:{self.field}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "rule": self.rule, "field": self.field, "message": self.message}


#: a record's failures (an empty tuple when it is accepted)
Failures = tuple[Failure, ...] | list[Failure]
#: `check(record, index)`: the compiled rule set bound to one stream's series state
CheckFn = Callable[[Any, int], Failures]


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            dict: "object", list: "array"}.get(type(value), type(value).__name__)


def iso(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return str(seconds)


def _unit(spec: FieldSpec) -> str:
    return f" {spec.unit}" if spec.unit else ""


class Checker:
    """Check records one at a time against a rule set, in one pass."""

    def __init__(self, rules: RuleSet, _plan: Callable[[dict[Any, list[Any]]], CheckFn] | None = None):
        self.rules = rules
        self._plan = _plan or _build(rules)
        self._series: dict[Any, list[Any]] = {}
        self._check = self._plan(self._series)

    def fork(self) -> Checker:
        """A checker with the same compiled rules and fresh, independent series state."""
        return Checker(self.rules, self._plan)

    def check(self, record: Any, index: int) -> Failures:
        """Failures of `record` (the `index`-th of the stream); empty when it is accepted."""
        return self._check(record, index)

    def check_all(self, records: Iterable[Any], start: int = 0) -> Iterator[tuple[int, Any, Any]]:
        """Yield `(index, record, failures)` for each record, lazily."""
        check = self._check
        for index, record in enumerate(records, start):
            yield index, record, check(record, index)

    def reset(self) -> None:
        """Forget all series state (start a new, unrelated stream)."""
        self._series.clear()

    @property
    def series_count(self) -> int:
        return len(self._series)


@dataclass
class Tally:
    """Per-rule failure counts over a stream, for the summary table."""

    records: int = 0
    rejected: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    first: dict[str, Failure] = field(default_factory=dict)

    def add(self, failures: Iterable[Failure]) -> None:
        self.records += 1
        seen = False
        for f in failures:
            seen = True
            key = f.rule_id
            self.failures[key] += 1
            self.first.setdefault(key, f)
        if seen:
            self.rejected += 1

    @property
    def accepted(self) -> int:
        return self.records - self.rejected

    def rows(self) -> list[tuple[str, str, int, Failure]]:
        """(rule, field, count, first failure), in rule-kind order then by count."""
        order = {k: i for i, k in enumerate(RULE_KINDS)}
        rows = [(f.rule, f.field, self.failures[key], f) for key, f in self.first.items()]
        return sorted(rows, key=lambda r: (order.get(r[0], len(order)), -r[2], r[1]))

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "accepted": self.accepted, "rejected": self.rejected,
                "failures": dict(self.failures)}


def field_failures(name: str, spec: FieldSpec, record: dict[str, Any], index: int,
                   epoch_scale: float) -> list[Failure]:
    """Every failure of one field (the slow path, taken only when the fast check did not pass)."""
    if name not in record:
        return [Failure(index, "required", name, "required field is missing")] if spec.required else []
    value = record[name]
    if value is None:
        return [] if spec.nullable else [Failure(index, "null", name, "is null")]
    kind = spec.type
    vtype = type(value)
    ok = {
        "number": vtype is int or vtype is float,
        "integer": vtype is int,
        "string": vtype is str,
        "boolean": vtype is bool,
        "object": vtype is dict,
        "array": vtype is list,
        "timestamp": to_seconds(value, epoch_scale) is not None,
        "any": True,
    }[kind]
    if not ok:
        expected = "an ISO 8601 string or epoch number" if kind == "timestamp" else kind
        return [Failure(index, "type", name, f"expected {expected}, got {kind_of(value)} {short(value)}")]
    if vtype is float and not (-_BIG <= value <= _BIG):
        return [Failure(index, "type", name, f"not a finite number: {value!r}")]
    if spec.min is not None and value < spec.min:
        return [Failure(index, "range", name, f"{value!r}{_unit(spec)} is below min {spec.min:g}{_unit(spec)}")]
    if spec.max is not None and value > spec.max:
        return [Failure(index, "range", name, f"{value!r}{_unit(spec)} is above max {spec.max:g}{_unit(spec)}")]
    if spec.values is not None and value not in spec.values:
        return [Failure(index, "values", name, f"{short(value)} is not one of {short(spec.values, 120)}")]
    return []


def _fast_predicate(spec: FieldSpec, epoch_scale: float) -> Callable[[Any], bool]:
    """A cheap test that implies `field_failures` finds nothing (False just means: look closer)."""
    kind = spec.type
    if kind == "timestamp":
        return lambda v: to_seconds(v, epoch_scale) is not None
    if kind == "any":
        return lambda v: v is not None
    expected = {"number": _NUM, "integer": frozenset((int,)), "string": frozenset((str,)),
                "boolean": frozenset((bool,)), "object": frozenset((dict,)), "array": frozenset((list,))}[kind]
    if spec.values is not None:
        allowed = frozenset(spec.values)
        if kind in ("number", "integer"):
            lo = -_BIG if spec.min is None else spec.min
            hi = _BIG if spec.max is None else spec.max
            return lambda v: type(v) in expected and lo <= v <= hi and v in allowed
        return lambda v: type(v) in expected and v in allowed
    return lambda v: type(v) in expected


def _build(rules: RuleSet) -> Callable[[dict[Any, list[Any]]], CheckFn]:
    """Compile a rule set once; the result binds a series-state dict into a `check(record, index)` closure."""
    scale = rules.epoch_scale
    time = rules.time
    time_field = time.field if time else None
    specs = rules.fields

    numbers: list[tuple[str, frozenset[type], float, float]] = []
    strings: list[str] = []
    others: list[tuple[str, Callable[[Any], bool]]] = []
    for name, spec in specs.items():
        if name == time_field:
            continue
        if spec.type in ("number", "integer") and spec.values is None:
            types = _NUM if spec.type == "number" else frozenset((int,))
            lo = -_BIG if spec.min is None else spec.min
            hi = _BIG if spec.max is None else spec.max
            numbers.append((name, types, lo, hi))
        elif spec.type == "string" and spec.values is None:
            strings.append(name)
        else:
            others.append((name, _fast_predicate(spec, scale)))
    numbers_t, strings_t, others_t = tuple(numbers), tuple(strings), tuple(others)

    constraints = tuple(
        (c.label, expr.fn, c.message, expr) for c, expr in zip(rules.constraints, rules.compile_constraints())
    )

    series_key = time.series_key if time else None
    strict = time.strictly_increasing if time else True
    max_gap = time.max_gap * TIME_UNITS[time.time_unit] if time and time.max_gap is not None else None
    rates = tuple((r.field, r.max_per_second(time.time_unit), r) for r in rules.rates) if time else ()
    nslots = 1 + 2 * len(rates)
    time_spec = specs[time_field] if time_field else None
    time_unit = time.time_unit if time else "s"
    gap_limit = time.max_gap if time and time.max_gap is not None else 0.0

    def slow(name: str, record: dict[str, Any], index: int) -> list[Failure]:
        return field_failures(name, specs[name], record, index, scale)

    def constraint_failure(label: str, message: str | None, expr: Any, record: dict[str, Any], index: int,
                           error: Exception | None) -> Failure:
        values = ", ".join(f"{n}={short(record.get(n), 30)}" for n in sorted(expr.names))
        if error is not None:
            return Failure(index, "constraint", label, f"cannot evaluate {expr.source!r}: {error} ({values})")
        return Failure(index, "constraint", label, f"{message or 'violated: ' + expr.source} ({values})")

    def bind(series: dict[Any, list[Any]]) -> CheckFn:
        def check(record: Any, index: int) -> Failures:
            if type(record) is not dict:
                return [Failure(index, "record", "", f"expected a JSON object, got {kind_of(record)}")]
            get: Callable[[str], Any] = record.get
            fails: list[Failure] | None = None

            for name, types, lo, hi in numbers_t:
                v = get(name)
                if type(v) in types and lo <= v <= hi:
                    continue
                found = slow(name, record, index)
                if found:
                    fails = found if fails is None else fails + found
            for name in strings_t:
                if type(get(name)) is str:
                    continue
                found = slow(name, record, index)
                if found:
                    fails = found if fails is None else fails + found
            for name, ok in others_t:
                if ok(get(name)):
                    continue
                found = slow(name, record, index)
                if found:
                    fails = found if fails is None else fails + found

            for label, fn, message, expr in constraints:
                try:
                    if fn(record):
                        continue
                    failure = constraint_failure(label, message, expr, record, index, None)
                except SkipRecord:
                    continue
                except (ArithmeticError, TypeError, ValueError) as exc:
                    failure = constraint_failure(label, message, expr, record, index, exc)
                fails = [failure] if fails is None else fails + [failure]

            if time_field is None or time_spec is None:
                return _OK if fails is None else fails
            t = to_seconds(get(time_field), scale)
            if t is None:
                found = field_failures(time_field, time_spec, record, index, scale)
                if found:
                    fails = found if fails is None else fails + found
                return _OK if fails is None else fails

            key = get(series_key) if series_key is not None else None
            try:
                state = series.get(key)
            except TypeError:  # unhashable series key (a list or object)
                key = repr(key)
                state = series.get(key)
            if state is None:
                state = [None] * nslots
                state[0] = t
                series[key] = state
            else:
                prev = state[0]
                if t < prev or (strict and t == prev):
                    relation = "before" if t < prev else "equal to"
                    f = Failure(index, "time_order", time_field,
                                f"{iso(t)} is {relation} the previous timestamp {iso(prev)}")
                    fails = [f] if fails is None else fails + [f]
                else:
                    if max_gap is not None and t - prev > max_gap:
                        f = Failure(index, "max_gap", time_field,
                                    f"gap of {(t - prev) / TIME_UNITS[time_unit]:g} {time_unit} after "
                                    f"{iso(prev)} exceeds max_gap {gap_limit:g} {time_unit}")
                        fails = [f] if fails is None else fails + [f]
                    state[0] = t

            slot = 1
            for name, max_rate, rate in rates:
                v = get(name)
                if type(v) in _NUM:
                    tp = state[slot]
                    if tp is not None and t > tp:
                        delta = v - state[slot + 1]
                        if abs(delta) > max_rate * (t - tp):
                            f = _rate_failure(index, name, rate, specs[name], delta, t - tp, time_unit)
                            fails = [f] if fails is None else fails + [f]
                slot += 2

            if fails is not None:
                return fails
            slot = 1
            for name, _, _ in rates:  # accepted: this point is the new reference for rate rules
                v = get(name)
                if type(v) in _NUM:
                    state[slot] = t
                    state[slot + 1] = v
                slot += 2
            return _OK

        return check

    return bind


def _rate_failure(index: int, name: str, rate: Any, spec: FieldSpec, delta: float, dt: float,
                  default_unit: str) -> Failure:
    per = rate.time_unit or default_unit
    observed = abs(delta) / (dt / TIME_UNITS[per])
    unit = rate.unit or spec.unit
    unit_text = f" {unit} per {per}" if unit else f" per {per}"
    return Failure(index, "rate", name,
                   f"|Δ{name}/Δt| = {observed:.4g}{unit_text} exceeds max {rate.max:g}{unit_text} "
                   f"(Δ{name} = {delta:+.4g} over {dt:g} s)")
