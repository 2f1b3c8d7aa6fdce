"""Per-tenant limits on concurrent upstream requests and streams: one tenant saturating its share gets OpenAI-shaped
429s (with Retry-After) while every other tenant's requests still go through at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from proxy.auth import hash_key
from proxy.config import Settings
from proxy.demo_upstream import DemoUpstream
from tests.proxy_harness import ProxyHarness

LONG = " ".join(f"w{i}" for i in range(500))  # 500 chunks, 20 ms apart: a stream stays open about 10 s


def settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings.model_validate({
        "upstream": {"pool_size": 8, "connect_timeout_s": 5},
        "client_keys": [{"sha256": hash_key("key-a"), "tenant": "a"}, {"sha256": hash_key("key-b"), "tenant": "b"}],
        "policies": {"default": {"input": {"evaluators": []}, "output": {"evaluators": []}}},
        "audit": {"jsonl_path": str(tmp_path / "audit.jsonl")}, **extra})


def start(tmp_path: Path, **extra: Any) -> ProxyHarness:
    return ProxyHarness(settings(tmp_path, **extra), DemoUpstream(answer=lambda body: LONG, chunk_delay_s=0.02)).start()


async def open_streams(url: str, key: str, count: int, stop: asyncio.Event) -> list[tuple[int, dict[str, Any]]]:
    """`count` streams at once; each admitted one is held open (first chunk read) until `stop`."""
    body = {"model": "demo-model", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    admitted = asyncio.Event()

    async def one(session: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
        async with session.post(url + "/v1/chat/completions", json=body,
                                headers={"authorization": f"Bearer {key}"}) as r:
            if r.status != 200:
                return r.status, {"body": json.loads(await r.read()), "retry_after": r.headers.get("retry-after")}
            await r.content.readline()
            admitted.set()
            await stop.wait()
            return r.status, {}

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        return list(await asyncio.gather(*(one(session) for _ in range(count))))


def run_saturated(h: ProxyHarness, streams: int, admitted: int,
                  then: Any) -> tuple[list[tuple[int, dict[str, Any]]], Any]:
    """Tenant a opens `streams` long streams; once the upstream holds the `admitted` ones, `then()` runs (in a
    thread) while they stay open."""
    async def go() -> tuple[list[tuple[int, dict[str, Any]]], Any]:
        stop = asyncio.Event()
        saturating = asyncio.create_task(open_streams(h.base_url, "key-a", streams, stop))
        for _ in range(250):
            await asyncio.sleep(0.02)
            if len(h.upstream.requests) >= admitted:
                await asyncio.sleep(0.2)  # the rejected ones are answered by now
                break
        try:
            result = await asyncio.wait_for(asyncio.to_thread(then), 10)
            assert h.upstream.streams_finished == 0, "tenant a's streams must still be open"
        finally:
            stop.set()
        return await saturating, result

    return h.call(go(), timeout=60)


def tenant_b_asks(h: ProxyHarness) -> str:
    client = openai.OpenAI(base_url=h.base_url + "/v1", api_key="key-b", max_retries=0, timeout=3)
    answer = client.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "hi"}])
    return answer.choices[0].message.content or ""


def test_one_tenant_cannot_starve_another(tmp_path: Path) -> None:
    """Pool of 8 and two tenants: each may hold half. Tenant a asks for 12 streams: 4 run, 8 get 429; tenant b's
    request is answered at once while a's streams are still open."""
    h = start(tmp_path)
    try:
        results, answer = run_saturated(h, 12, 4, lambda: tenant_b_asks(h))
        assert answer == LONG
        statuses = sorted(status for status, _ in results)
        assert statuses == [200] * 4 + [429] * 8
        rejected = next(info for status, info in results if status == 429)
        assert rejected["retry_after"] == "1"
        error = rejected["body"]["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
        assert "tenant" in error["message"]
    finally:
        h.stop()


def test_a_tenant_limit_is_configurable_and_counted(tmp_path: Path) -> None:
    h = start(tmp_path, tenants={"a": {"max_concurrent": 2}})
    try:
        results, _ = run_saturated(h, 5, 2, lambda: None)
        assert sorted(status for status, _ in results) == [200, 200, 429, 429, 429]

        async def metrics() -> str:
            async with aiohttp.ClientSession() as s:
                async with s.get(h.base_url + "/metrics") as r:
                    return await r.text()

        text = h.call(metrics())
        line = next(line for line in text.splitlines()
                    if line.startswith('guardstream_tenant_rejections_total{tenant="a"}'))
        assert float(line.split()[-1]) >= 3
    finally:
        h.stop()


def test_the_sdk_sees_a_rate_limit_error(tmp_path: Path) -> None:
    h = start(tmp_path, tenants={"b": {"max_concurrent": 1}})
    try:
        def two_streams() -> None:
            client = openai.OpenAI(base_url=h.base_url + "/v1", api_key="key-b", max_retries=0, timeout=10)
            first = client.chat.completions.create(model="demo-model", stream=True,
                                                   messages=[{"role": "user", "content": "go"}])
            next(iter(first))
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "go"}])
            first.close()

        h.call(asyncio.to_thread(two_streams), timeout=30)
    finally:
        h.stop()


def test_limits_are_validated(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        settings(tmp_path, tenants={"a": {"max_concurrent": 0}})
    with pytest.raises(ValidationError):
        settings(tmp_path, tenants={"a": {"max_concurent": 3}})


def test_a_slot_is_given_back_when_the_client_goes_away(tmp_path: Path) -> None:
    """A stream the client drops mid-way, an upstream error and a blocked prompt all give the slot back."""
    h = start(tmp_path, tenants={"b": {"max_concurrent": 1}})
    try:
        async def go() -> list[int]:
            headers = {"authorization": "Bearer key-b"}
            body = {"model": "demo-model", "stream": True, "messages": [{"role": "user", "content": "go"}]}
            async with aiohttp.ClientSession() as s:
                r = await s.post(h.base_url + "/v1/chat/completions", json=body, headers=headers)
                await r.content.readline()
                r.close()  # the client goes away mid-stream
            statuses = []
            for model in ("error-503", "demo-model"):
                await asyncio.sleep(0.3)
                async with aiohttp.ClientSession() as s:
                    async with s.post(h.base_url + "/v1/chat/completions", headers=headers,
                                      json={**body, "model": model, "stream": False}) as r:
                        statuses.append(r.status)
            return statuses

        assert h.call(go()) == [503, 200]
        assert h.state is not None and h.state.tenants.open == {}
    finally:
        h.stop()
