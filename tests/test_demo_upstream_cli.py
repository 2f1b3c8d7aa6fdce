"""`python -m proxy.demo_upstream`: the demo upstream on its own, so the product can be tried with no model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

ROOT = Path(__file__).parents[1]


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "proxy.demo_upstream", "--port", "0", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on http://" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
    return proc, line.split("listening on ", 1)[1].split()[0]


@pytest.fixture
def upstream(request: pytest.FixtureRequest) -> Iterator[openai.OpenAI]:
    proc, url = start(*request.param)
    try:
        yield openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=10)
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def ask(client: openai.OpenAI, prompt: str, stream: bool) -> str:
    messages: list[Any] = [{"role": "user", "content": prompt}]
    if stream:
        chunks = client.chat.completions.create(model="demo-model", messages=messages, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return client.chat.completions.create(model="demo-model", messages=messages).choices[0].message.content or ""


@pytest.mark.parametrize("upstream", [("--reply", "Bonjour from the demo.")], indirect=True)
@pytest.mark.parametrize("stream", [False, True])
def test_a_fixed_reply(upstream: openai.OpenAI, stream: bool) -> None:
    assert ask(upstream, "anything", stream) == "Bonjour from the demo."
    completion = upstream.completions.create(model="demo-model", prompt="anything")
    assert completion.choices[0].text == "Bonjour from the demo."


@pytest.mark.parametrize("upstream", [("--echo",)], indirect=True)
@pytest.mark.parametrize("stream", [False, True])
def test_echo(upstream: openai.OpenAI, stream: bool) -> None:
    assert ask(upstream, "say this back", stream) == "say this back"


REPLIES = {"capital of france": "Paris.", "*": "I only know capitals."}


@pytest.fixture
def replies_file(tmp_path: Path) -> Path:
    path = tmp_path / "replies.yaml"
    path.write_text("# phrase found in the last prompt: the answer\n" + "".join(
        f"{json.dumps(k)}: {json.dumps(v)}\n" for k, v in REPLIES.items()))
    return path


@pytest.mark.parametrize("stream", [False, True])
def test_replies_from_a_file(replies_file: Path, stream: bool) -> None:
    proc, url = start("--replies", str(replies_file))
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=10)
        assert ask(client, "What is the Capital of France?", stream) == "Paris."
        assert ask(client, "And of Peru?", stream) == "I only know capitals."
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_bad_replies_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list, not a mapping\n")
    result = subprocess.run([sys.executable, "-m", "proxy.demo_upstream", "--port", "0", "--replies", str(bad)],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and str(bad) in result.stderr
