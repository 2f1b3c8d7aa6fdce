"""Streaming moderation end to end: the openai SDK and a raw client against the proxy and a scripted upstream.

The upstream sends one word per chunk; token K of the answer is the unsafe word.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import openai
import pytest

from proxy.demo_upstream import DemoUpstream
from proxy.schemas.events import validation_errors
from tests.stream_client import (
    UNSAFE,
    audit_events,
    chat_body,
    evaluator,
    finishes,
    payloads,
    raw_stream,
    sse_events,
    start,
    texts,
    tokens,
    wait_for,
)

C = 16  # chunk_size
K = 40  # the unsafe token: in window 2, tokens [32, 48)
TOTAL = 400
HELD = 4  # context_size: buffered mode keeps the last approved tokens until the next window's verdict
PASSED = 2 * C - HELD  # tokens released before window 2 is cut: windows 0 and 1, less what was held back


def sdk(h) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)


def sdk_stream(h, model: str = "demo-model", **kw):  # type: ignore[no-untyped-def]
    """(text, finish_reason, last chunk) of a one-choice chat stream, read with the openai SDK."""
    stream = sdk(h).chat.completions.create(model=model, messages=[{"role": "user", "content": "go"}],
                                            stream=True, **kw)
    text, finish, last = "", None, None
    for chunk in stream:
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
        last = chunk
    return text, finish, last


def _normalise(event: bytes) -> bytes:
    return re.sub(rb'"(id|created)": ("[^"]*"|\d+)', rb'"\1": X', event)


def test_buffered_never_leaks_unsafe_text(tmp_path: Path) -> None:
    answer = tokens(TOTAL, unsafe_at=K)
    h = start(tmp_path, "buffered", chunk=C, answer=answer)
    try:
        text, finish, last = sdk_stream(h)
        approved = "".join(w + " " for w in answer.split(" ")[:PASSED])  # windows 0 and 1 passed
        assert text == approved and finish == "content_filter"
        assert last.model_extra["guardrail"] == {"stage": "output", "categories": ["secret"],
                                                 "evaluators": ["secrets"]}
        # generation stopped: the upstream saw its client go away before the end of the answer
        assert wait_for(lambda: h.upstream.disconnects == 1) and h.upstream.streams_finished == 0

        raw = raw_stream(h, chat_body())
        assert UNSAFE.encode() not in raw and b"t41" not in raw
        events = sse_events(raw)
        assert events[-1] == b"data: [DONE]\n\n"
        assert json.loads(events[-2][6:])["choices"] == [{"index": 0, "finish_reason": "content_filter",
                                                          "delta": {}}]
        # released text is the upstream's own events, byte for byte (same framing), in order
        direct = sse_events(raw_stream(h, chat_body(), direct=True))
        assert [_normalise(e) for e in events[:-2]] == [_normalise(e) for e in direct[:1 + PASSED]]
    finally:
        h.stop()


def test_buffered_cut_is_audited_and_counted(tmp_path: Path) -> None:
    h = start(tmp_path, "buffered", chunk=C, answer=tokens(120, unsafe_at=K))
    try:
        sdk_stream(h)
        events = [e for e in audit_events(h) if e["stage"] == "output"]
        assert len(events) == 1 and validation_errors(events[0]) == []
        event = events[0]
        assert (event["action"], event["stream_mode"], event["choice_index"], event["categories"]) == \
            ("block", "buffered", 0, ["secret"])
        assert event["content"]["completion"].endswith(f"{UNSAFE} t41 t42 t43 t44 t45 t46 t47 ")
        metrics = h.call(_get(h.base_url + "/metrics"))
        assert 'guardstream_stream_cuts_total{mode="buffered"}' in metrics
        assert 'guardstream_stream_windows_evaluated_total{mode="buffered"}' in metrics
    finally:
        h.stop()


@pytest.mark.parametrize("delay_ms", [0, 30])
def test_optimistic_leaks_at_most_one_window(tmp_path: Path, delay_ms: float) -> None:
    h = start(tmp_path, "optimistic", chunk=C, answer=tokens(TOTAL, unsafe_at=K), delay_ms=delay_ms)
    try:
        text, finish, _ = sdk_stream(h)
        received = text.split()
        assert finish == "content_filter"
        if delay_ms == 0:
            assert UNSAFE in received  # optimistic: the window holding it went out before its verdict
        leaked = len(received) - K
        assert leaked <= C  # ...but never more than one window of unsafe text, however slow the evaluator
        assert wait_for(lambda: h.upstream.disconnects == 1) and h.upstream.streams_finished == 0
        assert [e["stream_mode"] for e in audit_events(h) if e["action"] == "block"] == ["optimistic"]
    finally:
        h.stop()


def test_final_mode_forwards_everything_and_ends_with_content_filter(tmp_path: Path) -> None:
    answer = tokens(100, unsafe_at=K)
    h = start(tmp_path, "final", chunk=C, answer=answer)
    try:
        text, finish, _ = sdk_stream(h)
        assert text == answer and finish == "content_filter"
        assert evaluator(h).calls == 1  # one evaluation, at the end
        events = [e for e in audit_events(h) if e["stage"] == "output"]
        assert [(e["action"], e["stream_mode"]) for e in events] == [("block", "final")]
        text, finish, _ = sdk_stream(h, extra_body={"stream": True})  # cached verdict, same outcome
        assert finish == "content_filter"
    finally:
        h.stop()


def test_off_mode_is_a_plain_relay(tmp_path: Path) -> None:
    answer = tokens(60, unsafe_at=K)
    h = start(tmp_path, "off", chunk=C, answer=answer)
    try:
        raw = raw_stream(h, chat_body())
        assert [_normalise(e) for e in sse_events(raw)] == \
            [_normalise(e) for e in sse_events(raw_stream(h, chat_body(), direct=True))]
        assert texts(raw) == {0: answer} and evaluator(h).calls == 0
    finally:
        h.stop()


def test_shadow_policy_defaults_to_final_and_never_cuts(tmp_path: Path) -> None:
    answer = tokens(60, unsafe_at=K)
    h = start(tmp_path, None, chunk=C, answer=answer, policy={"mode": "shadow"})
    try:
        text, finish, _ = sdk_stream(h)
        assert text == answer and finish == "stop"
        events = [e for e in audit_events(h) if e["stage"] == "output"]
        assert [(e["action"], e["mode"], e["stream_mode"]) for e in events] == [("block", "shadow", "final")]
    finally:
        h.stop()


def test_unsafe_phrase_split_across_two_windows_never_reaches_the_client(tmp_path: Path) -> None:
    """"make a bomb" with "make a" ending window 0 and "bomb" starting window 1: window 0 alone is safe, and
    window 1 is judged with window 0's last tokens as context. Those tokens are still held (holdback), so the
    cut drops them: no part of the phrase is shown. Before the holdback, "make a" had been released."""
    words = [f"t{i}" for i in range(C - 2)] + ["make", "a", "bomb"] + [f"u{i}" for i in range(40)]
    h = start(tmp_path, "buffered", chunk=C, context=HELD, answer=" ".join(words), words=("make a bomb",))
    try:
        raw = raw_stream(h, chat_body())
        assert finishes(raw) == {0: "content_filter"}
        assert texts(raw)[0] == "".join(w + " " for w in words[:C - HELD])
        assert b"make" not in raw
    finally:
        h.stop()


def test_enforcing_policy_defaults_to_buffered_and_refusal_text_is_optional(tmp_path: Path) -> None:
    h = start(tmp_path, None, chunk=C, answer=tokens(60, unsafe_at=K),
              policy={"refusal_text": "Sorry, no.", "output": {"evaluators": ["secrets"], "streaming": {
                  "chunk_size": C, "first_chunk_size": C, "context_size": HELD, "refusal": True}}})
    try:
        text, finish, _ = sdk_stream(h)
        assert UNSAFE not in text and text.endswith(f"t{PASSED - 1} Sorry, no.") and finish == "content_filter"
        assert audit_events(h)[0]["stream_mode"] == "buffered"
    finally:
        h.stop()


def test_safe_answer_passes_whole_in_every_windowed_mode(tmp_path: Path) -> None:
    answer = tokens(50)
    for mode in ("buffered", "optimistic"):
        h = start(tmp_path / mode, mode, chunk=C, answer=answer)
        try:
            raw = raw_stream(h, chat_body(stream_options={"include_usage": True}))
            assert texts(raw) == {0: answer} and finishes(raw) == {0: "stop"}
            last = payloads(raw)[-1]
            assert last["choices"] == [] and last["usage"]["completion_tokens"] == 50  # usage after everything
            assert sse_events(raw)[-1] == b"data: [DONE]\n\n"
            assert evaluator(h).calls == 4  # 16 + 16 + 16 + the final 2 tokens
            assert h.upstream.streams_finished == 1
        finally:
            h.stop()


def test_completions_stream_is_moderated(tmp_path: Path) -> None:
    answer = tokens(80, unsafe_at=K)
    h = start(tmp_path, "buffered", chunk=C, answer=answer)
    try:
        chunks = list(sdk(h).completions.create(model="demo-model", prompt="go", stream=True))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        assert text == "".join(w + " " for w in answer.split(" ")[:PASSED])
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        assert chunks[-1].object == "text_completion"
    finally:
        h.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_batched_completion_prompts_are_each_judged_with_their_own_prompt(tmp_path: Path, stream: bool) -> None:
    """`/v1/completions` with two prompts and n=2: choices 0-1 continue prompt 0, choices 2-3 prompt 1. Each
    prompt's input event, and each answer's output event, carries its own prompt (they all carried the first)."""
    prompts = ["say hi", "write to me at a@example.com"]
    answers = ["hi", "hello", "sure: b@example.com", "done"]
    h = start(tmp_path, "buffered", chunk=C, upstream=DemoUpstream(answer=lambda body: answers),
              policy={"input": {"evaluators": ["pii"]}, "output": {"evaluators": ["pii"]},
                      "actions": {"pii": "flag", "default": "block"}},
              evaluators_extra={"pii": {"type": "keyword", "options": {"words": ["@example.com"], "category": "pii"}}})
    try:
        result = sdk(h).completions.create(model="demo-model", prompt=prompts, n=2, stream=stream)
        if stream:
            got: dict[int, str] = {}
            for chunk in result:
                for c in chunk.choices:
                    got[c.index] = got.get(c.index, "") + c.text
        else:
            got = {c.index: c.text for c in result.choices}
        assert got == dict(enumerate(answers))
        events = audit_events(h)
        flagged_input = [e for e in events if e["stage"] == "input"]
        assert [e["content"]["messages"][0]["content"] for e in flagged_input] == [prompts[1]]
        flagged_output = [e for e in events if e["stage"] == "output"]
        assert [(e["choice_index"], e["content"]["messages"][0]["content"]) for e in flagged_output] == [
            (2, prompts[1])]
    finally:
        h.stop()


def test_multi_choice_cut_one_the_other_completes(tmp_path: Path) -> None:
    safe = tokens(60, prefix="s")
    h = start(tmp_path, "buffered", chunk=C, answer=[tokens(60, unsafe_at=K), safe])
    try:
        stream = sdk(h).chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "go"}],
                                                stream=True, n=2, stream_options={"include_usage": True})
        got: dict[int, str] = {}
        done: dict[int, str] = {}
        chunks = list(stream)
        for chunk in chunks:
            for c in chunk.choices:
                got[c.index] = got.get(c.index, "") + (c.delta.content or "")
                if c.finish_reason:
                    done[c.index] = c.finish_reason
        assert done == {0: "content_filter", 1: "stop"}
        assert got[1] == safe and UNSAFE not in got[0] and len(got[0].split()) == PASSED
        assert chunks[-1].usage is not None and not chunks[-1].choices  # usage still comes, last
        assert h.upstream.streams_finished == 1  # choice 1 was still wanted: no early close
        assert [e["choice_index"] for e in audit_events(h) if e["action"] == "block"] == [0]
    finally:
        h.stop()


def test_multi_choice_all_cut_closes_upstream(tmp_path: Path) -> None:
    h = start(tmp_path, "buffered", chunk=C, answer=[tokens(TOTAL, unsafe_at=K), tokens(TOTAL, unsafe_at=20)])
    try:
        raw = raw_stream(h, chat_body(n=2))
        assert finishes(raw) == {0: "content_filter", 1: "content_filter"}
        assert UNSAFE.encode() not in raw and raw.endswith(b"data: [DONE]\n\n")
        assert wait_for(lambda: h.upstream.disconnects == 1) and h.upstream.streams_finished == 0
    finally:
        h.stop()


def test_tool_call_deltas_pass_through_in_order(tmp_path: Path) -> None:
    upstream = DemoUpstream(answer=lambda b: tokens(10), tool_arguments='{"q": "' + UNSAFE + '"}',
                            chunk_delay_s=0.001)
    h = start(tmp_path, "buffered", chunk=64, upstream=upstream)
    try:
        tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
        raw = raw_stream(h, chat_body(tools=tools))
        kinds = []
        for p in payloads(raw):
            delta = p["choices"][0]["delta"]
            kinds.append("tool" if "tool_calls" in delta else "role" if "role" in delta else
                         "text" if delta.get("content") else "finish")
        # the held text (one window, judged at the finish) still comes before the tool call
        assert kinds[:11] == ["role"] + ["text"] * 10 and kinds[-1] == "finish"
        assert len(kinds) > 13 and set(kinds[11:-1]) == {"tool"}
        assert finishes(raw) == {0: "tool_calls"}  # tool-call arguments are not judged text

        stream = sdk(h).chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "go"}],
                                                stream=True, tools=tools)
        args, name = "", None
        for chunk in stream:
            for tc in chunk.choices[0].delta.tool_calls or []:
                name = tc.function.name or name
                args += tc.function.arguments or ""
        assert name == "lookup" and json.loads(args) == {"q": UNSAFE}
    finally:
        h.stop()


def test_unsafe_text_before_a_tool_call_drops_the_call(tmp_path: Path) -> None:
    upstream = DemoUpstream(answer=lambda b: tokens(10, unsafe_at=3), chunk_delay_s=0.001)
    h = start(tmp_path, "buffered", chunk=64, upstream=upstream)
    try:
        raw = raw_stream(h, chat_body(tools=[{"type": "function", "function": {"name": "lookup"}}]))
        assert b"tool_calls" not in raw and UNSAFE.encode() not in raw
        assert finishes(raw) == {0: "content_filter"}
    finally:
        h.stop()


def test_reasoning_is_judged_like_the_answer(tmp_path: Path) -> None:
    """Reasoning models stream their thinking (`reasoning_content`) before the answer, and clients show it:
    in buffered mode unsafe thinking is cut like unsafe text; a blocked non-streamed answer loses its reasoning
    along with its content."""
    upstream = DemoUpstream(answer=lambda b: tokens(20), reasoning=tokens(60, unsafe_at=45, prefix="r"),
                            chunk_delay_s=0.001)
    h = start(tmp_path, "buffered", chunk=C, upstream=upstream)
    try:
        raw = raw_stream(h, chat_body())
        assert UNSAFE.encode() not in raw and finishes(raw) == {0: "content_filter"}
        thinking = "".join(p["choices"][0]["delta"].get("reasoning_content") or "" for p in payloads(raw)
                           if p.get("choices"))
        assert thinking == "".join(w + " " for w in tokens(60, prefix="r").split(" ")[:PASSED])
        assert texts(raw)[0] == ""  # the answer never started

        answer = sdk(h).chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "go"}])
        message = answer.choices[0].message
        assert answer.choices[0].finish_reason == "content_filter" and UNSAFE not in answer.model_dump_json()
        assert "reasoning_content" not in (message.model_extra or {})

        upstream.reasoning = tokens(60, prefix="r")  # safe thinking passes, byte for byte
        raw = raw_stream(h, chat_body())
        assert finishes(raw) == {0: "stop"} and texts(raw)[0] == tokens(20)
        assert raw.count(b'"reasoning_content"') == 60
    finally:
        h.stop()


def test_keep_alive_comments_are_relayed(tmp_path: Path) -> None:
    upstream = DemoUpstream(answer=lambda b: tokens(40), keepalive_every=5, chunk_delay_s=0.001)
    h = start(tmp_path, "buffered", chunk=C, upstream=upstream)
    try:
        raw = raw_stream(h, chat_body())
        assert raw.count(b": keep-alive\n\n") == 8 and texts(raw) == {0: tokens(40)}
        text, finish, _ = sdk_stream(h)
        assert text == tokens(40) and finish == "stop"
    finally:
        h.stop()


@pytest.mark.parametrize("mode", ["buffered", "optimistic"])
def test_upstream_error_event_mid_stream_releases_nothing_unjudged(tmp_path: Path, mode: str) -> None:
    h = start(tmp_path, mode, chunk=C, answer=tokens(100), chunk_delay_s=0.002)
    try:
        raw = raw_stream(h, chat_body(model="stream-error"))
        received = texts(raw).get(0, "").split()
        assert received == tokens(len(received)).split() and 0 < len(received) <= 50
        if mode == "buffered":
            # the error came after token 49: only judged windows went out (less the held-back tail of the last
            # one, never followed by a judged window), tokens 48-49 were never judged
            assert b"t49" not in raw and (len(received) + HELD) % C == 0
        assert payloads(raw)[-1]["error"]["message"] == "upstream failed mid-stream"
        assert raw.endswith(b"data: [DONE]\n\n") and "finish" not in json.dumps(finishes(raw))
        with pytest.raises(openai.APIError, match="upstream failed mid-stream"):
            sdk_stream(h, model="stream-error")
    finally:
        h.stop()


def test_upstream_dropping_the_connection_releases_nothing_unjudged(tmp_path: Path) -> None:
    h = start(tmp_path, "buffered", chunk=C, answer=tokens(100), chunk_delay_s=0.002)
    try:
        raw = raw_stream(h, chat_body(model="cut-stream"))
        received = texts(raw).get(0, "").split()
        assert b"t49" not in raw and (not received or (len(received) + HELD) % C == 0) and len(received) <= 44
        assert b"upstream_stream_interrupted" in raw and b"[DONE]" not in raw
    finally:
        h.stop()


async def _get(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            return await r.text()
