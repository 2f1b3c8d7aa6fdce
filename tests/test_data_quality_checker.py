"""The streaming checker: planted faults found exactly where planted, nothing else, and its time/rate semantics."""

from __future__ import annotations

import pytest

from evaluators.data_quality import Checker, Tally, parse_rules
from tests.dq_series import FAULTS, rules_yaml, series


def failures_of(checker: Checker, records) -> list[tuple[int, str, str]]:
    found = []
    for _index, _, failures in checker.check_all(records):
        found.extend((f.index, f.rule, f.field) for f in failures)
    return found


@pytest.mark.parametrize("timestamps,epoch_unit", [("iso", "s"), ("epoch_s", "s"), ("epoch_ms", "ms")])
def test_each_planted_fault_is_found_exactly_where_planted(timestamps: str, epoch_unit: str) -> None:
    checker = Checker(parse_rules(rules_yaml(epoch_unit)))
    found = failures_of(checker, series(1200, faults=True, timestamps=timestamps))
    assert sorted(found) == sorted((i, rule, field) for i, (rule, field) in FAULTS.items())
    assert checker.series_count == 2


@pytest.mark.parametrize("timestamps,epoch_unit", [("iso", "s"), ("epoch_ms", "ms")])
def test_clean_series_has_no_false_reject(timestamps: str, epoch_unit: str) -> None:
    checker = Checker(parse_rules(rules_yaml(epoch_unit)))
    tally = Tally()
    for _, _, failures in checker.check_all(series(5000, faults=False, timestamps=timestamps)):
        tally.add(failures)
    assert (tally.records, tally.rejected, dict(tally.failures)) == (5000, 0, {})


def test_tally_counts_per_rule() -> None:
    checker = Checker(parse_rules(rules_yaml()))
    tally = Tally()
    for _, _, failures in checker.check_all(series(1200)):
        tally.add(failures)
    assert tally.rejected == len(FAULTS)
    assert dict(tally.failures) == {f"{rule}:{field}": 1 for rule, field in FAULTS.values()}
    assert [row[0] for row in tally.rows()][:3] == ["required", "null", "type"]


def test_failure_messages_name_values_and_units() -> None:
    checker = Checker(parse_rules(rules_yaml()))
    messages = {(f.index, f.rule): f.message for _, _, fs in checker.check_all(series(1200)) for f in fs}
    assert messages[(203, "range")] == "120.0 % is above max 100 %"
    assert "m/s per s exceeds max 12 m/s per s" in messages[(509, "rate")]
    assert "before the previous timestamp" in messages[(305, "time_order")]
    assert "gap of 121 s" in messages[(407, "max_gap")]
    assert "min_temp=26.0" in messages[(611, "constraint")]


RATE_RULES = """
record_type: r
fields: {t: timestamp, v: {type: number, unit: m/s}}
time: {field: t, max_gap: 2, time_unit: min}
rates: [{field: v, max: 12, time_unit: s}]
"""


def run(rules: str, rows: list[dict]) -> list[tuple[int, str]]:
    checker = Checker(parse_rules(rules))
    return [(f.index, f.rule) for i, r, fs in checker.check_all(rows) for f in fs]


def test_a_step_change_is_accepted_once_enough_time_has_passed() -> None:
    # 10 -> 40 m/s and staying there: compared with the last accepted point (10 at t=2),
    # the rate is 30/1, 30/2 and then 30/3 = 10 <= 12 m/s per s.
    values = [10, 10, 10, 40, 40, 40, 40]
    rows = [{"t": i, "v": v} for i, v in enumerate(values)]
    assert run(RATE_RULES, rows) == [(3, "rate"), (4, "rate")]


def test_gap_and_rate_units_are_converted() -> None:
    rows = [{"t": 0, "v": 0}, {"t": 100, "v": 0}, {"t": 250, "v": 0}, {"t": 251, "v": 11.9}]
    assert run(RATE_RULES, rows) == [(2, "max_gap")]  # 150 s > 2 min; 100 s is fine


def test_series_have_independent_clocks() -> None:
    rules = """
record_type: r
fields: {dev: string, t: timestamp, v: number}
time: {field: t, series_key: dev}
rates: [{field: v, max: 1}]
"""
    rows = [{"dev": "a", "t": 1000, "v": 0}, {"dev": "b", "t": 10, "v": 50},
            {"dev": "a", "t": 1001, "v": 0.5}, {"dev": "b", "t": 11, "v": 50.5},
            {"dev": "b", "t": 11, "v": 50.5}]
    assert run(rules, rows) == [(4, "time_order")]


def test_non_strict_order_allows_equal_timestamps_but_not_going_back() -> None:
    rules = "record_type: r\nfields: {t: timestamp}\ntime: {field: t, strictly_increasing: false}\n"
    rows = [{"t": 1}, {"t": 1}, {"t": 0.5}, {"t": 2}]
    assert run(rules, rows) == [(2, "time_order")]


def test_completeness_types_and_non_records() -> None:
    rules = """
record_type: r
fields:
  a: integer
  b: {type: number, required: false}
  c: {type: string, nullable: true}
  d: boolean
  e: object
  f: array
  g: any
"""
    good = {"a": 1, "c": None, "d": True, "e": {}, "f": [], "g": 0}
    rows = [
        good,
        {**good, "b": float("nan")},
        {**good, "a": 1.5, "d": 1},
        {**good, "a": True},
        {k: v for k, v in good.items() if k != "g"},
        {**good, "g": None},
        [1, 2],
        "text",
    ]
    assert run(rules, rows) == [(1, "type"), (2, "type"), (2, "type"), (3, "type"), (4, "required"), (5, "null"),
                                (6, "record"), (7, "record")]


def test_constraints_skip_missing_fields_and_report_arithmetic_errors() -> None:
    rules = """
record_type: r
fields: {a: number, b: number}
constraints: ["a / b < 10", {name: pos, expr: "a >= 0", message: a must not be negative}]
"""
    checker = Checker(parse_rules(rules))
    assert [f.rule for f in checker.check({"a": 1}, 0)] == ["required"]  # constraint not applicable
    (fail,) = checker.check({"a": 1, "b": 0}, 1)
    assert fail.rule == "constraint" and "cannot evaluate" in fail.message and "division by zero" in fail.message
    (fail,) = checker.check({"a": -1, "b": 1}, 2)
    assert (fail.field, fail.message) == ("pos", "a must not be negative (a=-1)")


def test_fork_has_independent_state() -> None:
    checker = Checker(parse_rules("record_type: r\nfields: {t: timestamp}\ntime: {field: t}\n"))
    assert not checker.check({"t": 10}, 0)
    other = checker.fork()
    assert not other.check({"t": 5}, 0)
    assert [f.rule for f in checker.check({"t": 5}, 1)] == ["time_order"]


@pytest.mark.parametrize("value,scale,expected", [
    ("2024-01-01T00:00:00Z", 1.0, 1704067200.0),
    ("2024-01-01T00:00:00", 1.0, 1704067200.0),  # naive means UTC
    ("2024-01-01T01:00:00+01:00", 1.0, 1704067200.0),
    ("2024-01-01", 1.0, 1704067200.0),
    (1704067200, 1.0, 1704067200.0),
    (1704067200500, 1e-3, 1704067200.5),
    ("yesterday", 1.0, None),
    ("1704067200", 1.0, None),  # numbers in JSON strings are not timestamps (CSV cells are converted first)
    (True, 1.0, None),
    (float("nan"), 1.0, None),
    (10 ** 400, 1.0, None),
    (None, 1.0, None),
])
def test_timestamps(value, scale: float, expected) -> None:
    from evaluators.data_quality.timeparse import to_seconds

    assert to_seconds(value, scale) == expected


def test_memory_does_not_grow_with_the_stream() -> None:
    import tracemalloc

    checker = Checker(parse_rules(rules_yaml()))
    tracemalloc.start()
    try:
        for index, record in enumerate(series(5_000, faults=False)):
            checker.check(record, index)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"peak {peak} bytes while checking 5k records"
