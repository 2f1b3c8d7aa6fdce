"""The cascade's routing: clear first-stage scores decide, uncertain ones go to the second evaluator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluators import registry
from evaluators.base import EvalItem
from evaluators.cascade import CascadeEvaluator
from proxy.cli import main
from tests.eval_helpers import BrokenEvaluator, KeywordEvaluator, TableEvaluator

SCORES = {"clearly fine": 0.02, "clearly bad bomb": 0.97, "unsure bomb": 0.5, "unsure fine": 0.4, "edge": 0.9}


def _items(*texts: str) -> list[EvalItem]:
    return [EvalItem.of_text(t) for t in texts]


async def test_routing_by_thresholds() -> None:
    first = TableEvaluator("first", SCORES)
    second = KeywordEvaluator("second", ["bomb"], category="S9")
    cascade = CascadeEvaluator("casc", first, second, low=0.1, high=0.9)
    result = await cascade.evaluate_routed(_items("clearly fine", "clearly bad bomb", "unsure bomb", "unsure fine", "edge"))
    assert result.routes == ["first_safe", "first_unsafe", "second", "second", "second"]  # 0.9 is not > high
    assert second.seen == ["unsure bomb", "unsure fine", "edge"]
    v = result.verdicts
    assert [x.safe for x in v] == [True, False, False, True, True]
    assert v[1].categories == ["unsafe"] and v[1].score == 0.97  # decided by the first stage
    assert v[2].categories == ["S9"] and v[2].score == 1.0       # decided by the second stage
    assert all(x.evaluator == "casc" for x in v)
    assert cascade.calls == {"items": 5, "second": 3}
    assert cascade.version == "table-1+kw-1@0.1-0.9"


async def test_no_second_call_when_everything_is_clear() -> None:
    first = TableEvaluator("first", SCORES)
    second = KeywordEvaluator("second", ["bomb"])
    cascade = CascadeEvaluator("casc", first, second)
    verdicts = await cascade.evaluate(_items("clearly fine", "clearly bad bomb"))
    assert [v.safe for v in verdicts] == [True, False] and second.seen == []


async def test_unscored_first_stage_and_errors_go_to_second() -> None:
    # a rule first stage: its "unsafe" decides, its "safe" is passed on
    rule = KeywordEvaluator("rule", ["bomb"], scored=False)
    second = KeywordEvaluator("second", ["fine"])
    cascade = CascadeEvaluator("casc", rule, second)
    result = await cascade.evaluate_routed(_items("a bomb", "fine day"))
    assert result.routes == ["first_unsafe", "second"] and second.seen == ["fine day"]
    # a first-stage error is not a decision
    first = TableEvaluator("first", {})
    second2 = KeywordEvaluator("second", ["zzz"])
    result = await CascadeEvaluator("casc", first, second2).evaluate_routed(_items("unknown text"))
    assert result.routes == ["second"] and result.verdicts[0].safe and result.verdicts[0].error is None


async def test_a_failing_first_stage_sends_everything_on() -> None:
    second = KeywordEvaluator("second", ["bomb"])
    result = await CascadeEvaluator("casc", BrokenEvaluator(), second).evaluate_routed(_items("a bomb", "tea"))
    assert result.routes == ["second", "second"] and [v.safe for v in result.verdicts] == [False, True]
    assert all(v.error and "engine down" in v.error for v in result.first)


def test_factory_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.EVALUATOR_TYPES, "test_table", "tests.eval_helpers:create_table")
    monkeypatch.setitem(registry.EVALUATOR_TYPES, "test_keyword", "tests.eval_helpers:create_keyword")
    ev = registry.create("cascade", "guard", {"first": {"type": "test_table", "options": {"scores": SCORES}},
                                              "second": {"type": "test_keyword"}, "low": 0.2, "high": 0.8})
    assert isinstance(ev, CascadeEvaluator) and ev.first.name == "guard.first" and (ev.low, ev.high) == (0.2, 0.8)
    with pytest.raises(ValueError, match="low <= high"):
        registry.create("cascade", "g", {"first": {"type": "test_table"}, "second": {"type": "test_keyword"},
                                         "low": 0.9, "high": 0.1})
    with pytest.raises(ValueError, match="second: required"):
        registry.create("cascade", "g", {"first": {"type": "test_table"}})
    with pytest.raises(ValueError, match="unknown option"):
        registry.create("cascade", "g", {"first": {"type": "test_table"}, "second": {"type": "test_keyword"}, "lo": 1})


def test_eval_reports_saved_calls_and_recall_cost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.EVALUATOR_TYPES, "test_table", "tests.eval_helpers:create_table")
    monkeypatch.setitem(registry.EVALUATOR_TYPES, "test_keyword", "tests.eval_helpers:create_keyword")
    rows = [("clearly fine", "safe"), ("clearly bad bomb", "unsafe"), ("unsure bomb", "unsafe"),
            ("unsure fine", "safe"), ("quiet bomb", "unsafe")]  # the first stage wrongly clears "quiet bomb"
    scores = {**SCORES, "quiet bomb": 0.05}
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    config = tmp_path / "gs.yaml"
    config.write_text(json.dumps({"evaluators": {"guard": {"type": "cascade", "options": {
        "first": {"type": "test_table", "options": {"scores": scores}},
        "second": {"type": "test_keyword", "options": {"keywords": ["bomb"]}}, "low": 0.1, "high": 0.9}}}}))
    report, plot = tmp_path / "r.json", tmp_path / "pr.png"
    assert main(["eval", str(data), "--evaluator", "guard", "--config", str(config), "--report", str(report),
                 "--plot", str(plot), "--compare-second"]) == 0
    c = json.loads(report.read_text())["cascade"]
    assert c["items"] == 5 and c["second_stage_calls"] == 2 and c["saved_calls"] == 3
    assert c["saved_fraction"] == pytest.approx(0.6)
    assert c["routes"] == {"first_safe": 2, "first_unsafe": 1, "second": 2, "error": 0}
    assert c["unsafe_passed_by_first"] == 1 and c["max_recall_cost"] == pytest.approx(1 / 3)
    assert c["second_alone"]["recall"] == 1.0 and c["cascade"]["recall"] == pytest.approx(2 / 3)
    assert c["recall_cost"] == pytest.approx(1 / 3)
    assert plot.exists()
