"""`guardstream finetune` / `promote` / `eval --compare` refuse bad input with one line, before any training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from proxy.cli import main
from tests.finetune_support import kto_export


def _one_line_error(capsys: pytest.CaptureFixture[str], needle: str) -> None:
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_finetune_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = kto_export(tmp_path / "export", n_train=4, n_test=2)
    out = str(tmp_path / "run")
    assert main(["finetune", "judge", "--data", str(data), "--out", out, "--base", str(tmp_path)]) == 2
    _one_line_error(capsys, "needs --categories")
    assert main(["finetune", "llama-guard", "--data", str(data), "--out", out]) == 2
    _one_line_error(capsys, "needs --base")
    assert main(["finetune", "reward", "--data", str(data), "--out", out, "--base", str(tmp_path)]) == 2
    _one_line_error(capsys, "no dpo/train.jsonl")
    assert main(["finetune", "classifier", "--data", str(tmp_path / "nope"), "--out", out]) == 2
    _one_line_error(capsys, "does not exist")
    bad = tmp_path / "cats.yaml"
    bad.write_text("- {code: Q1}\n")
    assert main(["finetune", "judge", "--data", str(data), "--out", out, "--categories", str(bad)]) == 2
    _one_line_error(capsys, "expected a list of {code, name, description}")
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"evaluators": {"rules": {"type": "regex", "options": {"patterns": ["x"]}}},
                                      "policies": {"default": {"input": {"evaluators": ["rules"]}}}}))
    assert main(["finetune", "llama-guard", "--data", str(data), "--out", out, "--config", str(config)]) == 2
    _one_line_error(capsys, "--config needs --evaluator NAME, one of: rules")
    assert main(["finetune", "llama-guard", "--data", str(data), "--out", out, "--config", str(config),
                 "--evaluator", "rules"]) == 2
    _one_line_error(capsys, "is a regex, not a llama_guard")
    broken = tmp_path / "broken" / "kto"
    broken.mkdir(parents=True)
    (broken / "train.jsonl").write_text(
        json.dumps({"prompt": [{"role": "robot", "content": "x"}], "completion": [], "label": True}) + "\n")
    assert main(["finetune", "classifier", "--data", str(broken.parent), "--out", out]) == 2
    _one_line_error(capsys, "train.jsonl:1: field 'prompt'")


def test_promote_and_compare_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"evaluators": {"g": {"type": "llama_guard"}},
                                      "policies": {"default": {"input": {"evaluators": ["g"]}}}}))
    assert main(["promote", str(tmp_path), "--config", str(config), "--evaluator", "g"]) == 2
    _one_line_error(capsys, "not a finetune artifact")
    artifact = tmp_path / "reward-run"
    artifact.mkdir()
    (artifact / "manifest.json").write_text(json.dumps({"schema": "guardstream.finetune.v1", "kind": "reward",
                                                        "evaluator": {"type": "reward_model", "options": {}}}))
    assert main(["promote", str(artifact), "--config", str(config), "--evaluator", "g"]) == 2
    _one_line_error(capsys, "cannot build yet")
    assert main(["promote", str(artifact), "--config", str(config), "--evaluator", "missing"]) == 2
    _one_line_error(capsys, "has no evaluator 'missing'")
    assert main(["promote", "--config", str(config), "--candidate", "g"]) == 2
    _one_line_error(capsys, "--candidate NAME --data EXPORT")
    shadowed = tmp_path / "shadowed.yaml"
    shadowed.write_text(yaml.safe_dump({
        "evaluators": {"live": {"type": "regex", "options": {"patterns": ["x"]}},
                       "cand": {"type": "regex", "options": {"patterns": ["y"]}}},
        "policies": {"default": {"input": {"evaluators": ["live"], "shadow": ["cand"]}}}}))
    assert main(["promote", "--config", str(shadowed), "--candidate", "cand", "--data", str(tmp_path)]) == 2
    _one_line_error(capsys, "name the evaluator it would replace (shadow: {cand: LIVE})")
    assert main(["promote", "--config", str(shadowed), "--candidate", "live", "--data", str(tmp_path)]) == 2
    _one_line_error(capsys, "'live' shadows no evaluator")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "hi", "label": 0}) + "\n")
    assert main(["eval", str(rows)]) == 2
    _one_line_error(capsys, "--compare A B")
    assert main(["eval", str(rows), "--compare", "regex", f"artifact:{artifact}"]) == 2
    _one_line_error(capsys, "cannot build evaluator")
