"""A bad configuration is one line naming the key, before anything listens: evaluator options, evaluators listed
for a stage they do not judge, review-store URLs and schemas, the consumers' section (in the consumer commands
and in the proxy); `hash-key` takes its key as an argument."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import free_port

ROOT = Path(__file__).parents[1]


def guardstream(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "proxy.cli", *args], capture_output=True, text=True, input=stdin,
                          timeout=timeout, cwd=ROOT, env=env)


def serve_with(tmp_path: Path, evaluators: str, policy: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bad.yaml"
    config.write_text(f"evaluators:\n{evaluators}\npolicies:\n  default:\n{policy}\n"
                      f"audit: {{jsonl_path: {tmp_path / 'audit.jsonl'}}}\n")
    return guardstream("serve", "--port", str(free_port()), "--config", str(config))


def assert_one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert expected in lines[0], lines[0]
    assert "listening" not in result.stderr and "Traceback" not in result.stderr


BAD_EVALUATORS = {
    "unknown classifier option": (
        "  clf: {type: classifier, options: {max_batch_sise: 8}}", "input: {evaluators: [clf]}",
        "evaluators.clf.options.max_batch_sise: unknown option"),
    "classifier path that holds no model": (
        "  clf: {type: classifier, options: {path: /nonexistent/model}}", "input: {evaluators: [clf]}",
        "evaluators.clf.options.path: /nonexistent/model is not a classifier artifact"),
    "unknown rule option": (
        "  pii: {type: pii, options: {kind: [email]}}", "input: {evaluators: [pii]}",
        "evaluators.pii.options.kind: unknown option"),
    "bad rule option value": (
        "  sec: {type: secrets, options: {kinds: [nope]}}", "input: {evaluators: [sec]}",
        "evaluators.sec.options.kinds: unknown kind(s) ['nope']"),
    "unknown llama guard option": (
        "  lg: {type: llama_guard, options: {bogus: 1}}", "input: {evaluators: [lg]}",
        "evaluators.lg.options.bogus: "),
    "mistyped llama guard option": (
        "  lg: {type: llama_guard, options: {threshold: high}}", "input: {evaluators: [lg]}",
        "evaluators.lg.options.threshold: Input should be a valid number"),
    "mistyped injection option (checked when the config loads)": (
        "  inj: {type: injection, options: {threshold: 2}}", "input: {evaluators: [inj]}",
        "evaluators.inj.options.threshold: Input should be less than or equal to 1"),
    "missing data-quality rules": (
        "  dq: {type: data_quality, options: {rules: /nonexistent/rules.yaml}}", "output: {evaluators: [dq]}",
        "evaluators.dq.options.rules: /nonexistent/rules.yaml: cannot read rule file"),
    "nested cascade option": (
        "  c: {type: cascade, options: {first: {type: pii, options: {x: 1}}, second: {type: pii}}}",
        "input: {evaluators: [c]}", "evaluators.c.options.first.options.x: unknown option"),
    "unknown type": (
        "  x: {type: nosuchtype}", "input: {evaluators: [x]}", "evaluators.x.type: unknown evaluator type"),
    "evaluator listed for a stage it does not judge": (
        "  pii: {type: pii, options: {stages: [output]}}", "input: {evaluators: [pii]}",
        "policies.default.input.evaluators: evaluator 'pii' does not judge the input stage"),
}


def test_a_bad_key_is_one_line_naming_the_file_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("server: {prot: 8080}\n")
    assert_one_line(guardstream("serve", "--port", str(free_port()), "--config", str(config)),
                    f"guardstream: {config}: server.prot: Extra inputs are not permitted")


@pytest.mark.parametrize("case", list(BAD_EVALUATORS))
def test_a_bad_evaluator_is_one_line_before_listening(tmp_path: Path, case: str) -> None:
    evaluators, policy, expected = BAD_EVALUATORS[case]
    assert_one_line(serve_with(tmp_path, evaluators, "    " + policy), expected)


def test_a_stage_an_evaluator_excludes_is_never_judged_by_it(tmp_path: Path) -> None:
    """`stages` is enforced by the guard too (for evaluators built outside the config path)."""
    import asyncio

    from evaluators.base import EvalItem
    from evaluators.registry import create
    from proxy.cache import build_cache
    from proxy.config import ConfigError, Settings
    from proxy.guard import Guard

    settings = Settings.model_validate({"evaluators": {"pii": {"type": "pii", "options": {"stages": ["output"]}}},
                                        "policies": {"default": {"input": {"evaluators": ["pii"]}}}})
    evaluators = {"pii": create("pii", "pii", {"stages": ["output"]})}
    with pytest.raises(ConfigError, match="policies.default.input.evaluators: evaluator 'pii' does not judge"):
        Guard(settings, evaluators, build_cache(settings.cache))
    guard = Guard(settings, evaluators, build_cache(settings.cache), strict=False)
    decision = asyncio.run(guard.check(guard.policy("default"), EvalItem.of_text("mail jane@example.org", "input")))
    assert decision.action == "allow" and decision.verdicts == []


# -- review store ------------------------------------------------------------------------------------

def store_urls(tmp_path: Path) -> list[tuple[list[str], str]]:
    cases = [(["--db", str(tmp_path / "r.db"), "--db-schema", "nosuch"], "--db-schema nosuch: "),
             (["--db", "nosuchdialect://host/db"], "--db nosuchdialect://host/db: "),
             (["--db", "postgresql://nobody@127.0.0.1:1/none"], "--db postgresql://nobody@127.0.0.1:1/none: ")]
    if os.environ.get("POSTGRES_URL"):
        cases.append((["--db", os.environ["POSTGRES_URL"], "--db-schema", "gs_no_such_schema"],
                      "--db-schema gs_no_such_schema: no such schema"))
    return cases


@pytest.mark.parametrize("command", ["review", "metrics"])
def test_a_bad_store_is_one_line(tmp_path: Path, command: str) -> None:
    for db_args, expected in store_urls(tmp_path):
        if command == "review":
            result = guardstream("review", *db_args, "migrate")
        else:
            result = guardstream("metrics", "--no-consume", "--port", str(free_port()), *db_args)
        assert result.returncode == 2, (db_args, result.stderr[-3000:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (db_args, result.stderr[-3000:])


# -- the consumers' section ---------------------------------------------------------------------------

def consumers_with(tmp_path: Path, section: str) -> Path:
    config = tmp_path / "bad.yaml"
    config.write_text(f"consumers:\n  db: {tmp_path / 'r.db'}\n{section}\n")
    return config


BAD_CONSUMERS = {
    "review": ("  review: {prot: 8090}", ["--no-consume", "--port", "0"],
               "consumers.review.prot: Extra inputs are not permitted"),
    "metrics": ("  kafka: {stall_limit_s: -1}", ["--bootstrap", "127.0.0.1:1"],
                "consumers.kafka.stall_limit_s: Input should be greater than 0"),
    "export": ("  db_shema: review", ["--out", "unused"], "consumers.db_shema: Extra inputs are not permitted"),
}


@pytest.mark.parametrize("command", list(BAD_CONSUMERS))
def test_a_bad_consumers_key_is_one_line_before_anything_opens(tmp_path: Path, command: str) -> None:
    section, args, expected = BAD_CONSUMERS[command]
    config = consumers_with(tmp_path, section)
    assert_one_line(guardstream(command, "--config", str(config), *args), f"guardstream: {config}: {expected}")
    assert not (tmp_path / "r.db").exists()  # the store was never opened


def test_the_proxy_refuses_the_same_bad_consumers_key(tmp_path: Path) -> None:
    config = consumers_with(tmp_path, "  review: {prot: 8090}")
    assert_one_line(guardstream("serve", "--port", str(free_port()), "--config", str(config)),
                    f"guardstream: {config}: consumers.review.prot: Extra inputs are not permitted")


def test_a_bad_flag_value_names_its_key(tmp_path: Path) -> None:
    assert_one_line(guardstream("metrics", "--no-consume", "--db", str(tmp_path / "r.db"), "--port", "70000"),
                    "guardstream: (no config file): consumers.metrics.port: Input should be less than or equal to 65535")
    assert not (tmp_path / "r.db").exists()


# -- hash-key ----------------------------------------------------------------------------------------

def test_hash_key_takes_the_key_as_an_argument_and_warns() -> None:
    from proxy.auth import hash_key

    result = guardstream("hash-key", "client-key-123")
    assert result.returncode == 0
    assert result.stdout.strip() == hash_key("client-key-123")
    assert "shell history" in result.stderr


def test_hash_key_reads_stdin() -> None:
    from proxy.auth import hash_key

    result = guardstream("hash-key", "--stdin", stdin="client-key-123\n")
    assert result.returncode == 0 and result.stdout.strip() == hash_key("client-key-123")
    assert "history" not in result.stderr
