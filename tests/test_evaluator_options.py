"""Evaluator options are typed models, one per engine, checked when the config loads: an unknown or mistyped
option is one line naming the key (`evaluators.NAME.options.OPTION: reason`) before any engine is built; the
models import nothing heavy; every option is documented; the defaults are what the engines always used."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from evaluators import registry
from evaluators.options import EngineOptions
from proxy.config import ConfigError, load_settings

ROOT = Path(__file__).parents[1]

#: the least each registered type needs to be valid
MINIMAL: dict[str, dict[str, Any]] = {
    "pii": {}, "secrets": {}, "injection": {}, "unicode": {}, "regex": {"words": ["forbidden"]},
    "llama_guard": {}, "classifier": {}, "data_quality": {"rules": "rules.yaml"},
    "reward_model": {"path": "models/reward"},
    "cascade": {"first": {"type": "pii"}, "second": {"type": "llama_guard"}},
}


def load(tmp_path: Path, type_name: str, options: dict[str, Any]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"evaluators": {"ev": {"type": type_name, "options": options}}}))
    load_settings(config, env={})


def error_of(tmp_path: Path, type_name: str, options: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, type_name, options)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


#: the types guardstream ships (tests/conftest.py registers a test engine, `keyword`, beside them)
SHIPPED = sorted(t for t, target in registry.EVALUATOR_TYPES.items() if target.startswith("evaluators."))


def test_every_registered_type_has_an_options_model() -> None:
    assert set(registry.OPTION_MODELS) == set(SHIPPED) == set(MINIMAL)
    assert registry.options_model("keyword") is not None  # the test engine, a plugin carrying its model
    for type_name in SHIPPED:
        model = registry.options_model(type_name)
        assert model is not None and issubclass(model, EngineOptions), type_name


@pytest.mark.parametrize("type_name", sorted(MINIMAL))
def test_minimal_options_load_without_building_anything(tmp_path: Path, type_name: str) -> None:
    load(tmp_path, type_name, MINIMAL[type_name])  # no rule file, no model directory: those are checked when built


@pytest.mark.parametrize("type_name", sorted(MINIMAL))
def test_an_unknown_option_is_one_line_naming_it(tmp_path: Path, type_name: str) -> None:
    message = error_of(tmp_path, type_name, {**MINIMAL[type_name], "bogus_option": 1})
    assert message.startswith("evaluators.ev.options.bogus_option: unknown option (known: "), message


MISTYPED = [
    ("llama_guard", {"threshold": "high"}, "threshold: Input should be a valid number"),
    ("llama_guard", {"batch": {"max_batch_sise": 8}}, "batch.max_batch_sise: unknown option"),
    ("llama_guard", {"exclude": ["S99"]}, "exclude: exclude names unknown category codes: S99"),
    ("llama_guard", {"backend": "tgi"}, "backend: Input should be 'openai_http', 'vllm' or 'transformers'"),
    ("classifier", {"max_batch_size": 0}, "max_batch_size: Input should be greater than 0"),
    ("classifier", {"operating_point": "lax"}, "operating_point: Input should be 'default' or 'strict'"),
    ("classifier", {"threshold": 1.5}, "threshold: Input should be less than or equal to 1"),
    ("classifier", {"stages": ["middle"]}, "stages: must be a non-empty subset of [input, output]"),
    ("pii", {"kinds": ["email", "nope"]}, "kinds: unknown kind(s) ['nope']"),
    ("pii", {"stages": []}, "stages: must be a non-empty subset"),
    ("secrets", {"entropy_threshold": "lots"}, "entropy_threshold: Input should be a valid number"),
    ("unicode", {"allow_script_joiners": "maybe"}, "allow_script_joiners: Input should be a valid boolean"),
    ("injection", {"threshold": 0}, "threshold: Input should be greater than 0"),
    ("injection", {"disable": ["no_such_heuristic"]}, "disable: unknown heuristic(s) ['no_such_heuristic']"),
    ("injection", {"weights": {"encoded_payload": "heavy"}}, "weights.encoded_payload: Input should be a valid"),
    ("regex", {}, "patterns: give at least one of `patterns` or `words`"),
    ("regex", {"patterns": {"order": "(unclosed"}}, "patterns: bad pattern '(unclosed'"),
    ("data_quality", {}, "rules: must be a rule-file path or an inline rule set"),
    ("data_quality", {"rules": "r.yaml", "max_findings": 0}, "max_findings: Input should be greater than or equal"),
    ("reward_model", {}, "path: the transformers backend needs a model directory"),
    ("reward_model", {"backend": "vllm"}, "model: the vllm backend needs the served model name"),
    ("reward_model", {"path": "m", "max_length": 8}, "max_length: Input should be greater than 16"),
    ("cascade", {"first": {"type": "pii"}}, "second: required"),
    ("cascade", {**MINIMAL["cascade"], "low": 0.9, "high": 0.1}, "low: need 0 <= low <= high <= 1"),
    ("cascade", {"first": {"type": "pii", "options": {"x": 1}}, "second": {"type": "pii"}},
     "first.options.x: unknown option"),
    ("cascade", {"first": {"type": "nosuch"}, "second": {"type": "pii"}}, "first.type: unknown evaluator type"),
]


@pytest.mark.parametrize("type_name,options,expected", MISTYPED, ids=[f"{t}-{e.split(':')[0]}" for t, _, e in MISTYPED])
def test_a_mistyped_option_is_one_line_naming_it(tmp_path: Path, type_name: str, options: dict[str, Any],
                                                 expected: str) -> None:
    message = error_of(tmp_path, type_name, options)
    assert message.startswith(f"evaluators.ev.options.{expected}"), message


def test_an_unknown_type_and_a_plugin_without_a_module_are_named(tmp_path: Path) -> None:
    assert error_of(tmp_path, "nosuchtype", {}).startswith("evaluators.ev.type: unknown evaluator type 'nosuchtype'")
    assert error_of(tmp_path, "no_such_pkg.mod:create", {}).startswith(
        "evaluators.ev.type: cannot import 'no_such_pkg.mod:create'")


def test_a_plugin_factory_may_carry_its_options_model(tmp_path: Path) -> None:
    load(tmp_path, "tests.keyword_evaluator:create", {"words": ["bomb"], "delay_ms": 5})
    assert error_of(tmp_path, "tests.keyword_evaluator:create", {"delay_ms": -1}).startswith(
        "evaluators.ev.options.delay_ms: Input should be greater than or equal to 0")
    load(tmp_path, "tests.eval_helpers:create_table", {"anything": 1})  # no model: the factory checks when built


def test_the_options_models_import_nothing_heavy() -> None:
    """Loading the config checks options without the engines' libraries (or the engines themselves)."""
    code = ("import sys\nfrom evaluators import registry\n"
            "for t in registry.OPTION_MODELS: registry.options_model(t)\n"
            "heavy = ['torch', 'transformers', 'onnxruntime', 'numpy', 'hyperscan', 'ahocorasick', "
            "'evaluators.classifier.evaluator', 'evaluators.reward_model.evaluator', 'evaluators.rules.pii']\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


DEFAULTS: dict[str, dict[str, Any]] = {
    "pii": {"kinds": None, "stages": frozenset({"input", "output"}), "inline_max_chars": 65536},
    "secrets": {"entropy_threshold": 3.0},
    "unicode": {"allow_script_joiners": True},
    "injection": {"threshold": 0.5, "disable": [], "weights": {}, "decode_base64": True},
    "regex": {"category": "blocklist", "ignore_case": True, "patterns": []},
    "classifier": {"path": None, "operating_point": "default", "threshold": None, "max_batch_size": 32,
                   "max_wait_ms": 2.0, "stages": frozenset({"input", "output"})},
    "data_quality": {"records_key": None, "require_records": False, "max_findings": 100,
                     "stages": frozenset({"output"})},
    "cascade": {"low": 0.1, "high": 0.9},
    "llama_guard": {"backend": "openai_http", "threshold": 0.5, "max_chars": 32_000, "max_tokens": 10},
    "reward_model": {"backend": "transformers", "threshold": None, "max_length": 2048, "max_batch_size": 16},
}


@pytest.mark.parametrize("type_name", sorted(DEFAULTS))
def test_defaults_are_what_the_engines_always_used(type_name: str) -> None:
    model = registry.options_model(type_name)
    assert model is not None
    options = model.model_validate(MINIMAL[type_name])
    assert {key: getattr(options, key) for key in DEFAULTS[type_name]} == DEFAULTS[type_name]


ENGINE_DOCS = {"llama_guard": "docs/llama_guard.md", "classifier": "docs/classifier.md",
               "data_quality": "docs/data_quality.md"}


@pytest.mark.parametrize("type_name", SHIPPED)
def test_every_option_is_documented(type_name: str) -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    if type_name in ENGINE_DOCS:
        text += (ROOT / ENGINE_DOCS[type_name]).read_text()
    model = registry.options_model(type_name)
    assert model is not None
    missing = [name for name in model.model_fields if not re.search(rf"(?<![A-Za-z_]){name}(?![A-Za-z_])", text)]
    assert not missing, f"options of {type_name} undocumented: {missing}"
