"""The proxy with a data-quality output evaluator: a bad record in an answer is blocked or flagged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from proxy.demo_upstream import DemoUpstream, last_prompt
from proxy.schemas.events import validation_errors
from tests.conftest import keyword_settings
from tests.dq_series import rules_yaml, series
from tests.proxy_harness import ProxyHarness

CLEAN = list(series(6, faults=False))
BAD = [dict(r) for r in CLEAN]
BAD[2]["battery"] = 180.0  # out of range
BAD[4]["min_temp"] = 30.0  # min_temp above max_temp


def fenced(records: list[dict]) -> str:
    return "Here are the readings:\n\n```json\n" + json.dumps(records, indent=1) + "\n```\n"


def answer(body: dict) -> str:
    return fenced(BAD if "bad" in last_prompt(body) else CLEAN)


def start(tmp_path: Path, action: str) -> ProxyHarness:
    rules = tmp_path / "telemetry.yaml"
    rules.write_text(rules_yaml())
    settings = keyword_settings(
        tmp_path,
        policy={"input": {"evaluators": []}, "output": {"evaluators": ["dq"]},
                "actions": {"quality": action, "default": "block"}},
        evaluators={"dq": {"type": "data_quality", "on_error": "fail_closed", "options": {"rules": str(rules)}}},
    )
    return ProxyHarness(settings, DemoUpstream(answer=answer)).start()


@pytest.fixture
def blocking(tmp_path: Path) -> Iterator[ProxyHarness]:
    h = start(tmp_path, "block")
    yield h
    h.stop()


def client(h: ProxyHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.base_url + "/v1", api_key="client-key", max_retries=0)


def audit_events(h: ProxyHarness) -> list[dict]:
    h.call(h.state.audit.close())  # flush
    h.call(h.state.audit.start())
    path = Path(h.settings.audit.jsonl_path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def ask(h: ProxyHarness, prompt: str, **kw):  # type: ignore[no-untyped-def]
    return client(h).chat.completions.create(model="demo-model", messages=[{"role": "user", "content": prompt}],
                                             **kw)


def test_clean_records_pass_and_a_bad_record_is_blocked(blocking: ProxyHarness) -> None:
    ok = ask(blocking, "telemetry please").choices[0]
    assert ok.finish_reason == "stop" and ok.message.content == fenced(CLEAN)

    blocked = ask(blocking, "bad telemetry please").choices[0]
    assert blocked.finish_reason == "content_filter"
    assert blocked.message.content == "I can't help with that."
    assert blocked.model_extra["guardrail"] == {"stage": "output", "categories": ["quality"], "evaluators": ["dq"]}

    (event,) = audit_events(blocking)
    assert validation_errors(event) == []
    assert (event["stage"], event["action"], event["categories"]) == ("output", "block", ["quality"])
    assert [(v["evaluator"], v["safe"], v["score"]) for v in event["verdicts"]] == [("dq", False, 1.0)]
    # reviewers see which rule failed on which record and field
    kinds = [f["kind"] for f in event["verdicts"][0]["findings"]]
    assert kinds and all(k.count(":") == 1 and "@" in k for k in kinds)


def test_streamed_bad_record_ends_with_content_filter(blocking: ProxyHarness) -> None:
    chunks = list(ask(blocking, "bad telemetry, streamed", stream=True))
    finishes = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finishes == ["content_filter"]
    clean = list(ask(blocking, "telemetry, streamed", stream=True))
    assert "".join(c.delta.content or "" for chunk in clean for c in chunk.choices) == fenced(CLEAN)
    assert [c.finish_reason for chunk in clean for c in chunk.choices if c.finish_reason] == ["stop"]


def test_flag_policy_delivers_the_answer_and_audits(tmp_path: Path) -> None:
    h = start(tmp_path, "flag")
    try:
        choice = ask(h, "bad telemetry please").choices[0]
        assert choice.finish_reason == "stop" and choice.message.content == fenced(BAD)
        (event,) = audit_events(h)
        assert (event["action"], event["categories"]) == ("flag", ["quality"])
        assert event["content"]["completion"] == fenced(BAD)
    finally:
        h.stop()
