"""Request handlers for the guarded generation routes and the relayed model list."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from evaluators.spans import placeholder_spans
from proxy.comparison import PendingComparison
from proxy.connections import CONNECTIONS
from proxy.errors import (
    bad_request,
    body_too_large,
    content_filtered,
    duplicate_key,
    nested_too_deeply,
    request_timeout,
    unreadable_body,
    upstream_bad_response,
)
from proxy.jsonio import dumps, loads_checked, loads_unique
from proxy.metrics import PROXY_OVERHEAD, UPSTREAM_LATENCY, child
from proxy.policy import Decision, redacted_findings
from proxy.protocol import check_limits, parse_request
from proxy.recording import CTX, RequestContext
from proxy.request_text import redact_in_place
from proxy.resolved_policy import ResolvedPolicy
from proxy.routes import CHAT, COMPLETION, GenerationRoute, conversation_of
from proxy.state import STATE, ProxyState
from proxy.streaming import StreamRelay, StreamRequest, expected_choices
from proxy.unicode_text import clean_json, clean_text, may_hold_surrogates


async def read_json(request: web.Request, limit: int, timeout_s: float | None = None) -> Any:
    """The request body, raw and decoded: 413 over the limit, 408 when it is not all there within `timeout_s`
    (a slowloris body), 400 when it is not JSON or names a key twice."""
    if request.content_length is not None and request.content_length > limit:
        raise body_too_large(limit)
    content = request.content
    try:
        if content.is_eof():  # the usual small body arrived with the headers: no wait, no timer
            raw = content.read_nowait()
            if len(raw) > limit:
                raise body_too_large(limit)
        else:
            raw = await _read_body(content, limit, timeout_s)
    except RequestPayloadError:  # a body that does not decode (bad gzip, broken chunked encoding)
        content.feed_eof()  # nothing more to read: aiohttp must not try to drain it after the answer
        raise unreadable_body() from None
    fast = loads_unique(raw)  # orjson, when it provably reads what the stdlib would (no lone surrogates either)
    if fast is not None:
        return raw, fast
    try:
        body = json.loads(raw, object_pairs_hook=_unique_keys)
        return raw, clean_json(body) if may_hold_surrogates(raw) else body
    except DuplicateKey as exc:
        raise duplicate_key(exc.key) from None
    except (ValueError, UnicodeDecodeError):
        raise bad_request("We could not parse the JSON body of your request. The body must be valid JSON.",
                          code="invalid_json") from None
    except RecursionError:  # e.g. 100,000 nested arrays: Python's parser gives up (it was a 500)
        raise nested_too_deeply() from None


async def _read_body(content: Any, limit: int, timeout_s: float | None) -> bytes:
    """A body still arriving: read within `timeout_s` (408) and `limit` bytes (413)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await content.readany():
                size += len(chunk)
                if size > limit:
                    raise body_too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise request_timeout(timeout_s or 0) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class DuplicateKey(Exception):
    """A JSON object named `key` twice (raised from inside the parser, turned into a 400)."""

    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key named twice (Python keeps the last value, other parsers the first: the
    upstream must read what the proxy judged). Costs about 2 µs on a one-message request."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, CHAT)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, COMPLETION)


async def _generate(request: web.Request, route: GenerationRoute) -> web.StreamResponse:
    state: ProxyState = request.app[STATE]
    ctx: RequestContext = request[CTX]
    settings = state.settings
    raw, body = await read_json(request, settings.server.max_body_bytes, settings.server.body_timeout_s)
    parsed = parse_request(route.request_model, body)
    check_limits(parsed.n, route.count_messages(body), settings.server.max_n, settings.server.max_messages)
    ctx.model = parsed.model
    policy = state.guard.policy(ctx.principal.policy)  # resolved once, for every step of the request
    conversations = route.conversations(body)
    n = parsed.n or 1

    inputs = route.inputs(body)
    decisions = await _check_all(state, policy, [item for item, _ in inputs])
    for i, decision in enumerate(decisions):  # one per prompt: each audited with its own
        state.recorder.record(ctx, decision, conversation_of(conversations, 1, i), None,
                              latency_ms=decision.latency_ms)
    blocked = next((d for d in decisions if d.blocks), None)
    if blocked is not None:
        if policy.config.blocked_input == "refusal":
            return web.json_response(_refusal_body(route, parsed.model, policy.config.refusal_text, blocked,
                                                   parsed.n or 1))
        raise content_filtered("input", blocked.categories, blocked.evaluators)
    if any(d.redacts for d in decisions):  # every place a finding sits, in every message, part and prompt
        redact_in_place([(text, redacted_findings(d, policy.config)) for (_, text), d in zip(inputs, decisions)
                         if d.redacts])
        try:
            raw = json.dumps(body).encode()
        except RecursionError:  # parsed at the edge of the recursion limit: re-encoding may not fit
            raise nested_too_deeply() from None

    comparison: PendingComparison | None = None
    try:
        with state.tenants.slot(ctx.principal.tenant):  # one tenant cannot take the whole upstream pool
            # a sampled request also goes to the policy's candidate model, in the background (proxy/comparison)
            if policy.config.compare is not None:
                comparison = state.comparisons.start(ctx, policy.name, route, body, bool(parsed.stream))
            headers = state.upstream.headers(request.headers, ctx.request_id)
            started = time.perf_counter()
            upstream = await state.upstream.request("POST", route.path, raw, headers)
            child(UPSTREAM_LATENCY, route.name).observe(time.perf_counter() - started)
            streamed = upstream.status == 200 and "text/event-stream" in upstream.headers.get("content-type", "")
            if parsed.stream and streamed:
                return await _relay_stream(request, state, ctx, route, policy, conversations, n, upstream,
                                           expected_choices(route, body, parsed.n), comparison)
            try:
                payload = await state.upstream.read_body(upstream)
            finally:
                upstream.release()
        upstream_elapsed = time.perf_counter() - started
        if upstream.status != 200:
            return _relay_verbatim(upstream, payload)
        answer = await _guard_answer(state, ctx, route, policy, conversations, n, payload, comparison)
        child(PROXY_OVERHEAD, route.name).observe(max(0.0, time.perf_counter() - ctx.started - upstream_elapsed))
        return answer
    finally:
        if comparison is not None:
            comparison.abandon()  # no baseline was handed over: the request failed (harmless after one was)


async def _check_all(state: ProxyState, policy: ResolvedPolicy, items: list[Any]) -> list[Decision]:
    """Judge items concurrently; a single item (the usual case) is awaited directly, without a task."""
    if len(items) == 1:
        return [await state.guard.check(policy, items[0])]
    return list(await asyncio.gather(*(state.guard.check(policy, item) for item in items)))


def _relay_verbatim(upstream: Any, payload: bytes) -> web.Response:
    """Upstream errors reach the client as sent: same status, same body."""
    from proxy.upstream import relayed_headers

    headers = relayed_headers(upstream)
    headers.setdefault("content-type", "application/json")
    return web.Response(status=upstream.status, body=payload, headers=headers)


async def _guard_answer(state: ProxyState, ctx: RequestContext, route: GenerationRoute, policy: ResolvedPolicy,
                        conversations: list[list[dict[str, str]]], n: int, payload: bytes,
                        comparison: PendingComparison | None = None) -> web.Response:
    try:
        answer, clean = loads_checked(payload)  # clean: parsed by orjson, which refuses lone surrogates
        choices = answer["choices"]
        assert isinstance(choices, list)
    except (ValueError, KeyError, TypeError, AssertionError, RecursionError):
        raise upstream_bad_response("expected a JSON object with 'choices'") from None
    texts = [(route.choice_text(c) if clean else clean_text(route.choice_text(c))) if isinstance(c, dict) else ""
             for c in choices]
    indexes = [c.get("index", i) if isinstance(c, dict) else i for i, c in enumerate(choices)]
    continued = [conversation_of(conversations, n, index) for index in indexes]
    decisions = await _check_all(state, policy,
                                 [route.output_item(conv, text) for conv, text in zip(continued, texts)])
    if comparison is not None and texts:  # the first choice is compared, as the client got it
        comparison.baseline(texts[0], blocked=decisions[0].action == "block", decision=decisions[0])
    changed = False
    for choice, text, decision, conv, index in zip(choices, texts, decisions, continued, indexes):
        state.recorder.record(ctx, decision, conv, text, choice_index=index if isinstance(index, int) else None)
        if not isinstance(choice, dict):
            continue
        if decision.blocks:
            route.set_choice_text(choice, policy.config.refusal_text)
            choice["finish_reason"] = "content_filter"
            choice["guardrail"] = {"stage": "output", "categories": decision.categories,
                                   "evaluators": decision.evaluators}
            changed = True
        elif decision.redacts:  # each field (reasoning, content) masked where its findings are
            route.mask_choice(choice, placeholder_spans(redacted_findings(decision, policy.config), len(text)))
            changed = True
    body = dumps(answer) if changed else payload
    return web.Response(body=body, content_type="application/json")


async def _relay_stream(request: web.Request, state: ProxyState, ctx: RequestContext, route: GenerationRoute,
                        policy: ResolvedPolicy, conversations: list[list[dict[str, str]]], n: int, upstream: Any,
                        choices: int = 1, comparison: PendingComparison | None = None) -> web.StreamResponse:
    client = web.StreamResponse(status=200, headers={
        "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
        "x-accel-buffering": "no"})
    try:
        await client.prepare(request)
        relay = StreamRelay(StreamRequest(route, ctx, conversations, n, choices), policy, guard=state.guard,
                            recorder=state.recorder, upstream=upstream, client=client)
        await request.app[CONNECTIONS].relay(request, client, relay.run())
        await client.write_eof()
        _after_stream(state, ctx, route, policy, conversations, n, relay, comparison)
    except (ConnectionResetError, asyncio.CancelledError):
        upstream.close()  # client went away: stop the generation upstream
        raise
    finally:
        upstream.close()
    return client


def _after_stream(state: ProxyState, ctx: RequestContext, route: GenerationRoute, policy: ResolvedPolicy,
                  conversations: list[list[dict[str, str]]], n: int, relay: StreamRelay,
                  comparison: PendingComparison | None) -> None:
    """A finished stream's whole answers: to the whole-answer evaluators (windowed modes judge windows only) and
    to the comparison, both in the background (a choice the policy cut is compared as blocked). A stream the
    upstream broke off is neither."""
    if relay.ending not in ("done", "eof", "cut"):
        return
    answers = relay.answers()
    if relay.plan.windowed and state.after_stream.wanted(policy.name):
        state.after_stream.start(ctx, policy, route, conversations, n, answers, relay.mode)
    if comparison is not None and answers:
        text, cut = next(iter(answers.values()))
        comparison.baseline(text, blocked=cut)


def _refusal_body(route: GenerationRoute, model: str, text: str, decision: Decision, n: int) -> dict[str, Any]:
    guardrail = {"stage": "input", "categories": decision.categories, "evaluators": decision.evaluators}
    if route is CHAT:
        choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "content_filter",
                    "logprobs": None} for i in range(n)]
        obj = "chat.completion"
    else:
        choices = [{"index": i, "text": text, "finish_reason": "content_filter", "logprobs": None} for i in range(n)]
        obj = "text_completion"
    return {"id": "guardstream-refusal", "object": obj, "created": int(time.time()), "model": model,
            "choices": choices, "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "guardrail": guardrail}


async def models(request: web.Request) -> web.Response:
    state: ProxyState = request.app[STATE]
    ctx: RequestContext = request[CTX]
    with state.tenants.slot(ctx.principal.tenant):
        upstream = await state.upstream.request("GET", "/models", None,
                                                state.upstream.headers(request.headers, ctx.request_id))
        try:
            payload = await state.upstream.read_body(upstream)
        finally:
            upstream.release()
    return _relay_verbatim(upstream, payload)
