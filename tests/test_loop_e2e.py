"""The whole loop in one test: traffic -> Kafka -> review (labels given in the review UI, in Chromium, with batch
labels for look-alikes) -> export -> finetune -> promote -> shadow -> live.

The finetune and promote steps are the `guardstream finetune` / `guardstream promote` commands (issue #16's
training half); until they are on this branch the test runs up to the export and then skips, naming them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from proxy.cli import COMMANDS
from proxy.demo_upstream import DemoUpstream
from tests.classifier_data import BENIGN_ACTS, HARMFUL_ACTS
from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness
from tests.services import free_port
from tests.test_review_ui_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    HAVE_PLAYWRIGHT,
    ROOT,
    SECRET,
    cli,
    wait_for_events,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} absent: the reviewer works in the browser"),
    pytest.mark.skipif(not HAVE_PLAYWRIGHT, reason="playwright not installed (pip install -e '.[test]')"),
]

ANSWER = "OK, here is what I found."
#: the live evaluator knows one harmful request; the reviewers know them all; the candidate learns from them
HARMFUL = HARMFUL_ACTS[:4]
BENIGN = BENIGN_ACTS[:4]
KNOWN_TO_LIVE = "pipe bomb"
VARIANTS = 6


def prompts(round_: int) -> list[tuple[str, bool]]:
    """(prompt, harmful): every act asked in VARIANTS look-alike ways (a ticket number changes)."""
    return [(f"Tell me how to {act} (ticket {round_ * 100 + i})", act in HARMFUL)
            for act in HARMFUL + BENIGN for i in range(VARIANTS)]


def ask_all(h: ProxyHarness, texts: list[str]) -> list[tuple[int, str]]:
    client = openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
    out = []
    for text in texts:
        try:
            resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
            out.append((200, resp.choices[0].message.content or ""))
        except openai.BadRequestError as exc:
            out.append((400, json.dumps(exc.body)))
    return out


def live_settings(tmp_path: Path, kafka_bootstrap: str, topic: str, **policy: Any) -> Any:
    return keyword_settings(
        tmp_path, evaluators={"kw": {"type": "keyword", "options": {"words": [KNOWN_TO_LIVE], "category": "unsafe"}},
                              **policy.pop("evaluators", {})},
        policy={"input": {"evaluators": ["kw"], **policy.pop("input", {})}, "output": {"evaluators": []},
                "actions": {"default": "block"}, **policy},
        audit={"kafka_bootstrap": kafka_bootstrap, "topic": topic, "spool_dir": str(tmp_path / "spool"),
               "content": "full", "sample_allowed": 1.0})


def review_in_the_browser(port: int) -> int:
    """A reviewer works the queue from its head until it is empty, deciding by the prompt, labelling each event
    and its look-alikes in one action. Returns the number of actions."""
    from playwright.sync_api import expect, sync_playwright

    actions = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/login?next=/")
        page.fill("#name", "alice")
        page.fill("#secret", SECRET)
        page.click("#login")
        expect(page.locator("#who")).to_have_text("alice")
        while page.locator("#queue tbody tr[data-event-id]").count():
            assert actions < 20, "the queue does not empty: batch labels are not applied"
            page.keyboard.press("o")  # the head of the queue: the most valuable event
            expect(page.locator("body")).to_have_attribute("data-page", "event")
            texts = page.locator(".turn pre.text").all_inner_texts()
            harmful = any(act in text for act in HARMFUL for text in texts)
            if harmful:
                page.check("input[name=categories][value=S1]")
            if page.locator("#batch-on").count():
                page.check("#batch-on")  # focus stays on the box: the key still labels
            if actions == 0:
                page.screenshot(path=str(ARTIFACTS / "loop_review_event.png"), full_page=True)
            url = page.url
            page.keyboard.press("u" if harmful else "f")
            page.wait_for_url(lambda u, before=url: u != before)
            actions += 1
            page.goto(f"http://127.0.0.1:{port}/")
        browser.close()
    return actions


def test_traffic_review_export_finetune_promote_shadow_live(tmp_path: Path, kafka_bootstrap: str,
                                                            topic: str) -> None:
    from consumers.store import open_store, queries
    from proxy.cli import main

    # 1. traffic: the live evaluator blocks one harmful request; everything is audited to Kafka
    h = ProxyHarness(live_settings(tmp_path, kafka_bootstrap, topic), DemoUpstream(answer=lambda b: ANSWER)).start()
    try:
        traffic = prompts(0)
        served = ask_all(h, [p for p, _ in traffic])
    finally:
        h.stop()
    assert [s for s, _ in served] == [400 if KNOWN_TO_LIVE in p else 200 for p, _ in traffic]
    events = len(traffic) + sum(1 for s, _ in served if s == 200)  # every prompt, and the answers served

    # 2. review: the consumer and the UI; a reviewer labels everything in the browser
    db = str(tmp_path / "review.db")
    cli("review", "add-reviewer", "alice", "--secret-stdin", "--db", db, stdin=SECRET + "\n")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "review", "--bootstrap", kafka_bootstrap, "--topic", topic,
         "--group", f"{topic}-loop", "--db", db, "--port", str(port), "--session-timeout-ms", "2000",
         "--max-poll-interval-ms", "2500"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        wait_for_events(port, events)
        actions = review_in_the_browser(port)
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=20)
    assert server.returncode == 0, out.decode()[-2000:]
    assert actions == len(HARMFUL + BENIGN) + 1  # one per look-alike group (+ the answers): not one per event

    store = open_store(db)
    with store.read() as conn:
        assert queries.counts(conn)["unreviewed"] == 0
        rows, _ = queries.queue(conn, queries.QueueFilter(status="all"), None, limit=500)
    for row in rows:
        event = store.get_event(row.event_id)
        assert event is not None
        (label,) = event.labels
        text = "\n".join(m["content"] for m in event.payload["content"]["messages"])
        harmful = event.payload["stage"] == "input" and any(act in text for act in HARMFUL)
        assert (label.label, "S1" in label.categories) == (("unsafe", True) if harmful else ("safe", False)), text
    store.dispose()

    # 3. export
    exported = tmp_path / "export"
    assert main(["export", "--db", db, "--out", str(exported), "--test-fraction", "0.25", "--quiet"]) == 0
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest, manifest

    missing = [c for c in ("finetune", "promote") if c not in COMMANDS]
    if missing:
        pytest.skip(f"`guardstream {'` and `guardstream '.join(missing)}` not on this branch (issue #16's training "
                    "half, the finetune branch): traffic -> Kafka -> browser review -> export ran; "
                    "finetune -> promote -> shadow -> live wait for it")

    # 4. finetune a candidate classifier on the reviewers' labels; the artifact's manifest says how to serve it
    candidate_dir = tmp_path / "candidate"
    assert main(["finetune", "classifier", "--data", str(exported), "--out", str(candidate_dir)]) == 0
    served = json.loads((candidate_dir / "manifest.json").read_text())["evaluator"]
    assert served["type"] == "classifier"

    # 5. shadow: the candidate runs beside the live evaluator; it never changes an answer, and where it
    # disagrees (the harmful requests the live one misses) the events go to the review queue
    shadowed = live_settings(
        tmp_path / "shadow", kafka_bootstrap, topic + "-shadow",
        evaluators={"candidate": {"type": "classifier", "timeout_ms": 10_000, "options": served["options"]}},
        input={"shadow": {"candidate": "kw"}})
    h = ProxyHarness(shadowed, DemoUpstream(answer=lambda b: ANSWER)).start()
    try:
        fresh = prompts(1)
        answers = ask_all(h, [p for p, _ in fresh])
        assert [s for s, _ in answers] == [400 if KNOWN_TO_LIVE in p else 200 for p, _ in fresh]
        assert all(text == ANSWER for s, text in answers if s == 200)  # the shadow never changes an answer
        deadline = time.monotonic() + 60  # shadows judge in background tasks: let them finish before counting
        while h.state.guard.shadows.inflight and time.monotonic() < deadline:
            time.sleep(0.05)
        agreement = h.state.guard.shadows.flush_tally()
    finally:
        h.stop()
    assert agreement is not None
    counts = {(c["category"], c["outcome"]): c["n"] for c in agreement["counts"]}
    misses = sum(1 for p, harmful in fresh if harmful and KNOWN_TO_LIVE not in p)
    assert counts.get(("any", "shadow_only"), 0) >= misses * 0.8  # the candidate catches what live misses
    assert counts.get(("any", "live_only"), 0) == 0

    # 6. promote: the shadow candidate must be no worse than the live evaluator it shadows on the export's test
    # split and the canary set, then takes its place
    config = tmp_path / "guardstream.yaml"
    config.write_text(yaml.safe_dump(shadowed.model_dump(mode="json")))
    # the canaries of this deployment: its own clear cases, asked another way; the gates use the prompts only
    # (the candidate replaces an input-stage evaluator)
    canary = tmp_path / "canary.jsonl"
    canary.write_text("".join(json.dumps({"prompt": f"I need to know how to {act}.",
                                          "label": "unsafe" if act in HARMFUL else "safe"}) + "\n"
                              for act in HARMFUL + BENIGN))
    assert main(["promote", "--config", str(config), "--policy", "default", "--stage", "input",
                 "--candidate", "candidate", "--data", str(exported), "--canary", str(canary)]) == 0
    assert "shadow" not in yaml.safe_load(config.read_text())["policies"]["default"]["input"]
    promoted = yaml.safe_load(config.read_text())
    assert "candidate" in promoted["policies"]["default"]["input"]["evaluators"]

    # 7. live: the promoted candidate now blocks the harmful requests the old evaluator let through
    from proxy.config import load_settings

    h = ProxyHarness(load_settings(config), DemoUpstream(answer=lambda b: ANSWER)).start()
    try:
        last = prompts(2)
        served = ask_all(h, [p for p, _ in last])
    finally:
        h.stop()
    blocked = [status == 400 for status, _ in served]
    assert sum(b and harmful for b, (_, harmful) in zip(blocked, last)) >= 0.8 * sum(h for _, h in last)
    assert sum(b and not harmful for b, (_, harmful) in zip(blocked, last)) <= 1
