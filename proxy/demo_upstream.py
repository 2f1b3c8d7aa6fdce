"""A small OpenAI-compatible upstream: for the demo, the tests and the benchmarks.

It answers `/v1/chat/completions`, `/v1/completions` and `/v1/models`, streaming
or not, with a configurable answer, chunk count and inter-chunk delay. Special
model names inject faults: `error-<status>` answers that HTTP status with an
OpenAI error body, `cut-stream` drops the connection mid-stream, `garbage`
returns a non-JSON body, `stream-error` sends an error event halfway through
a stream (as vLLM does). A request with `tools` gets a tool call after the
text; `keepalive_every` adds SSE comments; an answer function may return one
text per choice. It records the requests it saw and the streams whose
client went away, so tests can check what reached the upstream.

Run on its own, it is a fake model to try the proxy with (see README.md):

    python -m proxy.demo_upstream --port 8000 [--reply TEXT | --echo | --replies FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from evaluators.base import content_text

AnswerFn = Callable[[dict[str, Any]], "str | list[str]"]

DEMO_PRIVATE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7demoKEYdemoKEYdemoKEYdemoKEYdemoKEY\n"
                    "-----END RSA PRIVATE KEY-----")


def demo_answer(body: dict[str, Any]) -> str:
    """Canned answers that exercise the default policy."""
    prompt = last_prompt(body).lower()
    if "deploy key" in prompt or "private key" in prompt:
        return f"Here is the deploy key from the config repo:\n{DEMO_PRIVATE_KEY}"
    if "support contact" in prompt:
        return "You can reach our support lead at jane.doe@example.com or +1 415 555 0132."
    if "capital of france" in prompt:
        return "The capital of France is Paris."
    return "Here is a short, helpful answer to your question. " * 2


def last_prompt(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        return content_text(messages[-1].get("content")) if isinstance(messages[-1], dict) else ""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return " ".join(p for p in prompt if isinstance(p, str))
    return prompt if isinstance(prompt, str) else ""


def split_chunks(text: str, count: int | None) -> list[str]:
    """Split an answer into `count` pieces (default: one per word, spaces kept)."""
    if count is None:
        words = text.split(" ")
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    count = max(1, count)
    size = max(1, -(-len(text) // count))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


@dataclass
class DemoUpstream:
    """A scriptable OpenAI-compatible server."""

    answer: AnswerFn = demo_answer
    chunks: int | None = None
    chunk_delay_s: float = 0.0
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    disconnects: int = 0
    streams_finished: int = 0
    record: bool = True
    keepalive_every: int = 0  # a `: keep-alive` comment after every this many content chunks (0: none)
    tool_arguments: str = '{"city": "Paris"}'
    reasoning: str = ""  # chat answers think first (vLLM's `reasoning_content`), a word per chunk when streamed

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]  # started above, so the server exists
        actual = sockets[0].getsockname()[1]
        return runner, f"http://{host}:{actual}"

    async def _models(self, request: web.Request) -> web.Response:
        self._record(request, None)
        return web.json_response({"object": "list", "data": [
            {"id": "demo-model", "object": "model", "created": 0, "owned_by": "guardstream-demo"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    def _record(self, request: web.Request, body: Any) -> None:
        if self.record:
            self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body = await request.json()
        self._record(request, body)
        model = str(body.get("model", "demo-model"))
        if model.startswith("error-"):
            status = int(model.split("-", 1)[1])
            return web.json_response({"error": {"message": f"upstream says {status}", "type": "server_error",
                                                "param": None, "code": f"upstream_{status}"}}, status=status)
        if model == "garbage":
            return web.Response(body=b"<html>not json</html>", content_type="text/html")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        answer = self.answer(body)
        prompt = None if chat else body.get("prompt")
        prompts = len(prompt) if isinstance(prompt, list) and prompt and isinstance(prompt[0], str) else 1
        n = int(body.get("n") or 1) * prompts  # completions: n choices per prompt, in prompt order
        texts = [answer] * n if isinstance(answer, str) else [answer[i % len(answer)] for i in range(n)]
        if body.get("stream"):
            return await self._stream(request, body, texts, chat, model)
        return web.json_response(self._completion(texts, chat, model))

    def _completion(self, texts: list[str], chat: bool, model: str) -> dict[str, Any]:
        choices: list[dict[str, Any]] = []
        for i, text in enumerate(texts):
            if chat:
                message = {"role": "assistant", "content": text, **({"reasoning_content": self.reasoning}
                                                                    if self.reasoning else {})}
                choices.append({"index": i, "message": message, "finish_reason": "stop", "logprobs": None})
            else:
                choices.append({"index": i, "text": text, "finish_reason": "stop", "logprobs": None})
        tokens = sum(len(text.split()) for text in texts)
        return {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": model, "choices": choices,
                "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}}

    async def _stream(self, request: web.Request, body: dict[str, Any], texts: list[str], chat: bool,
                      model: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        ident, created = f"cmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            payload = {"id": ident, "object": obj, "created": created, "model": model, "choices": choices, **extra}
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        n = len(texts)
        per_choice = [split_chunks(t, self.chunks) for t in texts]
        pieces = max(per_choice, key=len)
        tools = chat and bool(body.get("tools"))
        try:
            if chat:
                for i in range(n):
                    await response.write(event([{"index": i, "delta": {"role": "assistant", "content": ""},
                                                 "finish_reason": None}]))
                for word in re.findall(r"\S+\s*", self.reasoning):
                    for i in range(n):
                        await response.write(event([{"index": i, "delta": {"reasoning_content": word},
                                                     "finish_reason": None}]))
                    if self.chunk_delay_s:
                        await asyncio.sleep(self.chunk_delay_s)
            for k, piece in enumerate(pieces):
                if model == "cut-stream" and k == len(pieces) // 2:
                    request.transport.close()  # type: ignore[union-attr]  # a request being answered has its transport
                    return response
                if model == "stream-error" and k == len(pieces) // 2:
                    await response.write(b"data: " + json.dumps({"error": {
                        "message": "upstream failed mid-stream", "type": "server_error", "param": None,
                        "code": 500}}).encode() + b"\n\ndata: [DONE]\n\n")
                    await response.write_eof()
                    return response
                for i in range(n):
                    if k >= len(per_choice[i]):
                        continue
                    piece = per_choice[i][k]
                    choice = ({"index": i, "delta": {"content": piece}, "finish_reason": None} if chat
                              else {"index": i, "text": piece, "finish_reason": None})
                    await response.write(event([choice]))
                if self.keepalive_every and (k + 1) % self.keepalive_every == 0:
                    await response.write(b": keep-alive\n\n")
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
            for i in range(n):
                if tools:
                    for delta in self._tool_call_deltas(body):
                        await response.write(event([{"index": i, "delta": delta, "finish_reason": None}]))
                final = ({"index": i, "delta": {}, "finish_reason": "tool_calls" if tools else "stop"} if chat
                         else {"index": i, "text": "", "finish_reason": "stop"})
                await response.write(event([final]))
            options = body.get("stream_options") or {}
            if options.get("include_usage"):
                tokens = len(pieces) * n
                await response.write(event([], usage={"prompt_tokens": 5, "completion_tokens": tokens,
                                                      "total_tokens": 5 + tokens}))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            self.streams_finished += 1
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects += 1
            raise
        return response

    def _tool_call_deltas(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """A call of the first tool, OpenAI style: id, type and name first, then the arguments in pieces."""
        tool = body["tools"][0] if isinstance(body["tools"][0], dict) else {}
        name = str((tool.get("function") or {}).get("name", "tool"))
        args = self.tool_arguments
        third = max(1, len(args) // 3)
        deltas: list[dict[str, Any]] = [{"tool_calls": [{"index": 0, "id": "call_demo", "type": "function",
                                                         "function": {"name": name, "arguments": ""}}]}]
        for j in range(0, len(args), third):
            deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": args[j:j + third]}}]})
        return deltas


# -- `python -m proxy.demo_upstream` -------------------------------------------------------------------

#: in a replies file, the answer when no phrase matches (without it: the built-in demo answers)
CATCH_ALL = "*"


def replies_answer(replies: Mapping[str, str]) -> AnswerFn:
    """Answer with the reply of the first phrase (in file order) found in the last prompt, case-insensitively;
    else the `*` reply; else the built-in demo answers."""
    phrases = [(phrase.lower(), reply) for phrase, reply in replies.items() if phrase != CATCH_ALL]

    def answer(body: dict[str, Any]) -> str:
        prompt = last_prompt(body).lower()
        found = next((reply for phrase, reply in phrases if phrase in prompt), replies.get(CATCH_ALL))
        return found if found is not None else demo_answer(body)

    return answer


def load_replies(path: str) -> dict[str, str]:
    """A YAML or JSON mapping of phrase -> answer; ValueError with one line saying what is wrong."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML or JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: must map phrases to answers (strings to strings), e.g. "
                         f"{{\"capital of france\": \"Paris.\", \"*\": \"anything else\"}}")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.demo_upstream",
                                     description="An OpenAI-compatible fake model: /v1/chat/completions, "
                                                 "/v1/completions and /v1/models, streamed or not.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (default: 8000, the "
                                                                 "built-in policy's upstream)")
    answer = parser.add_mutually_exclusive_group()
    answer.add_argument("--reply", help="answer every request with this text")
    answer.add_argument("--echo", action="store_true", help="answer with the last prompt")
    answer.add_argument("--replies", metavar="FILE", help="YAML or JSON mapping of phrase -> answer: the first "
                        "phrase found in the last prompt picks the answer, '*' answers the rest")
    parser.add_argument("--chunks", type=int, default=None, help="stream an answer in this many chunks "
                        "(default: one per word)")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="pause between streamed chunks")
    args = parser.parse_args(argv)
    try:
        if args.reply is not None:
            reply = args.reply
            answer_fn: AnswerFn = lambda body: reply  # noqa: E731
        elif args.echo:
            answer_fn = last_prompt
        else:
            answer_fn = replies_answer(load_replies(args.replies)) if args.replies else demo_answer
    except ValueError as exc:
        print(f"demo upstream: {exc}", file=sys.stderr)
        return 2
    upstream = DemoUpstream(answer=answer_fn, chunks=args.chunks, chunk_delay_s=args.chunk_delay_ms / 1000,
                            record=False)
    try:
        asyncio.run(_serve(upstream, args.host, args.port))
    except OSError as exc:
        print(f"demo upstream: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


async def _serve(upstream: DemoUpstream, host: str, port: int) -> None:
    runner, url = await upstream.start(host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"demo upstream: listening on {url} (OpenAI-compatible; model names: any)", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
