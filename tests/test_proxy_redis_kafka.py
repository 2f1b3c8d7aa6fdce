"""The proxy with a real Redis verdict cache and a real Kafka-protocol audit stream."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import openai
import pytest
from kafka import KafkaConsumer

from proxy.schemas.events import validation_errors
from tests import services
from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness


def slow_evaluators() -> dict:
    return {
        "secrets": {"type": "keyword", "on_error": "fail_closed", "cache": True,
                    "options": {"words": ["hunter2"], "category": "secret", "delay_ms": 50}},
        "pii": {"type": "keyword", "cache": True, "options": {"words": ["@example.com"], "category": "pii"}},
    }


def consume(bootstrap: str, topic: str, expected: int, timeout_s: float = 20) -> list[dict]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < expected and time.monotonic() < deadline:
        for message in consumer:
            out.append({"key": message.key, **json.loads(message.value)})
    consumer.close()
    return out


def test_identical_prompts_are_evaluated_once_and_blocks_reach_kafka(
        tmp_path: Path, redis_url: str, kafka_bootstrap: str, topic: str) -> None:
    settings = keyword_settings(
        tmp_path, evaluators=slow_evaluators(),
        cache={"redis_url": redis_url, "key_prefix": services.unique_name("gs-test") + ":"},
        audit={"kafka_bootstrap": kafka_bootstrap, "topic": topic, "spool_dir": str(tmp_path / "spool"),
               "content": "hash"})
    h = ProxyHarness(settings).start()
    try:
        async def burst() -> list[str]:
            client = openai.AsyncOpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
            results = await asyncio.gather(*(client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "same question"}]) for _ in range(20)))
            await client.close()
            return [r.choices[0].finish_reason for r in results]

        assert asyncio.run(burst()) == ["stop"] * 20
        secrets = h.state.evaluators["secrets"]
        assert secrets.items_seen == 2  # one prompt + one answer, for 20 identical requests

        sync = openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
        for i in range(3):
            with pytest.raises(openai.BadRequestError):
                sync.with_options(default_headers={"x-request-id": f"req-{i}"}).chat.completions.create(
                    model="m", messages=[{"role": "user", "content": f"hunter2 #{i}"}])
        ready = h.call(_get_json(h.base_url + "/readyz"))
        assert ready["cache"]["backend"] == "redis" and ready["cache"]["ok"] is True
        assert ready["audit"]["backend"] == "kafka"
    finally:
        h.stop()  # flushes the producer
    events = consume(kafka_bootstrap, topic, expected=3)
    assert sorted(e["request_id"] for e in events) == ["req-0", "req-1", "req-2"]
    assert all(e["key"] == e["request_id"].encode() for e in events)
    assert all(validation_errors({k: v for k, v in e.items() if k != "key"}) == [] for e in events)
    assert all(e["content"]["mode"] == "hash" and e["content"]["messages"] is None for e in events)


def test_redis_outage_never_fails_a_request(tmp_path: Path) -> None:
    redis = services.start_redis()
    settings = keyword_settings(tmp_path, evaluators=slow_evaluators(),
                                cache={"redis_url": f"redis://127.0.0.1:{redis.port}/0", "op_timeout_ms": 50})
    h = ProxyHarness(settings).start()
    client = openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)

    def ask(i: int, content: str | None = None) -> tuple[str, float]:
        started = time.perf_counter()
        content = content or f"question {i % 3}"
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}])
        return r.choices[0].finish_reason, time.perf_counter() - started

    try:
        assert [ask(i)[0] for i in range(6)] == ["stop"] * 6
        redis.stop()
        during = [ask(i) for i in range(20)]
        assert [r for r, _ in during] == ["stop"] * 20
        assert max(t for _, t in during) < 1.0
        assert h.call(_get_json(h.base_url + "/readyz"))["cache"]["ok"] is False
        redis.start()
        deadline = time.monotonic() + 10
        while not h.call(_get_json(h.base_url + "/readyz"))["cache"]["ok"] and time.monotonic() < deadline:
            ask(0)
            time.sleep(0.2)
        assert h.call(_get_json(h.base_url + "/readyz"))["cache"]["ok"] is True
        seen = h.state.evaluators["secrets"]
        before = seen.items_seen
        ask(0, "a question never asked before")
        after_first = seen.items_seen
        ask(0, "a question never asked before")
        assert after_first > before and seen.items_seen == after_first  # second time: served from Redis again
    finally:
        h.stop()
        redis.stop()


async def _get_json(url: str) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            return await r.json()


def test_huge_prompt_and_long_streamed_answer_are_audited_elided(tmp_path: Path, kafka_bootstrap: str,
                                                                 topic: str) -> None:
    """A blocked 3 MB prompt and an answer cut after 100 kB both reach Kafka: events keep the head and tail of
    long texts (`audit.max_content_chars`) instead of making a message over Kafka's 1 MB limit, which the
    broker refuses (such an event used to be dropped). The digest is still that of the whole prompt."""
    from proxy.demo_upstream import DemoUpstream
    from proxy.schemas.events import content_digest
    from tests.stream_client import tokens

    settings = keyword_settings(
        tmp_path, audit={"kafka_bootstrap": kafka_bootstrap, "topic": topic, "spool_dir": str(tmp_path / "spool"),
                         "content": "full"},
        policy={"output": {"evaluators": ["secrets"], "streaming": {"mode": "buffered", "chunk_size": 16}}})
    answer = tokens(20_000, unsafe_at=19_990)
    h = ProxyHarness(settings, DemoUpstream(answer=lambda body: answer, chunk_delay_s=0.0)).start()
    prompt = "lorem ipsum " * 250_000 + "hunter2"
    try:
        client = openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
        stream = client.chat.completions.create(model="m", stream=True,
                                                messages=[{"role": "user", "content": "a long one"}])
        finish = [c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason]
        assert finish == ["content_filter"]
    finally:
        h.stop()
    events = {e["stage"]: e for e in consume(kafka_bootstrap, topic, expected=2)}
    assert set(events) == {"input", "output"}
    kept = events["input"]["content"]["messages"][0]["content"]
    assert kept.startswith("lorem ipsum") and kept.endswith("hunter2") and "characters elided" in kept
    assert len(kept) < 40_000
    assert events["input"]["content"]["sha256"] == content_digest([{"role": "user", "content": prompt}], None)
    completion = events["output"]["content"]["completion"]
    assert completion.startswith("t0 t1 ") and "hunter2" in completion[-2000:] and "characters elided" in completion
    assert all(len(json.dumps({**e, "key": None})) < 100_000 for e in events.values())
