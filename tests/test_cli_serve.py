"""The CLI contract: `guardstream serve` as a real process, its start-up message, logs and shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from proxy.demo_upstream import DemoUpstream
from tests.services import free_port, wait_for_port

CONFIG = """
evaluators:
  secrets: {type: "tests.keyword_evaluator:create", on_error: fail_closed,
            options: {words: [hunter2], category: secret}}
policies:
  default:
    input: {evaluators: [secrets]}
    output: {evaluators: [secrets]}
    actions: {secret: block, default: block}
audit:
  jsonl_path: AUDIT
"""


@pytest.fixture
def upstream_url():  # type: ignore[no-untyped-def]
    """A demo upstream running in a background loop (the harness without a proxy)."""
    import asyncio
    import threading

    upstream = DemoUpstream()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, url = asyncio.run_coroutine_threadsafe(upstream.start(), loop).result(10)
    yield url, upstream
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)


def start_serve(tmp_path: Path, upstream: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    config = tmp_path / "guardstream.yaml"
    config.write_text(CONFIG.replace("AUDIT", str(tmp_path / "audit.jsonl")))
    env = {**os.environ, "MY_UPSTREAM_KEY": "sk-upstream-abc123", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--upstream",
         upstream, "--config", str(config), "--upstream-key-env", "MY_UPSTREAM_KEY", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_port(port, timeout=20)
    return proc, port


def test_serve_runs_logs_without_content_and_stops_on_sigterm(tmp_path: Path, upstream_url) -> None:  # type: ignore[no-untyped-def]
    url, upstream = upstream_url
    proc, port = start_serve(tmp_path, url)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="client", max_retries=0)
        marker = "purple-elephant-7731"
        resp = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": f"tell me about {marker}"}])
        assert resp.headers["x-request-id"]
        assert resp.parse().choices[0].finish_reason == "stop"
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"{marker} hunter2"}])
        assert upstream.requests[-1]["headers"]["Authorization"] == "Bearer sk-upstream-abc123"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "built-in default policy" not in err and "in memory (no Redis configured)" in err
    assert "JSONL file" in err
    assert marker not in err and marker not in out  # no prompt text in logs
    assert "sk-upstream-abc123" not in err and "sk-upstream-abc123" not in out  # never the upstream key
    log_lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    request_lines = [line for line in log_lines if line.get("event") == "request"]
    assert len(request_lines) == 2 and all(line.get("request_id") for line in request_lines)
    events = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [e["action"] for e in events] == ["block"]  # flushed at shutdown


def test_bad_config_is_reported_with_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("policies:\n  default:\n    mode: sometimes\nserver:\n  prot: 1\n")
    result = subprocess.run([sys.executable, "-m", "proxy.cli", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "policies.default.mode" in result.stderr and "server.prot" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_evaluator_reference_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("policies:\n  default:\n    input: {evaluators: [nope]}\n")
    result = subprocess.run([sys.executable, "-m", "proxy.cli", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "unknown evaluator 'nope'" in result.stderr


def test_env_overrides(tmp_path: Path) -> None:
    from proxy.config import load_settings

    settings = load_settings(None, env={"GUARDSTREAM__POLICIES__DEFAULT__MODE": "shadow",
                                        "GUARDSTREAM__SERVER__PORT": "9999"})
    assert settings.policies["default"].mode == "shadow" and settings.server.port == 9999


def test_sigterm_lets_in_flight_streams_finish(tmp_path: Path, upstream_url) -> None:  # type: ignore[no-untyped-def]
    url, upstream = upstream_url
    upstream.answer = lambda body: "tick " * 40
    upstream.chunk_delay_s = 0.03  # ~1.2 s of streaming
    proc, port = start_serve(tmp_path, url)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="client", max_retries=0)
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "go"}], stream=True)
        it = iter(stream)
        text = next(it).choices[0].delta.content or ""
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises(openai.APIConnectionError):  # no new connections once shutting down
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="c", max_retries=0).models.list()
        finishes = []
        for chunk in it:
            for c in chunk.choices:
                text += c.delta.content or ""
                if c.finish_reason:
                    finishes.append(c.finish_reason)
        assert text == "tick " * 40 and finishes == ["stop"]
    finally:
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
