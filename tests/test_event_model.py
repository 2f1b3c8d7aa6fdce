"""The audit event's one definition (`proxy/schemas/events.py`): the checked-in JSON Schema is generated from the
model, the proxy's wire form is the one it sent before the model existed, and events stored before it still
read."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from evaluators.base import Finding, Verdict
from proxy.recording import verdict_record
from proxy.schemas import events
from proxy.schemas.events import (
    SCHEMA_PATH,
    AuditEvent,
    EventContent,
    ShadowRecord,
    ShadowVerdictRecord,
    Turn,
    content_digest,
    validation_errors,
)

DIGEST = content_digest([{"role": "user", "content": "hi"}], None)


def test_checked_in_schema_is_generated_from_the_model() -> None:
    assert SCHEMA_PATH.read_text() == events.render_schema(), \
        "proxy/schemas/event.v1.json is stale: run python -m proxy.schemas.events"


def test_the_regenerate_command_checks_and_writes() -> None:
    done = subprocess.run([sys.executable, "-m", "proxy.schemas.events", "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _event(**overrides: Any) -> AuditEvent:
    verdict = verdict_record(Verdict(safe=False, evaluator="pii", version="1", categories=["pii"], latency_ms=0.21234,
                                     findings=[Finding("pii", "email", 3, 9)]))
    fields: dict[str, Any] = dict(
        request_id="req-1", tenant="acme", policy="default", stage="input", action="block", mode="enforce",
        route="/v1/chat/completions", stream_mode=None, choice_index=None, categories=["pii"], failed_open=[],
        verdicts=[verdict], model="tiny", upstream="http://127.0.0.1:8000",
        content=EventContent(mode="full", messages=[Turn(role="user", content="hi")], completion=None, sha256=DIGEST),
        latency_ms=1.5)
    fields.update(overrides)
    return AuditEvent(event_id="0f4c9f5e-4b53-4bd4-9a3f-1d1e4f8f2b11", ts="2026-01-02T03:04:05.678Z", **fields)


def test_wire_form_is_byte_for_byte_what_the_proxy_sent_before_the_model() -> None:
    """Key order and keys as `proxy/recording.py` built them as dicts: no `threshold` or `shadow` unless set."""
    wire = json.dumps(_event().wire(), separators=(",", ":"))
    assert wire == (
        '{"schema":"guardstream.event.v1","event_id":"0f4c9f5e-4b53-4bd4-9a3f-1d1e4f8f2b11",'
        '"ts":"2026-01-02T03:04:05.678Z","request_id":"req-1","tenant":"acme","policy":"default","stage":"input",'
        '"action":"block","mode":"enforce","route":"/v1/chat/completions","stream_mode":null,"choice_index":null,'
        '"categories":["pii"],"failed_open":[],"verdicts":[{"evaluator":"pii","version":"1","safe":false,'
        '"categories":["pii"],"score":null,"latency_ms":0.212,"cached":false,"error":null,'
        '"findings":[{"category":"pii","kind":"email","start":3,"end":9}]}],"model":"tiny",'
        '"upstream":"http://127.0.0.1:8000","content":{"mode":"full","messages":[{"role":"user","content":"hi"}],'
        '"completion":null,"sha256":"' + DIGEST + '"},"latency_ms":1.5}')


def test_threshold_and_shadow_appear_where_set_in_their_old_places() -> None:
    live = verdict_record(Verdict(safe=True, evaluator="clf", version="2", score=0.1), threshold=0.5)
    shadow = ShadowRecord(disagreement=True, categories=["any"], verdicts=[ShadowVerdictRecord(
        **dict(verdict_record(Verdict(safe=False, evaluator="clf2", version="1", categories=["S1"]))),
        compared_with="clf", compared=True, differs=["any"])])
    wire = _event(verdicts=[live], shadow=shadow).wire()
    assert list(wire)[-1] == "shadow" and list(wire["verdicts"][0])[-1] == "threshold"
    assert list(wire["shadow"]["verdicts"][0]) == ["evaluator", "version", "safe", "categories", "score", "latency_ms",
                                                   "cached", "error", "findings", "compared_with", "compared",
                                                   "differs"]
    assert validation_errors(wire) == []


#: as the proxy and the test support wrote them before the model: no failed_open, findings, route or content texts
STORED = {"schema": "guardstream.event.v1", "event_id": "6a1b5b7e-3c0f-4d59-8f43-0d9b1f1f9e01",
          "ts": "2026-01-02T03:04:05.678Z", "request_id": "req-9", "tenant": "acme", "policy": "default",
          "stage": "output", "action": "flag", "mode": "shadow", "categories": ["S1"],
          "verdicts": [{"evaluator": "llama_guard", "version": "3-8b", "safe": False, "categories": ["S1"]}],
          "model": None, "upstream": "http://upstream:8000", "content": {"mode": "hash", "sha256": DIGEST},
          "latency_ms": 20, "seq": 7}


def test_events_stored_before_the_model_still_read() -> None:
    assert validation_errors(STORED) == []
    event = AuditEvent.model_validate(STORED)
    assert (event.route, event.failed_open, event.verdicts[0].findings, event.content.messages) == (None, [], [], None)
    assert event.model_extra == {"seq": 7}  # unknown fields are kept


@pytest.mark.parametrize("change", [
    {"stage": "middle"}, {"action": "ban"}, {"mode": "maybe"}, {"request_id": ""}, {"latency_ms": -1},
    {"content": {"mode": "hash", "sha256": "nothex"}}, {"schema": "guardstream.event.v2"},
    {"verdicts": [{"evaluator": "x", "version": "1", "categories": []}]}, {"route": None}, {"event_id": "short"},
])
def test_the_schema_rejects_what_it_rejected_before(change: dict[str, Any]) -> None:
    assert validation_errors({**STORED, **change}) != []


@pytest.mark.parametrize("missing", ["schema", "event_id", "ts", "request_id", "tenant", "policy", "stage", "action", "mode",
                                     "verdicts", "categories", "model", "upstream", "content", "latency_ms"])
def test_required_fields_are_the_old_required_fields(missing: str) -> None:
    assert validation_errors({k: v for k, v in STORED.items() if k != missing}) != []
