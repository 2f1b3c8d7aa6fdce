"""Shadow evaluators through the real proxy: a candidate judged beside the live evaluators never changes a
response (nor waits it: raising, hanging, 10x slower), records agreement per category in metrics and in a
tally on the audit topic, and sends disagreements to the review queue as audit events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from evaluators.base import EvalItem
from proxy.config import ConfigError, load_settings
from proxy.demo_upstream import DemoUpstream
from proxy.metrics import REGISTRY
from proxy.schemas.events import TALLY_SCHEMA_NAME, validation_errors
from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness

ANSWER = "A harmless demo answer."
LIVE = {
    "secrets": {"type": "keyword", "on_error": "fail_closed",
                "options": {"words": ["hunter2"], "category": "secret"}},
    "pii": {"type": "keyword", "options": {"words": ["@example.com"], "category": "pii"}},
}


def candidate(words: list[str], category: str = "secret", **kw: Any) -> dict[str, Any]:
    options = {"words": words, "category": category, **kw.pop("options", {})}
    return {"type": "keyword", "options": options, **kw}


def shadow_settings(tmp_path: Path, candidates: dict[str, dict[str, Any]], pairs: Any, **sections: Any) -> Any:
    return keyword_settings(tmp_path, evaluators={**LIVE, **candidates},
                            policy={"input": {"evaluators": ["secrets", "pii"], "shadow": pairs},
                                    "output": {"evaluators": ["secrets", "pii"]}}, **sections)


@pytest.fixture
def proxy_with(tmp_path: Path) -> Iterator[Any]:
    started: list[ProxyHarness] = []

    def start(candidates: dict[str, dict[str, Any]], pairs: Any, **sections: Any) -> ProxyHarness:
        h = ProxyHarness(shadow_settings(tmp_path, candidates, pairs, **sections), demo()).start()
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


def demo() -> DemoUpstream:
    return DemoUpstream(answer=lambda body: ANSWER)


def client(h: ProxyHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)


def ask(h: ProxyHarness, text: str) -> tuple[int, str]:
    try:
        resp = client(h).chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
        return 200, resp.choices[0].message.content or ""
    except openai.BadRequestError as exc:
        return 400, str(exc.body)


def lines(h: ProxyHarness, wait_for: int = 0, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Audit lines written so far (after a flush), waiting for at least `wait_for` of them."""
    path = Path(h.settings.audit.jsonl_path)
    deadline = time.monotonic() + timeout
    while True:
        h.call(h.state.audit.close())
        h.call(h.state.audit.start())
        found = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        if len(found) >= wait_for or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def comparisons(shadow: str, live: str, category: str, outcome: str, stage: str = "input") -> float:
    return REGISTRY.get_sample_value("guardstream_shadow_comparisons_total", {
        "stage": stage, "shadow": shadow, "live": live, "category": category, "outcome": outcome}) or 0.0


def runs(shadow: str, result: str, stage: str = "input") -> float:
    return REGISTRY.get_sample_value("guardstream_shadow_runs_total",
                                     {"stage": stage, "shadow": shadow, "result": result}) or 0.0


def test_a_shadow_never_changes_a_response_and_its_disagreements_are_audited(proxy_with: Any) -> None:
    # the candidate misses "hunter2" and blocks "hello": the live decisions stand; both disagreements audited
    h = proxy_with({"cand_a": candidate(["hello"])}, {"cand_a": "secrets"})
    assert ask(h, "hello there") == (200, ANSWER)
    assert ask(h, "my password is hunter2")[0] == 400
    assert ask(h, "nothing special")[0] == 200  # agreement on an allowed item: no event

    events = [e for e in lines(h, wait_for=2) if e.get("schema") != TALLY_SCHEMA_NAME]
    assert all(validation_errors(e) == [] for e in events)
    by_text = {e["content"]["messages"][-1]["content"]: e for e in events if e["stage"] == "input"}
    assert set(by_text) == {"hello there", "my password is hunter2"}
    hello, blocked = by_text["hello there"], by_text["my password is hunter2"]
    assert hello["action"] == "allow" and hello["categories"] == []  # the live decision, as served
    assert hello["shadow"]["disagreement"] is True and hello["shadow"]["categories"] == ["any", "secret"]
    (sv,) = hello["shadow"]["verdicts"]
    assert (sv["evaluator"], sv["safe"], sv["compared_with"], sv["differs"]) == ("cand_a", False, "secrets",
                                                                                  ["any", "secret"])
    assert blocked["action"] == "block" and blocked["shadow"]["verdicts"][0]["safe"] is True
    assert comparisons("cand_a", "secrets", "any", "shadow_only") == 1
    assert comparisons("cand_a", "secrets", "any", "live_only") == 1
    assert comparisons("cand_a", "secrets", "any", "neither") == 1
    assert comparisons("cand_a", "secrets", "secret", "live_only") == 1
    assert runs("cand_a", "compared") == 3

    tally = h.call(_flush_tally(h))
    assert tally is not None and validation_errors(tally, TALLY_SCHEMA_NAME) == []
    counted = {(c["live"], c["category"], c["outcome"]): c["n"] for c in tally["counts"]}
    assert counted == {("secrets", "any", "shadow_only"): 1, ("secrets", "any", "live_only"): 1,
                       ("secrets", "any", "neither"): 1, ("secrets", "secret", "shadow_only"): 1,
                       ("secrets", "secret", "live_only"): 1}
    assert h.call(_flush_tally(h)) is None  # counts go out once


async def _flush_tally(h: ProxyHarness) -> dict[str, Any] | None:
    return h.state.guard.shadows.flush_tally()


def test_compared_with_the_decision_uses_the_policys_actions(proxy_with: Any) -> None:
    # a list compares with the stage's decision; the candidate's pii flags count (pii: flag), "ignored" does not
    h = proxy_with({"cand_d": candidate(["@example.com"], "pii"), "cand_i": candidate(["hello"], "ignored")},
                   ["cand_d", "cand_i"], )
    h.settings.policies["default"].actions["ignored"] = "allow"
    assert ask(h, "hello mail bob@example.com")[0] == 200
    events = [e for e in lines(h, wait_for=1) if e.get("schema") != TALLY_SCHEMA_NAME and e["stage"] == "input"]
    (event,) = events
    assert event["action"] == "flag" and event["shadow"]["disagreement"] is True
    differs = {v["evaluator"]: v["differs"] for v in event["shadow"]["verdicts"]}
    assert differs == {"cand_d": [], "cand_i": ["any", "pii"]}  # cand_i's only flag is one the policy allows
    assert comparisons("cand_d", "decision", "pii", "both") == 1
    assert comparisons("cand_i", "decision", "any", "live_only") == 1


@pytest.mark.parametrize("kind", ["raise", "hang", "slow"])
def test_a_failing_hanging_or_slow_shadow_changes_nothing_and_waits_nothing(proxy_with: Any, kind: str) -> None:
    name = f"cand_{kind}"
    spec = {"raise": candidate(["x"], options={"fail": "raise"}),
            "hang": candidate(["x"], timeout_ms=400, options={"delay_ms": 600_000}),
            "slow": candidate(["x"], timeout_ms=5000, options={"delay_ms": 2500})}[kind]
    h = proxy_with({name: spec}, {name: "secrets"})
    started = time.perf_counter()
    assert ask(h, "hello there") == (200, ANSWER)
    status, _ = ask(h, "hunter2")
    elapsed = time.perf_counter() - started
    assert status == 400
    assert elapsed < 2.0  # two requests; a hang or a 2.5 s shadow would take longer if anything waited for it

    # the blocked request's event still comes (once the shadow ended), carrying the shadow's outcome
    blocked = [e for e in lines(h, wait_for=1) if e.get("action") == "block"]
    assert len(blocked) == 1
    (sv,) = blocked[0]["shadow"]["verdicts"]
    assert sv["compared"] is (kind == "slow")
    result = {"raise": "error", "hang": "timeout", "slow": "compared"}[kind]
    assert runs(name, result) == 2


def test_a_busy_proxy_skips_shadowing_instead_of_queueing(proxy_with: Any) -> None:
    h = proxy_with({"cand_busy": candidate(["x"], timeout_ms=5000, options={"delay_ms": 1000})},
                   {"cand_busy": "secrets"}, shadow={"max_inflight": 2})

    async def burst() -> list[str]:
        aclient = openai.AsyncOpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
        answers = await asyncio.gather(*(aclient.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(6)))
        await aclient.close()
        return [a.choices[0].message.content or "" for a in answers]

    assert asyncio.run(burst()) == [ANSWER] * 6
    assert runs("cand_busy", "skipped_busy") == 4
    assert h.state.guard.shadows.inflight <= 2


def test_a_candidate_failing_in_a_row_is_paused_then_tried_again(proxy_with: Any) -> None:
    h = proxy_with({"cand_broken": candidate(["x"], options={"fail": "raise"})}, {"cand_broken": "secrets"},
                   shadow={"pause_after_failures": 2, "pause_s": 60})
    for i in range(5):
        assert ask(h, f"q{i}") == (200, ANSWER)
        time.sleep(0.05)  # each shadow run ends before the next request
    assert (runs("cand_broken", "error"), runs("cand_broken", "skipped_paused")) == (2, 3)
    h.state.guard.shadows._paused_until["cand_broken"] = 0.0  # the pause is over: the next item tries it
    assert ask(h, "again") == (200, ANSWER)
    time.sleep(0.05)
    assert runs("cand_broken", "error") == 3  # and one more failure pauses it again at once
    assert h.state.guard.shadows._paused_until["cand_broken"] > time.monotonic()


def test_shutdown_keeps_the_live_event_of_a_shadow_still_running(tmp_path: Path) -> None:
    settings = shadow_settings(tmp_path, {"cand_stop": candidate(["x"], timeout_ms=600_000,
                                                                 options={"delay_ms": 600_000})},
                               {"cand_stop": "secrets"}, shadow={"drain_s": 0.2})
    h = ProxyHarness(settings, demo()).start()
    try:
        assert ask(h, "hunter2")[0] == 400
    finally:
        h.stop()
    events = [json.loads(x) for x in Path(settings.audit.jsonl_path).read_text().splitlines()]
    blocked = [e for e in events if e.get("action") == "block"]
    assert len(blocked) == 1 and "shadow" not in blocked[0]  # cancelled shadow: the event goes out without it
    assert [e["schema"] for e in events if e.get("schema") == TALLY_SCHEMA_NAME] == []  # nothing compared


def test_streamed_answers_are_shadowed_per_window_without_changing_them(tmp_path: Path) -> None:
    settings = keyword_settings(tmp_path, evaluators={**LIVE, "cand_out": candidate(["demo"], "pii")},
                                policy={"output": {"evaluators": ["secrets", "pii"], "shadow": {"cand_out": "pii"}}})
    h = ProxyHarness(settings, demo()).start()
    try:
        stream = client(h).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                   stream=True)
        text = "".join(c.delta.content or "" for chunk in stream for c in chunk.choices)
        assert text == ANSWER
        events = [e for e in lines(h, wait_for=1) if e.get("stage") == "output"]
        assert events and all(e["action"] == "allow" and e["shadow"]["disagreement"] for e in events)
        assert events[-1]["content"]["completion"] == text
    finally:
        h.stop()


def test_the_shadow_does_not_change_the_live_cache_keys(tmp_path: Path) -> None:
    plain = keyword_settings(tmp_path, evaluators={**LIVE, "cand": candidate(["x"])})
    shadowed = shadow_settings(tmp_path, {"cand": candidate(["x"])}, {"cand": "secrets"})
    assert plain.policy_hash("default") == shadowed.policy_hash("default")


@pytest.mark.parametrize("shadow, message", [
    ({"nope": None}, "policies.default.input.shadow: unknown evaluator 'nope'"),
    ({"secrets": None}, "policies.default.input.shadow: 'secrets' is live in this stage"),
    ({"cand": "pii_typo"}, "policies.default.input.shadow.cand: 'pii_typo' is not a live evaluator of this stage"),
])
def test_a_bad_shadow_is_one_line_naming_the_key(tmp_path: Path, shadow: Any, message: str) -> None:
    import yaml

    config = tmp_path / "shadow.yaml"
    config.write_text(yaml.safe_dump({
        "evaluators": {"secrets": {"type": "secrets"}, "pii": {"type": "pii"}, "cand": {"type": "secrets"}},
        "policies": {"default": {"input": {"evaluators": ["secrets", "pii"], "shadow": shadow}}}}))
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert message in str(err.value) and "Traceback" not in str(err.value)


async def test_shadow_comparison_outcomes_per_category() -> None:
    from proxy.shadow import compare

    assert compare({"S1", "S2"}, {"S1"}) == {"any": "both", "S1": "both", "S2": "shadow_only"}
    assert compare(set(), {"pii"}) == {"any": "live_only", "pii": "live_only"}
    assert compare(set(), set()) == {"any": "neither"}
    assert EvalItem.of_text("x").stage == "input"
