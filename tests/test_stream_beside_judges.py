"""Judges that only flag are fed in batches (proxy/streaming/judges.py): they report what they would have reported
judging every read, before a cut, when the upstream breaks off and when the client goes away."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import proxy.streaming.judges as judges_module
from proxy.auth import ANONYMOUS, hash_key
from proxy.config import Settings
from proxy.recording import RequestContext
from proxy.routes import CHAT
from proxy.streaming import StreamRelay, StreamRequest
from tests.planted import EVALUATORS, PLANTED, UNSAFE_WORD, _engines, pieces, settings
from tests.relay_driver import MemoryClient, MemoryUpstream, RelayDriver, _chunk

#: personal data every few hundred characters of prose: several batches of the beside judges
FILLER = "The quarterly report covers revenue, hiring and the roadmap for the next two releases. "


def long_answer(seed: int) -> str:
    rng = random.Random(seed)
    parts = []
    for i in range(60):
        parts.append(FILLER)
        if i % 7 == 3:
            parts.append(f"Write to {PLANTED['email']} or call {PLANTED['phone_intl']}. ")
        if i % 11 == 5:
            parts.append(f"Card {PLANTED['card_spaced']} and a hidden {PLANTED['zero_width']}. ")
        if rng.random() < 0.1:
            parts.append(f"IBAN {PLANTED['iban_grouped']}. ")
    return "".join(parts)


def flagged(events: list[dict[str, Any]]) -> list[tuple[str, str, int, int]]:
    """Every finding in the stream's audit events, in order."""
    return sorted((v["evaluator"], f["kind"], f["start"], f["end"]) for e in events for v in e["verdicts"]
                  for f in v["findings"])


def whole_answer(answer: str) -> list[tuple[str, str, int, int]]:
    """The oracle: what pii and unicode find in the whole answer, judged at once."""
    return sorted((name, f.kind, f.start, f.end) for name in ("pii", "unicode")
                  for f in _engines()[name].analyse(answer)[0])  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> RelayDriver:
    return RelayDriver(settings(tmp_path_factory.mktemp("beside")))


def test_the_built_in_policy_judges_personal_data_beside(driver: RelayDriver) -> None:
    slots = {name: beside for name, _, _, _, beside in driver.guard.scanners(driver.guard.policy("builtin-buffered"))}
    assert slots == {"secrets": False, "pii": True, "unicode": True}
    # a judge whose findings block, or which fails closed, is fed every read
    assert not any(beside for *_, beside in driver.guard.scanners(driver.guard.policy("rules-buffered")))


@pytest.mark.parametrize("size", [1, 3, 7, 0])
def test_batched_judges_report_what_judging_every_read_reports(driver: RelayDriver, size: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    answer = long_answer(size)
    assert len(answer) > 2 * judges_module.BESIDE_BATCH_CHARS
    parts = pieces(answer, size, random.Random(size))
    batched = driver.run("builtin-buffered", [parts], per_read=3)[0]
    monkeypatch.setattr(judges_module, "BESIDE_BATCH_CHARS", 0)  # every step: what the judges did before
    each_read = driver.run("builtin-buffered", [parts], per_read=3)[0]
    for outcome in (batched, each_read):
        assert (outcome.text, outcome.finish) == (answer, "stop")
        assert all(e["action"] == "flag" for e in outcome.events)
    assert flagged(batched.events) == flagged(each_read.events) == whole_answer(answer)
    assert len(batched.events) < len(each_read.events)  # the same findings in fewer events


def test_beside_judges_catch_up_before_a_cut(driver: RelayDriver) -> None:
    """An e-mail address the client got, then a secret that cuts the stream: both are audited."""
    answer = f"Mail {PLANTED['email']} about it. " + FILLER * 3 + PLANTED["github_token"] + " done."
    for size in (1, 5, 0):
        outcome = driver.run("builtin-buffered", [pieces(answer, size, random.Random(size))])[0]
        assert outcome.finish == "content_filter"
        assert PLANTED["email"] in outcome.text and PLANTED["github_token"] not in outcome.text
        kinds = {(evaluator, kind) for evaluator, kind, _, _ in flagged(outcome.events)}
        assert ("pii", "email") in kinds and ("secrets", "github_token") in kinds


def received(data: bytes) -> str:
    """The answer text in what the client got (a stream that may have ended early)."""
    text = ""
    for event in data.split(b"\n\n"):
        if event.startswith(b"data: {"):
            for choice in json.loads(event[6:]).get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
    return text


def test_beside_judges_catch_up_before_a_window_judge_cuts(tmp_path: Path) -> None:
    """The cut comes from a window judge (a model), not from a scanner's step: the e-mail address is audited."""
    policy = {"input": {"evaluators": []}, "actions": {"pii": "flag", "default": "block"},
              "output": {"evaluators": ["pii", "keyword"], "streaming": {"mode": "buffered", "first_chunk_size": 8}}}
    driver = RelayDriver(Settings.model_validate({
        "evaluators": EVALUATORS, "policies": {"window": policy},
        "client_keys": [{"sha256": hash_key("key-window"), "policy": "window"}],
        "audit": {"jsonl_path": str(tmp_path / "audit.jsonl"), "content": "full"}}))
    answer = f"Mail {PLANTED['email']} about it. " + FILLER * 2 + f"The password is {UNSAFE_WORD}. " + FILLER
    outcome = driver.run("window", [pieces(answer, 4)], settle=3)[0]
    assert outcome.finish == "content_filter" and UNSAFE_WORD not in outcome.text
    assert PLANTED["email"] in outcome.text
    assert ("pii", "email") in {(evaluator, kind) for evaluator, kind, _, _ in flagged(outcome.events)}


def _relay(driver: RelayDriver, answer: str, client: MemoryClient, end: BaseException | None) -> list[dict[str, Any]]:
    """Stream `answer` in 4-character deltas, one a read; then `end` (an upstream error) or nothing (the client
    fails on its own). The audit events of the stream."""
    async def run() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        upstream = MemoryUpstream(loop)
        ctx = RequestContext(request_id="r", principal=ANONYMOUS, route="/v1/chat/completions", model="m",
                             started=0.0)
        before = len(driver.sink.events)
        relay = StreamRelay(StreamRequest(CHAT, ctx, [[{"role": "user", "content": "go"}]]),
                            driver.guard.policy("builtin-buffered"), guard=driver.guard, recorder=driver.recorder,
                            upstream=upstream, client=client)  # type: ignore[arg-type]  # in-memory stand-ins
        task = asyncio.create_task(relay.run())
        for part in [_chunk({"role": "assistant", "content": ""})] + [_chunk({"content": p}) for p in pieces(answer, 4)]:
            if task.done():
                break
            upstream.content.feed_data(part)
            await asyncio.sleep(0)
        if end is not None:
            upstream.content.set_exception(end)
        else:
            upstream.content.feed_eof()
        await asyncio.wait([task], timeout=10)
        assert task.done()
        if not task.cancelled():
            task.exception()
        return driver.sink.events[before:]

    return asyncio.run(run())


def test_beside_judges_catch_up_when_the_upstream_breaks_off(driver: RelayDriver) -> None:
    answer = FILLER + f"Mail {PLANTED['email']} today. " + FILLER
    client = MemoryClient()
    events = _relay(driver, answer, client, aiohttp.ClientPayloadError("upstream broke off"))
    assert PLANTED["email"] in received(client.data)  # released before the break
    assert ("pii", "email") in {(evaluator, kind) for evaluator, kind, _, _ in flagged(events)}


class FailingClient(MemoryClient):
    """A client that goes away once it got `enough` of the answer."""

    def __init__(self, enough: str) -> None:
        super().__init__()
        self.enough = enough

    async def write(self, data: bytes) -> None:
        if self.enough in received(bytes(self.data)):
            raise ConnectionResetError("client gone")
        await super().write(data)


def test_beside_judges_catch_up_when_the_client_goes_away(driver: RelayDriver) -> None:
    answer = f"Mail {PLANTED['email']} today. " + FILLER * 4
    client = FailingClient(enough="today")  # gets the e-mail address, then goes away mid-answer
    events = _relay(driver, answer, client, None)
    assert PLANTED["email"] in received(client.data)
    assert ("pii", "email") in {(evaluator, kind) for evaluator, kind, _, _ in flagged(events)}
