"""One Hyperscan pass for a whole guard stage (`StageTriggers`): the guard's verdicts are the ones the engines
give when each is called, on texts built from the pieces their patterns are made of."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from evaluators.base import EvalItem, Turn
from evaluators.rules._prefilter import StageTriggers
from evaluators.rules.injection import InjectionEvaluator
from evaluators.rules.pii import PiiEvaluator
from evaluators.rules.secrets import SecretsEvaluator
from evaluators.rules.unicode import UnicodeEvaluator
from proxy.cache import MemoryVerdictCache
from proxy.config import Settings
from proxy.guard import Guard
from tests.test_rules_prefilter import FRAGMENTS

ENGINES = {"secrets": SecretsEvaluator("secrets"), "pii": PiiEvaluator("pii"),
           "injection": InjectionEvaluator("injection"), "unicode": UnicodeEvaluator("unicode")}
TEXTS = st.lists(st.one_of(st.sampled_from(FRAGMENTS + ["\x00", "\x7f", "\u200b", "é"]),
                           st.text(alphabet=st.characters(max_codepoint=127), max_size=8)), max_size=14)


def _guard() -> Guard:
    settings = Settings.model_validate({
        "evaluators": {name: {"type": name, "cache": False} for name in ENGINES},
        "policies": {"default": {"input": {"evaluators": list(ENGINES)},
                                 "actions": {"secret": "block", "default": "flag"}}}})
    return Guard(settings, ENGINES, MemoryVerdictCache())


GUARD = _guard()
OWN = [ENGINES[name].quiet_triggers() for name in ENGINES]
SHARED = StageTriggers([t for t, _ in OWN])  # compiled once: Hyperscan compiles take a while


def _shape(verdict: Any) -> tuple[Any, ...]:
    return (verdict.evaluator, verdict.version, verdict.safe, verdict.categories, verdict.score, verdict.error,
            [(f.category, f.kind, f.start, f.end) for f in verdict.findings])


@settings(max_examples=400, deadline=None)
@given(TEXTS)
def test_quiet_engines_are_those_whose_own_triggers_are_absent(parts: list[str]) -> None:
    text = "".join(parts)
    quiet = SHARED.quiet(text)
    if not text.isascii():
        assert quiet is None
        return
    assert quiet == [t.present(text) is False for t, _ in OWN]


@settings(max_examples=300, deadline=None)
@given(TEXTS)
async def test_stage_verdicts_match_each_engine_judging(parts: list[str]) -> None:
    text = "".join(parts)
    decision = await GUARD.check(GUARD.policy("default"), EvalItem((Turn("user", text),), "input"))
    assert [_shape(v) for v in decision.verdicts] == [_shape(ENGINES[name].judge(text)) for name in ENGINES]


def test_the_default_policy_stages_share_one_pass() -> None:
    stage = GUARD.policy("default").inline["input"]
    assert stage.triggers is not None and [j.name for j in stage.judges] == list(ENGINES)


async def test_a_quiet_stage_times_every_judge_once() -> None:
    """A text none of the stage's triggers occurs in is decided without calling the engines; each judge's
    latency histogram still gets one observation, as when the engines are called."""
    policy = GUARD.policy("default")
    stage = policy.inline["input"]
    before = [sum(j.histogram._pending) for j in stage.judges]
    decision = await GUARD.check(policy, EvalItem((Turn("user", "What is the capital of France?"),), "input"))
    assert decision.action == "allow" and all(v.safe for v in decision.verdicts)
    assert [sum(j.histogram._pending) - b for j, b in zip(stage.judges, before)] == [1] * len(stage.judges)
