"""Bad input and failures: every rejection OpenAI-shaped, never a 500 or a traceback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import openai
import pytest

from proxy.auth import hash_key
from proxy.demo_upstream import DemoUpstream
from tests.conftest import keyword_settings
from tests.proxy_harness import ProxyHarness
from tests.services import free_port


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[ProxyHarness]:
    settings = keyword_settings(tmp_path, server={"max_body_bytes": 20_000, "max_n": 4, "max_messages": 50})
    h = ProxyHarness(settings).start()
    yield h
    h.stop()


def post(h: ProxyHarness, path: str, data: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    async def go() -> tuple[int, dict, dict]:
        async with aiohttp.ClientSession() as s:
            async with s.post(h.base_url + path, data=data, headers=headers or {}) as r:
                return r.status, await r.json(content_type=None), {k.lower(): v for k, v in r.headers.items()}

    return h.call(go())


def assert_openai_error(body: dict, code: str | None = None) -> None:
    assert set(body) == {"error"}
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err)
    assert isinstance(err["message"], str) and "Traceback" not in err["message"]
    if code is not None:
        assert err["code"] == code


@pytest.mark.parametrize("payload, param", [
    (b"{not json", None),
    (b"[1, 2]", None),
    (json.dumps({"model": "m"}).encode(), "messages"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "model"),
    (json.dumps({"model": "m", "messages": "hello"}).encode(), "messages"),
    (json.dumps({"model": "m", "messages": []}).encode(), "messages"),
    (json.dumps({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}).encode(), "messages.0.role"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": 5}]}).encode(), "messages.0.content"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}).encode(), "n"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 99}).encode(), "n"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}).encode(), "stream"),
    (json.dumps({"model": 3, "messages": [{"role": "user", "content": "x"}]}).encode(), "model"),
])
def test_malformed_requests_are_400(harness: ProxyHarness, payload: bytes, param: str | None) -> None:
    status, body, headers = post(harness, "/v1/chat/completions", payload)
    assert status == 400
    assert_openai_error(body)
    if param is not None:
        assert body["error"]["param"].startswith(param.split(".")[0])
    assert headers.get("x-request-id")
    assert harness.upstream.requests == []


def test_too_many_messages_is_400(harness: ProxyHarness) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}] * 51}
    status, resp, _ = post(harness, "/v1/chat/completions", json.dumps(body).encode())
    assert status == 400 and resp["error"]["param"] == "messages"


def test_body_over_limit_is_413(harness: ProxyHarness) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 30_000}]}
    status, resp, _ = post(harness, "/v1/chat/completions", json.dumps(body).encode())
    assert status == 413
    assert_openai_error(resp, "request_too_large")


def test_unknown_route_and_method(harness: ProxyHarness) -> None:
    status, resp, _ = post(harness, "/v1/nope", b"{}")
    assert status == 404
    assert_openai_error(resp)

    async def get() -> tuple[int, dict]:
        async with aiohttp.ClientSession() as s:
            async with s.get(harness.base_url + "/v1/chat/completions") as r:
                return r.status, await r.json()

    status, resp = harness.call(get())
    assert status == 405
    assert_openai_error(resp)


def test_bad_key_is_401_and_keys_are_checked(tmp_path: Path) -> None:
    settings = keyword_settings(tmp_path, client_keys=[{"sha256": hash_key("good-key"), "tenant": "acme"}])
    h = ProxyHarness(settings).start()
    try:
        bad = openai.OpenAI(base_url=h.base_url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
        good = openai.OpenAI(base_url=h.base_url + "/v1", api_key="good-key", max_retries=0)
        resp = good.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert resp.choices[0].finish_reason == "stop"
        # the client's key never reaches the upstream
        assert h.upstream.requests[-1]["headers"]["Authorization"] == "Bearer sk-upstream-SECRET-0000"
    finally:
        h.stop()


def test_upstream_unreachable_is_502(tmp_path: Path) -> None:
    h = ProxyHarness(keyword_settings(tmp_path), upstream_url=f"http://127.0.0.1:{free_port()}").start()
    try:
        c = openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert err.value.status_code == 502 and err.value.body["code"] == "upstream_unreachable"
    finally:
        h.stop()


def test_upstream_timeout_is_504(tmp_path: Path) -> None:
    settings = keyword_settings(tmp_path)
    settings.upstream.read_timeout_s = 0.3
    h = ProxyHarness(settings, DemoUpstream(delay_s=2)).start()
    try:
        c = openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert err.value.status_code == 504 and err.value.body["code"] == "upstream_timeout"
    finally:
        h.stop()


@pytest.mark.parametrize("status", [429, 503, 500])
def test_upstream_errors_are_relayed_faithfully(harness: ProxyHarness, status: int) -> None:
    c = openai.OpenAI(base_url=harness.base_url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        c.chat.completions.create(model=f"error-{status}", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == status
    assert err.value.body["code"] == f"upstream_{status}"


def test_upstream_garbage_is_502(harness: ProxyHarness) -> None:
    c = openai.OpenAI(base_url=harness.base_url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        c.chat.completions.create(model="garbage", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502 and err.value.body["code"] == "upstream_bad_response"


def test_stream_cut_by_upstream_ends_with_an_error_event(harness: ProxyHarness) -> None:
    async def go() -> bytes:
        body = {"model": "cut-stream", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as s:
            async with s.post(harness.base_url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200
                return await r.read()

    raw = harness.call(go())
    assert b"upstream_stream_interrupted" in raw
    assert b"[DONE]" not in raw


@pytest.mark.parametrize("fail, on_error, expect_block", [
    ("raise", "fail_open", False), ("raise", "fail_closed", True),
    ("slow", "fail_open", False), ("slow", "fail_closed", True),
])
def test_evaluator_failure_follows_on_error(tmp_path: Path, fail: str, on_error: str, expect_block: bool) -> None:
    options = {"words": ["x-never"], "category": "secret"}
    if fail == "raise":
        options["fail"] = "raise"
    else:
        options["delay_ms"] = 500
    evaluators = {"flaky": {"type": "keyword", "on_error": on_error, "timeout_ms": 50, "options": options}}
    settings = keyword_settings(tmp_path, evaluators=evaluators,
                                policy={"input": {"evaluators": ["flaky"]}, "output": {"evaluators": []}})
    h = ProxyHarness(settings).start()
    try:
        c = openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
        if expect_block:
            with pytest.raises(openai.BadRequestError) as err:
                c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            assert err.value.body["guardrail"]["categories"] == ["evaluator_error"]
        else:
            resp = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            assert resp.choices[0].finish_reason == "stop"
        metrics = h.call(_get_text(h.base_url + "/metrics"))
        kind = "exception" if fail == "raise" else "timeout"
        assert f'guardstream_evaluator_errors_total{{evaluator="flaky",kind="{kind}",on_error="{on_error}"}}' in metrics
        events = [json.loads(x) for x in Path(settings.audit.jsonl_path).read_text().splitlines()] \
            if h.call(_flush(h)) else []
        assert events and events[0]["verdicts"][0]["error"]  # failed-open errors are audited too
    finally:
        h.stop()


async def _flush(h: ProxyHarness) -> bool:
    await h.state.audit.close()
    await h.state.audit.start()
    return True


async def _get_text(url: str) -> str:
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            return await r.text()


def test_ops_endpoints(harness: ProxyHarness) -> None:
    c = openai.OpenAI(base_url=harness.base_url + "/v1", api_key="k", max_retries=0)
    assert [m.id for m in c.models.list()] == ["demo-model"]
    blocks_before = _sample(harness.call(_get_text(harness.base_url + "/metrics")),
                            'guardstream_blocks_total{category="secret",stage="input"}')
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hunter2 hi"}])
    health = json.loads(harness.call(_get_text(harness.base_url + "/healthz")))
    assert health == {"status": "ok"}
    ready = json.loads(harness.call(_get_text(harness.base_url + "/readyz")))
    assert ready["status"] == "ready" and ready["cache"]["backend"] == "memory"
    metrics = harness.call(_get_text(harness.base_url + "/metrics"))
    assert _sample(metrics, 'guardstream_blocks_total{category="secret",stage="input"}') == blocks_before + 1
    for name in ("guardstream_requests_total", "guardstream_blocks_total", "guardstream_evaluator_latency_seconds",
                 "guardstream_upstream_latency_seconds", "guardstream_proxy_overhead_seconds"):
        assert name in metrics
    assert 'route="/v1/chat/completions",status="400"' in metrics


def test_concurrent_requests_share_one_pool(harness: ProxyHarness) -> None:
    async def go() -> list[int]:
        aclient = openai.AsyncOpenAI(base_url=harness.base_url + "/v1", api_key="k", max_retries=0)
        results = await asyncio.gather(*(aclient.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(40)))
        await aclient.close()
        return [len(r.choices) for r in results]

    assert asyncio.run(go()) == [1] * 40


def test_openapi_document_is_served(harness: ProxyHarness) -> None:
    doc = json.loads(harness.call(_get_text(harness.base_url + "/openapi.json")))
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {"/v1/chat/completions", "/v1/completions", "/v1/models"}
    assert "messages" in doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]


def _sample(metrics: str, series: str) -> float:
    """The value of one series in a Prometheus text page (0 when absent): metrics are process-global."""
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
