"""Rule files: the example loads, and every error names the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluators.data_quality.rules import RulesError, load_rules, parse_rules, rules_from_data

EXAMPLE = Path(__file__).resolve().parents[1] / "evaluators" / "data_quality" / "examples" / "telemetry.yaml"

GOOD = """\
record_type: t
fields:
  dev: string
  ts: {type: timestamp}
  speed: {type: number, min: 0, max: 90, unit: m/s}
time: {field: ts, series_key: dev}
rates:
  - {field: speed, max: 12}
constraints:
  - "speed >= 0"
"""


def error_of(text: str) -> RulesError:
    with pytest.raises(RulesError) as info:
        parse_rules(text, "rules.yaml")
    return info.value


def test_example_and_shorthands_load() -> None:
    rules = load_rules(EXAMPLE)
    assert rules.record_type == "vehicle_telemetry" and rules.time and rules.time.series_key == "device_id"
    parsed = parse_rules(GOOD)
    assert parsed.fields["dev"].type == "string" and parsed.constraints[0].expr == "speed >= 0"
    assert parsed.rates[0].max_per_second("s") == 12


@pytest.mark.parametrize("old,new,line,key,words", [
    ("  speed: {type: number, min: 0,", "  speed: {type: number, min: fast,", 5, "fields.speed.min", "valid number"),
    ("unit: m/s}", "unit: m/s, maxx: 3}", 5, "fields.speed.maxx", "unknown key"),
    ("  ts: {type: timestamp}", "  ts: {type: datetime}", 4, "fields.ts.type", "Input should be"),
    ("  - {field: speed, max: 12}", "  - {max: 12}", 8, "rates[0].field", "required key is missing"),
    ("  - {field: speed, max: 12}", "  - {field: speed, max: -1}", 8, "rates[0].max", "greater than 0"),
    ("record_type: t\n", "", 1, "record_type", "required key is missing"),
    ("series_key: dev}", "series_key: device}", 6, "time.series_key", "unknown field 'device'"),
    ("time: {field: ts,", "time: {field: dev,", 6, "time.field", "must have type timestamp"),
    ("  - {field: speed, max: 12}", "  - {field: dev, max: 12}", 8, "rates[0].field", "must be a number"),
    ("  - {field: speed, max: 12}", "  - {field: speed, max: 12, unit: km/h}", 8, "rates[0].unit", "differs"),
    ("min: 0, max: 90", "min: 100, max: 90", 5, "fields.speed.min", "greater than max"),
    ("  dev: string", "  dev: {type: string, min: 1}", 3, "fields.dev.min", "ranges apply to number"),
    ('  - "speed >= 0"', '  - "speed.real >= 0"', 10, "constraints[0].expr", "attribute access"),
    ('  - "speed >= 0"', '  - {name: c, expr: "__import__(\'os\') == 1"}', 10, "constraints[0].expr",
     "only abs, min, max may be called"),
    ('  - "speed >= 0"', '  - "sped >= 0"', 10, "constraints[0].expr", "unknown field 'sped'"),
    ("  dev: string", "  dev: string\n  dev: number", 4, "fields.dev", "duplicate key"),
])
def test_errors_name_line_and_key(old: str, new: str, line: int, key: str, words: str) -> None:
    assert old in GOOD
    error = error_of(GOOD.replace(old, new))
    issue = error.issues[0]
    assert (issue.line, issue.dotted) == (line, key), str(error)
    assert words in issue.message
    assert str(error).startswith(f"rules.yaml:{line}:") and f" {key}: " in str(error)


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("min: 0,", "min: x,").replace("max: 12}", "max: 12, per: s}")
    assert [(i.line, i.dotted) for i in error_of(text).issues] == [(5, "fields.speed.min"), (8, "rates[0].per")]


def test_invalid_yaml_names_the_line() -> None:
    error = error_of("record_type: t\nfields:\n  a: {type: number\n  b: string\n")
    assert error.issues[0].line == 4 and "invalid YAML" in str(error)


def test_rate_rules_need_a_time_section() -> None:
    error = error_of("record_type: t\nfields: {v: number}\nrates:\n  - {field: v, max: 1}\n")
    assert (error.issues[0].line, error.issues[0].dotted) == (4, "rates[0]")
    assert "need a `time` section" in str(error)


@pytest.mark.parametrize("text,words", [("- a\n- b\n", "must be a mapping"), ("", "must be a mapping")])
def test_top_level_must_be_a_mapping(text: str, words: str) -> None:
    assert words in str(error_of(text))


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read rule file"):
        load_rules(tmp_path / "missing.yaml")


def test_inline_rules_report_the_key_path() -> None:
    with pytest.raises(RulesError) as info:
        rules_from_data({"record_type": "x", "fields": {"a": {"type": "number", "min": "low"}}}, "options.rules")
    assert str(info.value).startswith("options.rules: fields.a.min:")


def test_digest_follows_content() -> None:
    assert parse_rules(GOOD).digest() == parse_rules(GOOD + "\n# a comment\n").digest()
    assert parse_rules(GOOD).digest() != parse_rules(GOOD.replace("max: 90", "max: 91")).digest()
