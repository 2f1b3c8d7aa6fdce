"""Text deltas read without a JSON parse (proxy/streaming/shapes.py): what a learned shape reads from an event is
always what the full parse reads from it, or nothing (the event is then parsed); and the relay's output and
audit events are the same with shapes as without, whatever the upstream sends."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proxy.streaming.relay as relay_module
from proxy.auth import ANONYMOUS
from proxy.jsonio import loads_checked
from proxy.recording import RequestContext
from proxy.routes import CHAT, COMPLETION, GenerationRoute
from proxy.streaming import StreamRelay, StreamRequest
from proxy.streaming.shapes import DeltaShape, learn
from tests.planted import PLANTED, answer_with, pieces
from tests.planted import settings as planted_settings
from tests.relay_driver import MemoryClient, MemoryUpstream, RelayDriver

ROUTES = {"chat": CHAT, "completion": COMPLETION}


def event(payload: Any, *, compact: bool = True, ascii_only: bool = False) -> bytes:
    separators = (",", ":") if compact else (", ", ": ")
    text = json.dumps(payload, separators=separators, ensure_ascii=ascii_only)
    return b"data: " + text.encode("utf-8", "surrogatepass") + b"\n\n"  # a lone surrogate as invalid UTF-8


def chat(text: Any, index: int = 0, **extra: Any) -> dict[str, Any]:
    delta = extra.pop("delta", {"content": text})
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": extra.pop("finish_reason", None)}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [choice], **extra}


def slow(route: GenerationRoute, raw: bytes) -> tuple[int, str, bool] | None:
    """What the relay's full parse reads from a one-choice event: (index, text, finish); None otherwise."""
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    try:
        payload, clean = loads_checked(raw[6:-2].decode("utf-8", "replace"))
    except ValueError:
        return None
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return None
    obj = choices[0]
    index = obj.get("index", 0)
    return (index if isinstance(index, int) else 0), route.delta_text(obj), bool(obj.get("finish_reason"))


def learned(route: str, raw: bytes) -> DeltaShape | None:
    read = slow(ROUTES[route], raw)
    assert read is not None and read[1] and not read[2]
    return learn(raw, read[1], read[0], route, ROUTES[route].delta_text)


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("ascii_only", [True, False])
def test_a_learned_shape_reads_the_next_deltas(compact: bool, ascii_only: bool) -> None:
    shape = learned("chat", event(chat("Hello"), compact=compact, ascii_only=ascii_only))
    assert shape is not None
    for text in [" world", "", 'quote " and \\ back', "é ü 😀 \u2028", "\x00\x1f control", "{}\"},]"]:
        assert shape.text_of(event(chat(text), compact=compact, ascii_only=ascii_only)) == text
    assert shape.text_of(event(chat("x", finish_reason="stop"), compact=compact)) is None
    assert shape.text_of(event(chat("x", index=1), compact=compact)) is None
    assert shape.text_of(event(chat(None, delta={"role": "assistant", "content": "x"}), compact=compact)) is None
    assert shape.text_of(b"data: [DONE]\n\n") is None


def test_completions_shape() -> None:
    def completion(text: str) -> dict[str, Any]:
        return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": None}]}

    shape = learned("completion", event(completion("Once")))
    assert shape is not None and shape.text_of(event(completion(" upon"))) == " upon"


@pytest.mark.parametrize("raw", [
    # the key written with an escape: the only literal `"content"` is a decoy with the same text
    b'data: {"choices":[{"index":0,"delta":{"con\\u0074ent":"hi"}}],"note":{"content":"hi"}}\n\n',
    # the text is in reasoning too: the content alone is not the text
    b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"a","content":"hi"}}]}\n\n',
])
def test_no_shape_where_the_string_is_not_the_whole_text(raw: bytes) -> None:
    assert learned("chat", raw) is None


def test_a_key_named_twice_is_read_where_the_parser_reads_it() -> None:
    shape = learned("chat", b'data: {"choices":[{"index":0,"delta":{"content":"hi","content":"hi"}}]}\n\n')
    assert shape is not None
    raw = b'data: {"choices":[{"index":0,"delta":{"content":"hi","content":"other"}}]}\n\n'
    assert shape.text_of(raw) == "other" == slow(CHAT, raw)[1]  # type: ignore[index]  # a one-choice event: read


def test_a_lone_surrogate_is_parsed_not_read() -> None:
    shape = learned("chat", event(chat("ok"), ascii_only=True))
    assert shape is not None
    raw = event(chat("\ud800"), ascii_only=True)  # json writes the lone surrogate as an escape
    assert shape.text_of(raw) is None  # orjson refuses it: the full parse (and clean_text) take it


# -- the property: a shape reads what the parser reads, or nothing ------------------------------------------------

texts = st.text(max_size=12) | st.sampled_from(['"', "\\", '\\"', '","content":"', "😀", "\ud800", ""])
values = st.none() | st.booleans() | st.integers(-2, 3) | texts
extras = st.dictionaries(st.sampled_from(["usage", "system_fingerprint", "obfuscation", "content", "text"]),
                         values | st.dictionaries(st.sampled_from(["content", "text", "x"]), values, max_size=2),
                         max_size=2)
deltas = st.fixed_dictionaries({"content": texts}, optional={
    "role": st.sampled_from(["assistant", None]), "reasoning_content": texts, "reasoning": texts,
    "tool_calls": st.lists(st.fixed_dictionaries({"index": st.integers(0, 1), "function": st.fixed_dictionaries(
        {"arguments": texts})}), max_size=1)})
choices = st.fixed_dictionaries({"index": st.integers(0, 2) | st.none() | texts, "delta": deltas},
                                optional={"finish_reason": st.none() | st.sampled_from(["stop", ""]),
                                          "logprobs": st.none() | st.fixed_dictionaries({"content": st.lists(texts,
                                                                                                       max_size=2)}),
                                          "text": texts, "content": texts})


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    body = {"id": "c", "object": "chat.completion.chunk", **draw(extras)}
    body["choices"] = draw(st.lists(choices, min_size=0, max_size=2)) if draw(st.integers(0, 9)) == 0 \
        else [draw(choices)]
    return body


def mutate(draw: st.DrawFn, payload: dict[str, Any]) -> dict[str, Any]:
    """The same event with another text (usually), and sometimes another field changed too."""
    other = json.loads(json.dumps(payload))
    if other["choices"] and isinstance(other["choices"][0].get("delta"), dict):
        other["choices"][0]["delta"]["content"] = draw(texts)
    if draw(st.booleans()):
        other.update(draw(extras))
    if draw(st.integers(0, 4)) == 0 and other["choices"]:
        other["choices"][0].update(draw(choices))
    return other


@settings(max_examples=1500, deadline=None, database=None)
@given(data=st.data(), compact=st.booleans(), ascii_only=st.booleans())
def test_a_shape_reads_what_the_parser_reads_or_nothing(data: st.DataObject, compact: bool, ascii_only: bool) -> None:
    first = data.draw(payloads())
    raw = event(first, compact=compact, ascii_only=ascii_only)
    read = slow(CHAT, raw)
    if read is None or not read[1] or read[2]:
        return  # the relay learns only from a one-choice text delta that does not finish
    shape = learn(raw, read[1], read[0], "chat", CHAT.delta_text)
    if shape is None:
        return
    assert shape.index == read[0]
    for _ in range(4):
        later = event(mutate(data.draw, first), compact=data.draw(st.booleans()) and compact, ascii_only=ascii_only)
        text = shape.text_of(later)
        if text is not None:
            assert slow(CHAT, later) == (shape.index, text, False)


# -- the relay: the same bytes and audit events with shapes as without ---------------------------------------------

def untimed(value: Any) -> Any:
    """An audit event without what differs between two runs of the same stream (times, ids)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in ("ts", "latency_ms", "event_id")}
    return [untimed(v) for v in value] if isinstance(value, list) else value


def relay_run(driver: RelayDriver, policy: str, reads: list[bytes]) -> tuple[bytes, list[Any]]:
    async def run() -> tuple[bytes, list[Any]]:
        loop = asyncio.get_running_loop()
        upstream, client = MemoryUpstream(loop), MemoryClient()
        ctx = RequestContext(request_id="r", principal=ANONYMOUS, route="/v1/chat/completions", model="m",
                             started=0.0)
        before = len(driver.sink.events)
        relay = StreamRelay(StreamRequest(CHAT, ctx, [[{"role": "user", "content": "go"}]], n=2, choices=2),
                            driver.guard.policy(policy), guard=driver.guard, recorder=driver.recorder,
                            upstream=upstream, client=client)  # type: ignore[arg-type]  # in-memory stand-ins
        task = asyncio.create_task(relay.run())
        for data in reads:
            if task.done():
                break
            upstream.content.feed_data(data)
            await asyncio.sleep(0)
        upstream.content.feed_eof()
        await asyncio.wait_for(task, 10)
        return bytes(client.data), [untimed(e) for e in driver.sink.events[before:]]

    return asyncio.run(run())


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> RelayDriver:
    return RelayDriver(planted_settings(tmp_path_factory.mktemp("shapes")))


@pytest.mark.parametrize("policy", ["rules-buffered", "rules-optimistic", "rules-final", "both-buffered",
                                    "redact-buffered"])
@pytest.mark.parametrize("kind", ["pem_rsa", "jwt", "github_token", "email", "card_spaced", "password"])
def test_the_relay_sends_and_audits_the_same_with_shapes(driver: RelayDriver, kind: str, policy: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Two choices interleaved (one compact, one spaced JSON), tool calls and keep-alives between text deltas, cut
    into reads anywhere: choice 0 carries the planted secret, choice 1 a safe answer."""
    rng = random.Random(kind)
    read_without_parse = []
    on_deltas = StreamRelay._on_deltas
    monkeypatch.setattr(StreamRelay, "_on_deltas", lambda self, *a: (read_without_parse.append(a), on_deltas(self, *a)))
    for offset in (0, 7, 30):
        streams = [pieces(answer_with(PLANTED[kind], offset), rng.choice([1, 3, 0]), rng),
                   pieces("Nothing to see here, just an ordinary answer. " * 3, 0, rng)]
        events = [event(chat(None, index=i, delta={"role": "assistant", "content": ""})) for i in (0, 1)]
        while any(streams):
            i = rng.choice([i for i in (0, 1) if streams[i]])
            piece = streams[i].pop(0)
            events.append(event(chat(piece, index=i), compact=i == 0))
            if rng.random() < 0.1:
                events.append(event(chat(None, index=i, delta={"tool_calls": [{"index": 0, "function": {
                    "arguments": piece}}]})))
            if rng.random() < 0.05:
                events.append(b": keep-alive\n\n")
        events += [event(chat(None, index=i, delta={}, finish_reason="stop")) for i in (0, 1)]
        events.append(b"data: [DONE]\n\n")
        cuts = sorted(rng.sample(range(1, len(events)), len(events) // 3))
        reads = [b"".join(events[a:b]) for a, b in zip([0, *cuts], [*cuts, len(events)])]
        read_without_parse.clear()
        with_shapes = relay_run(driver, policy, reads)
        assert read_without_parse  # the shapes were used
        monkeypatch.setattr(relay_module, "_MAX_LEARNS", 0)
        without = relay_run(driver, policy, reads)
        monkeypatch.setattr(relay_module, "_MAX_LEARNS", 16)
        assert with_shapes == without
        blocks = policy != "redact-buffered"
        assert (b'"content_filter"' in with_shapes[0]) == blocks
        assert any(e["action"] == ("block" if blocks else "redact") for e in with_shapes[1])
