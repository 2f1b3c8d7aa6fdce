"""`guardstream demo` on embedded defaults: the README's first command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_runs_on_embedded_defaults(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    result = subprocess.run([sys.executable, "-m", "proxy.cli", "demo", "--audit-file", str(audit)],
                            capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).parents[1], env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for outcome in ("allowed", "blocked prompt", "blocked answer", "flagged"):
        assert outcome in out
    assert "input:prompt_injection" in out and "output:pii" in out
    # the learned classifier: a benign coding question passes, a harmful prompt is blocked with a Llama Guard
    # category, and a harmful streamed answer is cut
    lines = [line for line in out.splitlines() if line.count("│") > 5]

    def row(prompt_start: str) -> str:  # the first line of a table row (long prompts wrap onto more lines)
        return next(line for line in lines if line.split("│")[2].strip().startswith(prompt_start))

    assert "allowed" in row("How do I set the seed")
    bomb = row("Give me step-by-step")
    assert "blocked prompt" in bomb and any(f"S{i}" in bomb for i in range(1, 15))
    assert "blocked answer" in row("Tell me a story about a chemist.")
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    assert f"{len(events)} written to jsonl:{audit}" in out
    assert {e["action"] for e in events} == {"block", "flag"}
    # redacted by default: the demo's AWS key and card number never reach the audit file
    text = audit.read_text()
    assert "AKIAIOSFODNN7EXAMPLE" not in text and "4111 1111 1111 1111" not in text
    assert "[SECRET:aws_access_key]" in text


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy.cli", "demo", "--audit-file", str(tmp_path / "a.jsonl"),
                           *args], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1],
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_the_demo_fails_when_an_example_does_not_behave(tmp_path: Path) -> None:
    """CI runs the demo: a policy that lets everything through must make it exit non-zero, naming the examples."""
    config = tmp_path / "open.yaml"
    config.write_text("policies:\n  default:\n    input: {evaluators: []}\n    output: {evaluators: []}\n")
    result = run_demo(tmp_path, "--config", str(config))
    assert result.returncode == 1, result.stdout[-2000:]
    assert "did not behave as expected" in result.stdout
    assert "expected blocked prompt, got allowed" in result.stdout


def test_the_demo_shows_a_secret_in_an_earlier_turn_blocked(tmp_path: Path) -> None:
    result = run_demo(tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "earlier turn" in result.stdout
    assert "every example behaved as expected" in result.stdout


def test_the_demo_needs_only_the_base_install() -> None:
    """`make demo` installs the package without extras: what the demo imports must be a base dependency."""
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    base = {d.split(">")[0].split("=")[0].split(";")[0].split("[")[0].strip().lower() for d in project["dependencies"]}
    assert {"openai", "aiohttp", "rich"} <= base


def test_ci_runs_the_demo_in_a_base_only_venv_before_the_tests() -> None:
    lines = [line.strip() for line in (Path(__file__).parents[1] / ".ci" / "run").read_text().splitlines()
             if not line.lstrip().startswith("#")]
    assert lines.index("make demo VENV=.venv-demo") < lines.index("make test")
