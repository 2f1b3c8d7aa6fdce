"""The no-leak property through the real proxy, over sockets (a representative subset of
tests/test_streaming_property.py, which runs every case on the relay in memory).

The upstream streams exactly the deltas the request names (`x_pieces`, passed through by the proxy), a
millisecond apart, so each arrives in its own read; the client reads raw SSE bytes, and the assertions are on
the text it assembles from the SSE JSON and on the bytes themselves.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import tests.planted
from tests.planted import PLANTED, UNSAFE_WORD, answer_with, first_finding, pieces, settings
from tests.proxy_harness import ProxyHarness
from tests.relay_driver import assemble
from tests.stream_client import audit_events


class PiecesUpstream:
    """Streams the request's `x_pieces` as chat deltas, `x_delay_ms` apart."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.disconnects = 0

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                                          ).encode() + b"\n\n"

        try:
            await response.write(event({"role": "assistant", "content": ""}))
            for piece in body["x_pieces"]:
                await response.write(event({"content": piece}))
                if body["x_delay_ms"]:
                    await asyncio.sleep(body["x_delay_ms"] / 1000)
            await response.write(event({}, "stop") + b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        return response

    async def start(self) -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(self.app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Any:
    h = ProxyHarness(settings(tmp_path_factory.mktemp("property-proxy")))
    h.upstream = PiecesUpstream()  # type: ignore[assignment]
    h.start()
    yield h
    h.stop()


async def _stream(url: str, policy: str, deltas: list[str], delay_ms: float = 1) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": "go"}], "stream": True, "x_pieces": deltas,
            "x_delay_ms": delay_ms}
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer key-{policy}"}) as r:
            assert r.status == 200, await r.text()
            return await r.read()


CASES = [("pem_rsa", 1), ("pem_rsa", 7), ("openssh", 2), ("jwt", 1), ("jwt", 3), ("github_token", 1),
         ("aws_access_key", 2), ("password", 1), ("email", 1), ("card_spaced", 2), ("iban_grouped", 3),
         ("ssn", 1), ("zero_width", 1), ("injection_ignore", 2), ("blocklist_word", 1), ("openai_key", 0)]


@pytest.mark.parametrize(("kind", "size"), CASES)
def test_buffered_through_the_proxy_never_sends_a_byte_of_the_secret(proxy: ProxyHarness, kind: str,
                                                                     size: int) -> None:
    planted = PLANTED[kind]
    for offset in (0, 13, 30):
        answer = answer_with(planted, offset)
        raw = proxy.call(_stream(proxy.base_url, "rules-buffered", pieces(answer, size, random.Random(offset))))
        text, finish = assemble(raw)
        assert finish == "content_filter" and answer.startswith(text)
        assert len(text) <= first_finding(answer).start, (offset, text[first_finding(answer).start:])


def test_window_judge_through_the_proxy_never_sends_the_word(proxy: ProxyHarness) -> None:
    for size in (1, 2, 7):
        answer = answer_with(f"the password is {UNSAFE_WORD} of course", 9)
        raw = proxy.call(_stream(proxy.base_url, "both-buffered", pieces(answer, size)))
        text, finish = assemble(raw)
        assert finish == "content_filter" and answer.startswith(text) and len(text) <= answer.index(UNSAFE_WORD)
        assert UNSAFE_WORD.encode() not in raw


def test_cuts_are_audited_with_the_stream_mode(proxy: ProxyHarness) -> None:
    before = len([e for e in audit_events(proxy) if e["stage"] == "output"])
    proxy.call(_stream(proxy.base_url, "rules-buffered", pieces(answer_with(PLANTED["jwt"], 5), 4)))
    proxy.call(_stream(proxy.base_url, "rules-optimistic", pieces(answer_with(PLANTED["jwt"], 5), 4)))
    events = [e for e in audit_events(proxy) if e["stage"] == "output"][before:]
    assert [(e["action"], e["stream_mode"], e["categories"]) for e in events] == [
        ("block", "buffered", ["secret"]), ("block", "optimistic", ["secret"])]
    assert events[0]["verdicts"][0]["findings"][0]["kind"] == "jwt"


@pytest.mark.parametrize(("secret", "size"), [("LONG_RSA_KEY", 1), ("LONG_JWT", 4)])
def test_the_issues_long_secrets_in_small_pieces(proxy: ProxyHarness, secret: str, size: int) -> None:
    """A 1,674-character RSA key in 1-character deltas (~250 kB of events, past the 64 kB hold limit: held
    events are merged, the limit is about text) and a 764-character JWT in 4-character deltas."""
    planted = getattr(tests.planted, secret)
    answer = answer_with(planted, 17)
    raw = proxy.call(_stream(proxy.base_url, "rules-buffered", pieces(answer, size), delay_ms=0))
    text, finish = assemble(raw)
    assert finish == "content_filter" and len(text) <= answer.index(planted)
