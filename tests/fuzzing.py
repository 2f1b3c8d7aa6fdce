"""What the fuzz tests (tests/test_fuzz.py) and the long fuzz run (bench/fuzz_api.py) share: a well-behaved
upstream, and the properties every proxy response must have."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from proxy.demo_upstream import DemoUpstream


class FuzzUpstream(DemoUpstream):
    """The demo upstream without its fault-injecting model names (those are the fault tests' job), plus
    `raw-sse`: stream the bytes in `script` as they are, one write per piece."""

    script: list[bytes] = []

    def __init__(self) -> None:
        super().__init__(record=False)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body = await request.json()
        if body.get("model") == "raw-sse":
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for piece in self.script:
                await response.write(piece)
            await response.write_eof()
            return response
        text = self.answer(body)
        n = int(body.get("n") or 1)
        if body.get("stream"):
            return await self._stream(request, body, [text] * n, chat, "demo-model")
        return web.json_response(self._completion([text] * n, chat, "demo-model"))


def assert_openai_error(body: Any) -> None:
    """`{"error": {"message", "type", "param", "code"}}`, and nothing of a traceback."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str)
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    assert "Traceback" not in json.dumps(body)


def check_response(status: int, headers: Mapping[str, str], content: bytes) -> None:
    """No 5xx (the upstream behind is well-behaved), no traceback, every rejection OpenAI-shaped JSON."""
    assert status < 500, (status, content[:300])
    assert b"Traceback" not in content
    if status >= 400:
        content_type = headers.get("content-type", "")
        if isinstance(content_type, list):  # schemathesis' Response: every header as a list
            content_type = content_type[0] if content_type else ""
        assert content_type.startswith("application/json"), headers
        assert_openai_error(json.loads(content))


def fuzz_api(base_url: str, headers: Mapping[str, str], max_examples: int, deadline_ms: int = 5000,
             timeout_s: float = 10.0) -> dict[str, int]:
    """Schema-driven fuzz of the live proxy (schemathesis strategies from its /openapi.json, positive and
    negative data) under `check_response` plus schemathesis' conformance checks. Raises on the first
    failure (shrunk by hypothesis); returns request counts by "METHOD path mode status"."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    counts: dict[str, int] = {}
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        @settings(max_examples=max_examples, deadline=deadline_ms, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=schema.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            response = case.call(base_url=base_url, headers=dict(headers), timeout=timeout_s)
            check_response(response.status_code, response.headers, response.content)
            case.validate_response(response, checks=checks, headers=dict(headers))
            key = f"{case.method} {case.path} {mode.value} {response.status_code}"  # noqa: B023  # called within this iteration
            counts[key] = counts.get(key, 0) + 1

        run()
    return counts
