"""Records found in model answers (JSON bodies, fenced blocks) and the evaluator's verdicts on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluators.base import EvalItem, Evaluator
from evaluators.data_quality import DataQualityEvaluator
from evaluators.data_quality.extract import extract_records
from evaluators.registry import create
from tests.dq_series import FAULTS, rules_yaml, series


# -- extraction -----------------------------------------------------------------------------------
def spans_parse_back(text: str) -> list:
    found = extract_records(text)
    for rec in found.records:
        assert json.loads(text[rec.start:rec.end]) == rec.value
    return [r.value for r in found.records]


def test_json_body_object_and_array() -> None:
    assert spans_parse_back('  {"a": 1}\n') == [{"a": 1}]
    assert spans_parse_back('[{"a": 1}, {"a": [2, 3]} , 4]') == [{"a": 1}, {"a": [2, 3]}, 4]
    assert spans_parse_back("[]") == []


def test_fenced_blocks_in_prose() -> None:
    text = (
        "Here are the readings:\n\n```json\n[{\"a\": 1},\n {\"a\": 2}]\n```\n"
        "More, one per line:\n~~~jsonl\n{\"a\": 3}\n\n{\"a\": 4}\n~~~\n"
        "Untagged:\n```\n{\"a\": 5}\n```\n"
        "Not data:\n```python\nprint({'a': 6})\n```\n```\nplain text block\n```\n"
    )
    assert spans_parse_back(text) == [{"a": i} for i in range(1, 6)]
    assert extract_records(text).sources == 3


def test_broken_blocks_are_problems_and_unclosed_fences_are_ignored() -> None:
    broken = extract_records('ok:\n```json\n[{"a": 1}, {"a": ]\n```\n')
    assert broken.records == [] and "array element 1" in broken.problems[0].message
    truncated_body = extract_records('[{"a": 1}, {"a": 2')
    assert truncated_body.records == [] and len(truncated_body.problems) == 1
    lines = extract_records('```jsonl\n{"a": 1}\n{oops}\n```')
    assert [r.value for r in lines.records] == [{"a": 1}] and "invalid JSON line" in lines.problems[0].message
    streaming = extract_records('Readings:\n```json\n[{"a": 1},')
    assert (streaming.records, streaming.problems, streaming.sources) == ([], [], 0)
    assert extract_records("No data here {at all}.").sources == 0


def test_records_key() -> None:
    text = '{"meta": {"records": [0]}, "records": [{"a": 1}, {"a": 2}]}'
    found = extract_records(text, records_key="records")
    assert [r.value for r in found.records] == [{"a": 1}, {"a": 2}]
    assert text[found.records[1].start:found.records[1].end] == '{"a": 2}'


# -- evaluator ------------------------------------------------------------------------------------
@pytest.fixture()
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "telemetry.yaml"
    path.write_text(rules_yaml())
    return path


def answer_with(records: list, prose: str = "Here is the data you asked for.") -> str:
    return f"{prose}\n\n```json\n{json.dumps(records, indent=1)}\n```\nAnything else?"


async def test_evaluator_accepts_clean_and_rejects_bad_records(rules_path: Path) -> None:
    evaluator = create("data_quality", "dq", {"rules": str(rules_path)})
    assert isinstance(evaluator, Evaluator) and evaluator.stages == frozenset({"output"})
    clean = list(series(40, faults=False))
    bad = [dict(r) for r in clean]
    bad[3]["battery"] = 180
    bad[7]["min_temp"] = 40
    items = [EvalItem.of_text(answer_with(clean), "output"), EvalItem.of_text(answer_with(bad), "output"),
             EvalItem.of_text("Sorry, I have no data.", "output")]
    ok, rejected, no_data = await evaluator.evaluate(items)
    assert (ok.safe, ok.categories, ok.score, ok.findings) == (True, [], 0.0, [])
    assert (rejected.safe, rejected.categories, rejected.score) == (False, ["quality"], 1.0)
    assert [f.kind for f in rejected.findings] == ["range:battery@3", "constraint:temp_order@7"]
    text = items[1].text
    for finding, index in zip(rejected.findings, (3, 7)):
        assert finding.category == "quality"
        assert json.loads(text[finding.start:finding.end]) == bad[index]
    assert no_data.safe and rejected.evaluator == "dq" and rejected.version == evaluator.version


async def test_every_planted_fault_appears_as_a_finding(rules_path: Path) -> None:
    evaluator = create("data_quality", "dq", {"rules": str(rules_path), "max_findings": 500})
    answer = "\n".join(json.dumps(r) for r in series(1000))  # not one JSON body: use a jsonl fence
    (verdict,) = await evaluator.evaluate([EvalItem.of_text(f"```jsonl\n{answer}\n```", "output")])
    assert sorted(f.kind for f in verdict.findings) == sorted(
        f"{rule}:{field}@{i}" for i, (rule, field) in FAULTS.items())


def test_inspect_gives_the_rich_report(rules_path: Path) -> None:
    evaluator = create("data_quality", "dq", {"rules": str(rules_path)})
    records = list(series(10, faults=False))
    records[4] = "not a record"
    report = evaluator.inspect(answer_with(records) + '\n```json\n{"broken": \n```')
    data = report.to_dict()
    assert (data["accepted"], data["records"], data["rejected"], data["sources"]) == (False, 10, 1, 2)
    assert [(f["rule"], f["index"]) for f in data["failures"]] == [("parse", 0), ("record", 4)]
    assert "expected a JSON object" in data["failures"][1]["message"]


async def test_options_records_key_require_records_and_cap(rules_path: Path) -> None:
    evaluator = create("data_quality", "dq", {"rules": str(rules_path), "records_key": "points",
                                              "require_records": True, "max_findings": 1})
    bad = [dict(r, battery=-1) for r in series(5, faults=False)]
    verdicts = await evaluator.evaluate([
        EvalItem.of_text(json.dumps({"unit": "SI", "points": bad}), "output"),
        EvalItem.of_text("I could not find any readings.", "output"),
    ])
    assert [f.kind for f in verdicts[0].findings] == ["range:battery@0"]  # 5 failures, capped at 1
    assert [f.kind for f in verdicts[1].findings] == ["record:@0"] and not verdicts[1].safe


def test_inline_rules_and_version_follows_the_rules() -> None:
    a = create("data_quality", "dq", {"rules": {"record_type": "x", "fields": {"v": {"type": "number", "max": 1}}}})
    b = create("data_quality", "dq", {"rules": {"record_type": "x", "fields": {"v": {"type": "number", "max": 2}}}})
    assert isinstance(a, DataQualityEvaluator) and a.version != b.version
    assert a.judge('{"v": 1.5}').findings[0].kind == "range:v@0" and b.judge('{"v": 1.5}').safe


@pytest.mark.parametrize("options,words", [
    ({}, "rules: must be"),
    ({"rules": "x.yaml", "colour": 1}, "unknown option"),
    ({"rules": {"record_type": "x", "fields": {}}}, "fields"),
    ({"rules": {"record_type": "x", "fields": {"v": "number"}}, "stages": ["middle"]}, "stages"),
])
def test_bad_options_fail_at_creation(options: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        create("data_quality", "dq", options)


async def test_policy_snippet_from_the_docs_loads_and_judges(tmp_path: Path, rules_path: Path) -> None:
    """The documented policy parses with the proxy's settings loader and builds a working evaluator.

    (The proxy-level block/flag test waits for the proxy app; this covers config -> registry -> verdict.)
    """
    from evaluators.registry import create as create_evaluator
    from proxy.config import load_settings

    config = tmp_path / "policy.yaml"
    config.write_text(f"""
evaluators:
  telemetry_quality:
    type: data_quality
    on_error: fail_closed
    timeout_ms: 500
    options: {{rules: {rules_path}}}
policies:
  default:
    output:
      evaluators: [telemetry_quality]
    actions: {{quality: block, default: block}}
  lenient:
    output:
      evaluators: [telemetry_quality]
    actions: {{quality: flag}}
""")
    settings = load_settings(config, env={})
    cfg = settings.evaluators["telemetry_quality"]
    evaluator = create_evaluator(cfg.type, "telemetry_quality", cfg.options)
    bad = [dict(r) for r in series(6, faults=False)]
    bad[2]["speed"] = -3
    (verdict,) = await evaluator.evaluate([EvalItem.of_text(answer_with(bad), "output")])
    assert verdict.categories == ["quality"]
    assert [settings.policies[p].action_for(c) for p in ("default", "lenient") for c in verdict.categories] == \
        ["block", "flag"]
