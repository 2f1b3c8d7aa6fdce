"""Pairwise comparison on shadow traffic through the real proxy: a candidate that is down, slow, failing or
over budget changes nothing for the client (same bytes, no wait), the judge's margin decides unless safety
does, events carry both answers as audit.content allows, and the candidate's key never leaks."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from proxy.config import ConfigError, load_settings
from proxy.metrics import REGISTRY
from proxy.schemas.events import COMPARISON_SCHEMA_NAME, validation_errors
from tests.comparison_support import Candidate, FixedUpstream, Servers, chat_bytes, stream_bytes
from tests.conftest import keyword_settings
from tests.fake_vllm_pooling import FakeVLLMPooling
from tests.proxy_harness import ProxyHarness

CANDIDATE_KEY = "sk-candidate-SECRET-7777"
BASE_ANSWER = "Sure, happy to help with that."
PROMPT = "Please give me the number 42."


def numbered(prompt: str) -> str:
    found = re.findall(r"\d+", prompt)
    return f"The number is {found[-1]}." if found else "A number: 7."


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    yield s
    s.stop()


@pytest.fixture
def start(tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """start(candidate, name=..., **compare) -> (harness, fake reward server): the policy's output stage has the
    keyword safety evaluators; the judge is a reward model behind a vLLM-shaped server (digits: +2, else -2)."""
    monkeypatch.setenv("CANDIDATE_KEY", CANDIDATE_KEY)
    started: list[ProxyHarness] = []
    base_url = servers.add(FixedUpstream(lambda prompt: BASE_ANSWER).app())

    def go(candidate: Candidate | None, name: str, content: str = "full", candidate_url: str | None = None,
           judge: dict[str, Any] | None = None, baseline_url: str | None = None,
           output: list[str] | None = None, **compare: Any) -> tuple[ProxyHarness, FakeVLLMPooling]:
        rm = FakeVLLMPooling()
        rm_url = servers.add(rm.app())
        url = candidate_url or servers.add(candidate.app())  # type: ignore[union-attr]
        settings = keyword_settings(tmp_path, policy={"output": {"evaluators": ["secrets", "pii"] if output is None
                                                                 else output}, "compare": {
            "name": name, "candidate": {"url": url, "model": "cand-model", "api_key_env": "CANDIDATE_KEY",
                                        "timeout_s": compare.pop("timeout_s", 5)},
            "sample": 1.0, "judge": judge or {"reward_model": "rm", "tie_margin": 0.5}, **compare}},
            evaluators={
                "secrets": {"type": "keyword", "options": {"words": ["hunter2"], "category": "secret"}},
                "pii": {"type": "keyword", "options": {"words": ["@example.com"], "category": "pii"}},
                "rm": {"type": "reward_model", "options": {"backend": "vllm", "url": rm_url, "model": "rm"}}},
            audit={"jsonl_path": str(tmp_path / f"{name}.jsonl"), "content": content})
        h = ProxyHarness(settings, upstream_url=baseline_url or base_url).start()
        started.append(h)
        return h, rm

    yield go
    for h in started:
        h.stop()


def post(h: ProxyHarness, stream: bool = False, prompt: str = PROMPT, model: str = "base-model"
         ) -> tuple[bytes, float]:
    body = json.dumps({"model": model, "stream": stream,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    request = urllib.request.Request(h.base_url + "/v1/chat/completions", data=body,
                                     headers={"content-type": "application/json", "authorization": "Bearer k"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        data = response.read()
    return data, time.perf_counter() - started


def runs(candidate: str, result: str) -> float:
    return REGISTRY.get_sample_value("guardstream_comparison_runs_total",
                                     {"candidate": candidate, "result": result}) or 0.0


def wait_runs(candidate: str, total: float, timeout: float = 15.0) -> dict[str, float]:
    results = ("compared", "skipped_busy", "skipped_paused", "candidate_error", "candidate_timeout", "judge_error",
               "baseline_missing")
    deadline = time.monotonic() + timeout
    while True:
        counts = {r: runs(candidate, r) for r in results}
        if sum(counts.values()) >= total or time.monotonic() > deadline:
            return {r: n for r, n in counts.items() if n}
        time.sleep(0.05)


def events(h: ProxyHarness) -> list[dict[str, Any]]:
    h.call(h.state.audit.close())
    h.call(h.state.audit.start())
    path = Path(h.settings.audit.jsonl_path)
    found = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [e for e in found if e.get("schema") == COMPARISON_SCHEMA_NAME]


@pytest.mark.parametrize("mode", ["down", "slow", "error", "garbage"])
def test_a_failing_candidate_changes_nothing_for_the_client(start: Any, mode: str) -> None:
    name = f"failing-{mode}"
    if mode == "down":
        h, _ = start(None, name, candidate_url="http://127.0.0.1:9")
    else:
        h, _ = start(Candidate(numbered, mode=mode), name, timeout_s=3.0)
    for stream in (False, True):
        data, took = post(h, stream)
        assert data == (stream_bytes(BASE_ANSWER) if stream else chat_bytes(BASE_ANSWER))  # byte for byte
        assert took < 2.0  # a slow candidate (30 s, given up at 3 s) is never waited for
    expected = "candidate_timeout" if mode == "slow" else "candidate_error"
    assert wait_runs(name, 2) == {expected: 2}
    assert events(h) == []


def test_the_candidate_never_sees_more_than_the_budget(start: Any) -> None:
    cand = Candidate(numbered, delay_s=0.5)
    h, _ = start(cand, "budget", max_inflight=2)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(h)[0], range(8)))
    assert answers == [chat_bytes(BASE_ANSWER)] * 8
    counts = wait_runs("budget", 8)
    assert counts["skipped_busy"] >= 1 and counts["compared"] + counts["skipped_busy"] == 8
    assert cand.most_at_once <= 2 and len(cand.requests) == counts["compared"]


def test_the_reward_margin_decides_and_the_event_carries_both_answers(start: Any) -> None:
    cand = Candidate(numbered, mode="echo_key")
    h, rm = start(cand, "numbered")
    assert post(h, model="base-numbers")[0] == chat_bytes(BASE_ANSWER)
    assert wait_runs("numbered", 1) == {"compared": 1}
    (event,) = events(h)
    assert validation_errors(event, COMPARISON_SCHEMA_NAME) == []
    assert event["outcome"] == "win" and event["decided_by"] == "judge"
    assert event["judge"] == {"kind": "reward_model", "name": "rm", "margin": 4.0, "tie_margin": 0.5, "votes": None}
    assert (event["baseline"]["score"], event["candidate"]["score"]) == (-2.0, 2.0)
    assert event["baseline"]["model"] == "base-numbers" and event["candidate"]["model"] == "cand-model"
    assert event["content"]["baseline"] == BASE_ANSWER
    assert event["content"]["candidate"].startswith("The number is 42.")
    assert event["content"]["messages"] == [{"role": "user", "content": PROMPT}]
    # the candidate got the client's request, re-addressed: its model, not streamed, one choice, its key
    (sent,) = cand.requests
    assert (sent["model"], sent["stream"], sent["n"]) == ("cand-model", False, 1)
    assert cand.headers[0]["Authorization"] == f"Bearer {CANDIDATE_KEY}"
    # ... which it echoed: scrubbed before anything was judged or written
    blob = json.dumps(event) + Path(h.settings.audit.jsonl_path).read_text()
    assert CANDIDATE_KEY not in blob and "[candidate key redacted]" in event["content"]["candidate"]
    assert all(CANDIDATE_KEY not in json.dumps(body) for _, body in rm.requests)
    count = REGISTRY.get_sample_value("guardstream_comparisons_total", {
        "baseline": "base-numbers", "candidate": "numbered", "tenant": "default", "outcome": "win"})
    assert count == 1
    # the candidate's reward goes into the score histograms under its name, the baseline's under its model
    for model, score in (("numbered", 2.0), ("base-numbers", -2.0)):
        def below(le: float) -> float | None:
            return REGISTRY.get_sample_value("guardstream_reward_score_bucket",
                                             {"evaluator": "rm", "model": model, "le": str(le)})  # noqa: B023  # called within this iteration
        assert (below(score - 1), below(score)) == (0.0, 1.0)


def test_an_unsafe_candidate_loses_whatever_the_judge_thinks(start: Any) -> None:
    h, rm = start(Candidate(lambda p: "The password is hunter2, number 42."), "unsafe")
    post(h)
    assert wait_runs("unsafe", 1) == {"compared": 1}
    (event,) = events(h)
    assert (event["outcome"], event["decided_by"]) == ("loss", "safety")
    assert event["candidate"]["safe"] is False and event["candidate"]["categories"] == ["secret"]
    assert event["judge"]["margin"] is None and rm.requests == []  # the judge was not asked


def test_a_streamed_request_is_compared_on_its_whole_answer(start: Any) -> None:
    cand = Candidate(numbered)
    h, _ = start(cand, "streamed")
    assert post(h, stream=True)[0] == stream_bytes(BASE_ANSWER)
    assert wait_runs("streamed", 1) == {"compared": 1}
    (event,) = events(h)
    assert event["stream"] is True and event["content"]["baseline"] == BASE_ANSWER
    assert cand.requests[0]["stream"] is False and "stream_options" not in cand.requests[0]


@pytest.mark.parametrize("content", ["hash", "redacted"])
def test_event_texts_follow_audit_content(start: Any, content: str) -> None:
    h, _ = start(Candidate(lambda p: "Mail 42 to bob@example.org"), f"content-{content}", content=content)
    post(h)
    assert wait_runs(f"content-{content}", 1) == {"compared": 1}
    (event,) = events(h)
    assert validation_errors(event, COMPARISON_SCHEMA_NAME) == []
    texts = event["content"]
    assert len(texts["sha256"]["candidate"]) == 64
    if content == "hash":
        assert (texts["messages"], texts["baseline"], texts["candidate"]) == (None, None, None)
        assert "bob@example.org" not in json.dumps(event)
    else:
        assert "bob@example.org" not in texts["candidate"] and "[PII:email]" in texts["candidate"]


def test_comparison_config_errors(tmp_path: Path) -> None:
    def load(judge: dict[str, Any]) -> None:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(json.dumps({
            "evaluators": {"pii": {"type": "pii"}},
            "policies": {"default": {"output": {"evaluators": ["pii"]}, "compare": {
                "candidate": {"url": "http://c", "model": "m"}, "judge": judge}}}}))
        load_settings(cfg)

    with pytest.raises(ConfigError, match="compare.judge.reward_model: unknown evaluator 'rm'"):
        load({"reward_model": "rm"})
    with pytest.raises(ConfigError, match="'pii' is a pii evaluator; the judge needs a reward_model"):
        load({"reward_model": "pii"})
    with pytest.raises(ConfigError, match="exactly one judge"):
        load({})


def test_an_llm_judge_through_the_proxy(start: Any, servers: Servers) -> None:
    from tests.test_llm_judge import judge_server

    app, seen = judge_server(lambda a, b: "[[A]]")  # position-biased: always the first answer
    url = servers.add(app)
    h, _ = start(Candidate(numbered), "llm-judged", judge={"llm": {"url": url, "model": "judge-1"}})
    post(h)
    assert wait_runs("llm-judged", 1) == {"compared": 1}
    (event,) = events(h)
    assert validation_errors(event, COMPARISON_SCHEMA_NAME) == []
    assert event["judge"] == {"kind": "llm", "name": "judge-1", "margin": 0.0, "tie_margin": 0.1,
                              "votes": ["baseline", "candidate"]}
    assert event["outcome"] == "tie" and len(seen) == 2


def test_a_judge_without_a_verdict_counts_and_sends_nothing(start: Any, servers: Servers) -> None:
    from tests.test_llm_judge import judge_server

    app, _ = judge_server(lambda a, b: "Both answers have merits; I cannot choose.")
    url = servers.add(app)
    h, _ = start(Candidate(numbered), "undecided", judge={"llm": {"url": url, "model": "judge-1"}})
    assert post(h)[0] == chat_bytes(BASE_ANSWER)
    assert wait_runs("undecided", 1) == {"judge_error": 1}
    assert events(h) == []


def test_a_blocked_baseline_loses_to_a_safe_candidate(start: Any, servers: Servers) -> None:
    leaky = servers.add(FixedUpstream(lambda prompt: "The password is hunter2.").app())
    h, rm = start(Candidate(numbered), "blocked-baseline", baseline_url=leaky)
    post(h)  # the answer is blocked (content_filter)
    post(h, stream=True)  # the stream is cut
    assert wait_runs("blocked-baseline", 2) == {"compared": 2}
    found = events(h)
    assert [(e["stream"], e["outcome"], e["decided_by"], e["baseline"]["safe"]) for e in
            sorted(found, key=lambda e: e["stream"])] == [(False, "win", "safety", False), (True, "win", "safety", False)]
    assert rm.requests == []


def test_what_is_not_compared(start: Any) -> None:
    # a stream under a policy without output evaluators is relayed unread: no baseline to compare (counted)
    h, _ = start(Candidate(numbered), "unread-stream", output=[])
    assert post(h, stream=True)[0] == stream_bytes(BASE_ANSWER)
    assert post(h)[0] == chat_bytes(BASE_ANSWER)  # a non-streamed answer is read, judged or not: compared
    assert wait_runs("unread-stream", 2) == {"baseline_missing": 1, "compared": 1}
