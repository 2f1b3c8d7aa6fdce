"""`logging.log_content`: prompt and answer text reach the logs only when it is set (through the environment
override here, as an operator would); a decision is logged either way, without the text by default."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.services import free_port, wait_for_port

ROOT = Path(__file__).parents[1]
MARKER = "purple-elephant-7731"
EMAIL = "jane.doe@example.org"


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "proxy.demo_upstream", "--port", "0", "--reply",
                             f"Write to {EMAIL} about {MARKER}-answer."], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    yield proc.stdout.readline().split("listening on ", 1)[1].split()[0]
    proc.terminate()
    proc.wait(10)


def serve_and_ask(tmp_path: Path, upstream: str, log_content: str | None) -> list[dict]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GUARDSTREAM__AUDIT__JSONL_PATH": str(tmp_path / "audit.jsonl")}
    if log_content is not None:
        env["GUARDSTREAM__LOGGING__LOG_CONTENT"] = log_content
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve", "--port", str(port), "--upstream", upstream],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, timeout=20)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"card 4111 1111 1111 1111 "
                                                                                        f"{MARKER}-prompt"}])
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    return [json.loads(line) for line in (out + err).splitlines() if line.startswith("{")]


def decisions(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line.get("event") == "guard_decision"]


def test_content_stays_out_of_the_logs_by_default(tmp_path: Path, upstream: str) -> None:
    lines = serve_and_ask(tmp_path, upstream, None)
    assert MARKER not in json.dumps(lines) and EMAIL not in json.dumps(lines)
    logged = decisions(lines)
    assert {(d["stage"], d["action"]) for d in logged} == {("input", "flag"), ("output", "flag")}
    assert all("content" not in d for d in logged)


def test_log_content_puts_the_text_in_the_decision_lines(tmp_path: Path, upstream: str) -> None:
    logged = decisions(serve_and_ask(tmp_path, upstream, "true"))
    by_stage = {d["stage"]: d for d in logged}
    assert f"{MARKER}-prompt" in json.dumps(by_stage["input"]["content"])
    assert f"{MARKER}-answer" in by_stage["output"]["content"]["completion"]
    assert by_stage["output"]["categories"] == ["pii"] and by_stage["input"]["request_id"]
