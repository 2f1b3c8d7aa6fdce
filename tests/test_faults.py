"""Faults under load, fast version (a couple of seconds each; the long run is `python -m bench.faults`):
steady mixed traffic from a fail_open and a fail_closed tenant while Redis, the Kafka broker, the evaluators
or the upstream fail and recover. Every request gets an answer or an OpenAI-shaped error (never a 500, a
dropped connection or an unterminated stream), each policy behaves as configured, and every audit event the
proxy produced is on the topic after recovery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from bench.faults import SCENARIOS, Rig, run_scenario

PHASE_S = 0.8
NORMAL = {"ok", "blocked"}
EXPECTED_DURING_FAULT = {
    "redis_killed": NORMAL,
    "kafka_killed": NORMAL,
    "kafka_hung": NORMAL,
    "evaluator_slow": NORMAL | {"blocked_evaluator_error"},
    "evaluator_failing": NORMAL | {"blocked_evaluator_error"},
    "upstream_slow": NORMAL,
    "upstream_stalled": NORMAL | {"upstream_timeout"},
    "upstream_5xx": NORMAL | {"upstream_503"},
    "upstream_cuts": NORMAL | {"stream_interrupted", "upstream_unreachable"},
}
MUST_SEE = {
    "evaluator_slow": {"blocked_evaluator_error"}, "evaluator_failing": {"blocked_evaluator_error"},
    "upstream_stalled": {"upstream_timeout"}, "upstream_5xx": {"upstream_503"},
    "upstream_cuts": {"stream_interrupted", "upstream_unreachable"},
}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("faults")).start()
    yield rig
    rig.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_fault_under_load(rig: Rig, scenario: Any) -> None:
    report = asyncio.run(run_scenario(rig, scenario, PHASE_S, concurrency=6))
    phases: dict[str, dict[str, int]] = report["by_phase"]
    fault = report["during_fault"]  # started during the fault, or in flight when it began or ended
    assert set(phases.get("warm", {})) <= NORMAL, phases
    assert set(fault) <= EXPECTED_DURING_FAULT[scenario.name], phases
    assert MUST_SEE.get(scenario.name, set()) <= set(fault), phases
    assert set(phases.get("recovery", {})) <= NORMAL and phases.get("recovery"), phases
    if scenario.name.startswith("evaluator"):  # each tenant's policy: fail_open serves, fail_closed blocks
        tenants = report["by_phase_tenant"]
        opened = {k: v for k, v in tenants.items() if k.endswith("/open") and "fault" in k}
        closed = {k: v for k, v in tenants.items() if k.endswith("/closed") and "fault" in k}
        assert not any("blocked_evaluator_error" in v for v in opened.values()), tenants
        assert any(v.get("ok") for v in opened.values()), tenants
        assert any(v.get("blocked_evaluator_error") for v in closed.values()), tenants
    if scenario.name == "upstream_slow":
        assert report["latency_ms"]["during_fault"]["p99"] >= 300 > report["latency_ms"]["warm"]["p50"]
    events = report["events"]
    assert events["produced"] > 0 and events["missing"] == 0 and events["unknown_in_topic"] == 0, events
    assert events["delivered"] == events["produced"]
    assert report["audit"]["dropped"] == 0
