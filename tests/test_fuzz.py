"""Fuzzed input (bounded; the long run is bench/fuzz_api.py): property-based tests of request parsing and of
the SSE parser and relay, and a schema-driven fuzz of the live proxy's HTTP API from its /openapi.json.
Properties: no 500, no traceback, no hang; every rejection OpenAI-shaped; SSE parsing independent of how
the bytes were split, and never failing with anything but its documented ValueError.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.auth import hash_key
from proxy.errors import ProxyError
from proxy.protocol import ChatCompletionRequest, CompletionRequest, check_limits, parse_request
from proxy.sse import SSEParser
from tests.conftest import keyword_settings
from tests.fuzzing import FuzzUpstream, assert_openai_error, fuzz_api
from tests.proxy_harness import ProxyHarness

FAST = settings(max_examples=int(os.environ.get("GS_FUZZ_EXAMPLES", 150)), deadline=2000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "wizard", 3]),
                                 "content": st.one_of(st.text(max_size=30), st.none(), st.integers(),
                                                      st.lists(st.fixed_dictionaries({"type": st.just("text"),
                                                                                      "text": st.text(max_size=10)})))})
chat_like = st.fixed_dictionaries(
    {"model": st.one_of(st.text(max_size=10), st.integers())},
    optional={"messages": st.one_of(st.lists(message, max_size=4), json_values),
              "stream": st.one_of(st.booleans(), json_values), "n": st.one_of(st.integers(-3, 20), json_values),
              "stream_options": json_values, "extra": json_values})


# -- request parsing ---------------------------------------------------------------------------------------
@FAST
@given(body=st.one_of(json_values, chat_like), route=st.sampled_from([ChatCompletionRequest, CompletionRequest]))
def test_parse_request_accepts_or_rejects_with_an_openai_400(body: Any, route: type) -> None:
    try:
        parsed = parse_request(route, body)
    except ProxyError as exc:
        assert exc.status == 400 and exc.message and "Traceback" not in exc.message
        assert_openai_error(exc.body())
        return
    assert isinstance(body, dict) and isinstance(parsed.model, str)
    try:
        check_limits(parsed.n, len(body.get("messages") or []), max_n=8, max_messages=3)
    except ProxyError as exc:
        assert exc.status == 400 and exc.param in ("n", "messages")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyHarness]:
    tmp = tmp_path_factory.mktemp("fuzz")
    settings_ = keyword_settings(tmp, server={"max_body_bytes": 20_000, "max_n": 4, "max_messages": 20},
                                 client_keys=[{"sha256": hash_key("fuzz-key"), "tenant": "fuzz"}])
    h = ProxyHarness(settings_, FuzzUpstream()).start()
    yield h
    h.stop()


AUTH = {"Authorization": "Bearer fuzz-key"}


@pytest.fixture(autouse=True)
def no_proxy_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No traceback in the proxy's logs either (aiohttp logs one for a handler that raises)."""
    yield
    import logging

    texts = [logging.Formatter().formatException(r.exc_info) if r.exc_info else r.getMessage()
             for r in caplog.records if r.levelno >= logging.ERROR]
    assert [t for t in texts if "/proxy/" in t] == []


async def _post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        async with s.post(url, data=data, headers=headers) as r:
            return r.status, await r.read()


@FAST
@given(raw=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                     chat_like.map(lambda v: json.dumps(v).encode()), st.binary(min_size=20_001, max_size=20_100)))
def test_any_body_gets_an_answer_or_an_openai_error(harness: ProxyHarness, raw: bytes) -> None:
    status, body = harness.call(_post(harness.base_url + "/v1/chat/completions", raw,
                                      {**AUTH, "content-type": "application/json"}))
    assert status in (200, 400, 413), (status, body[:200])
    if status != 200:
        assert_openai_error(json.loads(body))


# -- SSE -----------------------------------------------------------------------------------------------
sse_field = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=15)
sse_event = st.lists(st.tuples(st.sampled_from(["data", "event", "id", "retry", "", "data"]), sse_field),
                     min_size=1, max_size=3)
sse_stream = st.tuples(st.lists(sse_event, max_size=6), st.sampled_from(["\n", "\r\n", "\r"]))


def encode_stream(events: list[list[tuple[str, str]]], eol: str) -> bytes:
    return "".join("".join(f"{name}: {value}{eol}" if name else f": {value}{eol}" for name, value in event) + eol
                   for event in events).encode()


def parse_all(chunks: list[bytes], max_event_bytes: int = 1 << 20) -> list[tuple[bytes, str | None]]:
    parser = SSEParser(max_event_bytes)
    events = [e for chunk in chunks for e in parser.feed(chunk)] + parser.flush()
    return [(e.raw, e.data) for e in events]


@settings(max_examples=300, deadline=None, database=None)
@given(stream=sse_stream, cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_sse_parsing_does_not_depend_on_how_the_bytes_were_split(stream: tuple, cuts: list[int]) -> None:
    raw = encode_stream(*stream)
    whole = parse_all([raw])
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)])]
    assert parse_all(pieces) == whole
    assert parse_all([bytes([b]) for b in raw]) == whole  # one byte at a time
    assert len(whole) == len(stream[0])


@settings(max_examples=300, deadline=None, database=None)
@given(chunks=st.lists(st.binary(max_size=200), max_size=10))
def test_sse_parser_never_raises_but_its_size_error(chunks: list[bytes]) -> None:
    try:
        events = parse_all(chunks, max_event_bytes=256)
    except ValueError as exc:
        assert "larger than 256 bytes" in str(exc)
        return
    assert all(raw.endswith(b"\n\n") and b"\r" not in raw for raw, _ in events)


@settings(max_examples=int(os.environ.get("GS_FUZZ_RELAY_EXAMPLES", 40)), deadline=5000, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.one_of(st.binary(max_size=80), sse_stream.map(lambda s: encode_stream(*s)),
                                 st.sampled_from([b"data: [DONE]\n\n", b"data: {\"choices\": [{\"delta\": {}}]}\n\n",
                                                  b"data: {\"choices\": 5}\n\n", b"data: null\n\n", b"\r", b"\n\n"])),
                       max_size=8))
def test_relay_survives_any_upstream_stream(harness: ProxyHarness, pieces: list[bytes]) -> None:
    """Whatever bytes the upstream streams, split however, the client gets a 200 stream that ends cleanly."""
    harness.upstream.script = pieces  # type: ignore[attr-defined]
    body = json.dumps({"model": "raw-sse", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    status, raw = harness.call(_post(harness.base_url + "/v1/chat/completions", body,
                                     {**AUTH, "content-type": "application/json"}))
    assert status == 200 and b"Traceback" not in raw


# -- schema-driven fuzz of the HTTP API --------------------------------------------------------------------
def test_openapi_schema_fuzz(harness: ProxyHarness) -> None:
    """schemathesis, positive and negative cases over every operation of /openapi.json (authenticated;
    its negative mode also sends bodies the schema forbids): no 5xx, no traceback, every rejection
    OpenAI-shaped, responses and statuses as documented."""
    counts = fuzz_api(harness.base_url, AUTH, max_examples=int(os.environ.get("GS_SCHEMA_EXAMPLES", 100)))
    assert sum(counts.values()) >= 100
    assert any(" 200" in k for k in counts) and any(" 400" in k for k in counts)
