"""StreamRelay: upstream SSE to the client, each choice moderated per the policy's streaming mode.

Tasks cooperating on one event loop:
- the reader pulls upstream bytes, splits them into events and hands each to its
  choice; after each read it feeds what arrived to the choices' incremental judges
  (the rule engines, inline: microseconds), cuts a choice they find unsafe, and
  releases what every judge cleared;
- one window-judge task per choice at a time judges that choice's windows in order
  (one window in flight, one queued, later windows merge into the queued one);
  it releases held events as windows pass and cuts the choice when one fails;
- `run()` waits for the reader, then for the judges, and ends the stream.
Everything for the client goes through `_emit` (ordered) and `_flush` (one
writer at a time), so the reader keeps reading while a window is judged, and a
slow client slows the reader down. Back-pressure from the judges: once more than
`hold_limit_bytes` of events wait for judgment, the reader stops reading the
upstream until a window is judged (a window ends early rather than wait; text held
only by the incremental judges is judged as it stands), so a slow client or
evaluator never makes the proxy hold the upstream's whole answer.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from aiohttp import web

from evaluators.base import Verdict
from evaluators.spans import Span, placeholder_spans
from proxy.jsonio import loads, loads_checked
from proxy.keyscrub import key_bytes, scrub
from proxy.metrics import STREAM_CUTS, STREAM_WINDOWS, UPSTREAM_ERRORS
from proxy.policy import EVALUATOR_ERROR, Decision, redacted_findings
from proxy.recording import Recorder, RequestContext
from proxy.routes import GenerationRoute, conversation_of
from proxy.sse import DONE, SSEParser, data_of, encode_event
from proxy.streaming.choice import ChoiceStream
from proxy.streaming.chunks import INTERRUPTED, cut_chunk, is_error, split_choices
from proxy.streaming.shapes import DeltaShape
from proxy.streaming.shapes import learn as learn_shape
from proxy.streaming.windows import Window
from proxy.unicode_text import clean_text

if TYPE_CHECKING:  # the guard imports the streaming modes: a runtime import would be a cycle
    from proxy.guard import Guard
    from proxy.resolved_policy import ResolvedPolicy

log = structlog.get_logger("guardstream.streaming")

#: upstream bytes parsed in one go; the rest waits in aiohttp's buffer (`upstream.read_bufsize`) and the kernel's
_READ_BATCH = 64 * 1024

#: text delta shapes one stream remembers (one per choice) and learns at most (shapes.py)
_MAX_SHAPES = 8
_MAX_LEARNS = 16

_UPSTREAM_ERRORS = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError, ValueError)


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a stream relay knows of the request it serves."""

    route: GenerationRoute
    ctx: RequestContext
    #: the prompts' conversations (one, or one per prompt of a batched completion)
    conversations: list[list[dict[str, str]]]
    n: int = 1  # choices per prompt
    choices: int = 1  # choices the answer will have (`expected_choices`)


class StreamRelay:
    """Relays one streamed generation, judging each choice's answer per the policy's streaming mode."""

    def __init__(self, request: StreamRequest, policy: ResolvedPolicy, *, guard: Guard, recorder: Recorder,
                 upstream: aiohttp.ClientResponse, client: web.StreamResponse) -> None:
        self.route = route = request.route
        self.guard = guard
        self.recorder = recorder
        self.ctx = request.ctx
        self.policy = policy
        self.plan = policy.stream.plan
        self.hold_limit = policy.config.output.streaming.hold_limit_bytes
        self.mode = self.plan.mode
        self._judging = self.plan.judges  # read per event
        self._windowed = policy.stream.windowed  # window judges (incremental ones scan: `Guard.scanners`)
        self.conversations = request.conversations
        self.n = request.n
        self._rewrite = functools.partial(mask_event, route)  # a function of the route: see `mask_event`
        self.upstream = upstream
        self.client = client
        self._key = key_bytes(guard.settings.upstream)
        self.expected_choices = max(1, request.choices)
        self.choices: dict[int, ChoiceStream] = {}
        self.meta: dict[str, Any] = {}
        self._touched: dict[int, ChoiceStream] = {}  # choices that got events since the last `_settle`
        self._tail: list[bytes] = []  # choiceless events (usage, errors) waiting for held choice events
        self._out: list[bytes] = []
        self._write_lock = asyncio.Lock()
        self._reader: asyncio.Task[str] | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self._window_tasks: dict[int, asyncio.Task[None]] = {}  # choice index -> its window judge, while it runs
        self._stopped = False  # we cut every choice and closed the upstream
        self._aborted = False  # the upstream reported an error mid-stream
        self._client_error: BaseException | None = None
        self._shapes: list[DeltaShape] = []  # of the choices' text deltas (shapes.py)
        self._learns = _MAX_LEARNS
        self._judged = asyncio.Event()  # set whenever a judge frees held events (or stops)
        self.ending: str | None = None  # how the upstream stream ended (done, eof, cut, interrupted)

    # -- the request's life ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except ConnectionError as exc:  # the client went away: aiohttp's drain raises a plain ConnectionError,
            if isinstance(exc, ConnectionResetError):  # which the server would log as a traceback; the handler
                raise  # and the middleware answer a reset as the client's hang-up (499)
            raise ConnectionResetError(str(exc)) from None

    async def _run(self) -> None:
        self._reader = asyncio.create_task(self._read(), name=f"stream-reader-{self.ctx.request_id}")
        ending = "eof"
        try:
            try:
                ending = await self._reader
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if (task is not None and task.cancelling()) or not (self._stopped or self._client_error):
                    raise
                ending = "cut"
            if self._client_error is not None:
                raise self._client_error
            self.ending = "interrupted" if self._aborted else ending
            if ending != "done":
                self.upstream.close()
            await self._finish(ending)
            if ending == "done":
                await self._reuse_upstream()
        finally:
            for choice in self.choices.values():  # however it ended (a cut, the upstream or the client gone)
                self._catch_up(choice)
            await self._cancel_tasks()
            self.upstream.close()  # stops generation upstream if we left early (no-op after release)

    async def _read(self) -> str:
        """Pump upstream events into the choices; returns how the upstream stream ended."""
        parser = SSEParser()
        content = self.upstream.content
        on_event = self._on_event
        while True:
            try:
                data = await content.read(_READ_BATCH)
                events = parser.feed_raw(data) if data else parser.flush_raw()
            except _UPSTREAM_ERRORS as exc:
                if self._stopped:
                    return "cut"
                UPSTREAM_ERRORS.labels("stream_interrupted").inc()
                log.warning("upstream_stream_interrupted", error=type(exc).__name__)
                return "interrupted"
            held = self._held_bytes()  # and what arrives: a bound (releases only lower it), O(1) an event
            limit = self.hold_limit
            key = self._key
            run: DeltaShape | None = None  # text deltas of one shape in a row, taken in one call (`_on_deltas`)
            raws: list[bytes] = []
            texts: list[str] = []
            for raw in events:  # every event of the read in one pass: no await between two
                for shape in self._shapes:  # a plain text delta like the last ones: no JSON parse
                    text = shape.text_of(raw)
                    if text is not None and (key is None or key not in raw):
                        if shape is not run:
                            if run is not None:
                                self._on_deltas(run.index, raws, texts)
                                raws, texts = [], []
                            run = shape
                        raws.append(raw)
                        texts.append(text)
                        break
                else:
                    if run is not None:  # what came before this event is taken before it
                        self._on_deltas(run.index, raws, texts)
                        run, raws, texts = None, [], []
                    if not on_event(raw):  # [DONE]
                        self._settle()
                        return "done"
                held += len(raw)
                if held > limit:
                    if run is not None:
                        self._on_deltas(run.index, raws, texts)
                        run, raws, texts = None, [], []
                    held = self._held_bytes()
                    if held > limit:
                        self._settle()
                        await self._flush()
                        await self._wait_for_judges()
                        held = self._held_bytes()
            if run is not None:
                self._on_deltas(run.index, raws, texts)
            self._settle()
            await self._flush()
            if not data:
                return "eof"

    def _held_bytes(self) -> int:
        return sum(c.held_bytes for c in self.choices.values())

    async def _wait_for_judges(self) -> None:
        """Back-pressure: stop reading while more than `hold_limit_bytes` of events wait for judgment (runs of
        small text events merged first: the limit is about text, not framing)."""
        for choice in self.choices.values():
            choice.compact()
        while not self._aborted and self._held_bytes() > self.hold_limit:
            judging = False
            for choice in self.choices.values():
                holding = choice.holding()
                if holding == "windows":
                    if choice.window_idle:
                        self._submit(choice, choice.seal_window())  # judge what is held now: a window ends early
                    judging = judging or not choice.window_idle
                elif holding == "scanners":
                    self._scan(choice, final=True)  # only the incremental judges hold it: judged as it stands
                    self._release(choice)
            await self._flush()
            if not judging:
                return
            self._judged.clear()
            await self._judged.wait()

    async def _reuse_upstream(self) -> None:
        """After [DONE], read the upstream body to its end so the pooled connection is kept for the next request."""
        content = self.upstream.content
        if content.is_eof() and not content.exception():  # the usual case: the body's end came with [DONE]
            while content.read_nowait():
                pass
            self.upstream.release()
            return
        try:
            async with asyncio.timeout(0.25):
                while await self.upstream.content.readany():
                    pass
        except (TimeoutError, *_UPSTREAM_ERRORS):
            self.upstream.close()
            return
        self.upstream.release()

    async def _finish(self, ending: str) -> None:
        """Judge what is left, release what passed, and end the client's stream."""
        if ending == "interrupted":
            self._abort()
        if not self._aborted:
            for choice in self.choices.values():
                if not choice.cut and not choice.finished:
                    self._submit(choice, choice.end_of_stream())
                    self._touched[choice.index] = choice
            self._settle()
        while workers := [task for task in self._window_tasks.values() if not task.done()]:
            await asyncio.gather(*workers, return_exceptions=True)
        if self._client_error is not None:
            raise self._client_error
        for choice in self.choices.values():
            self._release(choice)
            if choice.entries:  # never released unjudged, whatever happened
                log.error("stream_choice_unjudged", choice_index=choice.index, dropped=choice.drop())
        self._emit_tail()
        if ending == "interrupted":
            self._emit(INTERRUPTED)
        elif ending in ("done", "cut"):
            self._emit(DONE)
        await self._flush()

    async def _cancel_tasks(self) -> None:
        tasks = [t for t in [self._reader, *self._workers] if t is not None]
        running = []
        for task in tasks:
            if not task.done():
                task.cancel()
                running.append(task)
            elif not task.cancelled():
                task.exception()  # retrieved: no "Task exception was never retrieved"
        if running:  # (the usual stream has none left: no gather, no extra turn of the loop)
            await asyncio.gather(*running, return_exceptions=True)

    def answers(self) -> dict[int, tuple[str, bool]]:
        """After `run`: each choice's answer (a long one keeps its head and tail) and whether it was cut. What is
        judged after the stream (whole-answer evaluators, comparisons) reads these."""
        return {i: (str(c.answer), c.cut) for i, c in sorted(self.choices.items())}

    # -- upstream events ---------------------------------------------------------------------------

    def _on_event(self, raw: bytes) -> bool:
        """One upstream event, as received; False when it is the `[DONE]` that ends the stream."""
        if raw == DONE:  # what every server sends
            return False
        if not self._judging:  # nothing to judge: only [DONE] needs the data read
            if b"[DONE]" in raw and (data := data_of(raw)) is not None and data.strip() == "[DONE]":
                return False
            self._out.append(scrub(raw, self._key))
            return True
        data = data_of(raw)
        if data is not None and data.strip() == "[DONE]":  # `SSEEvent.is_done`
            return False
        unscrubbed = raw
        if self._key is not None and self._key in raw:  # an upstream echoing its key (in an error, say)
            raw, data = scrub(raw, self._key), data and scrub(data.encode(), self._key).decode("utf-8", "replace")
        if data is None:  # a keep-alive comment
            self._out.append(raw)
            return True
        try:
            payload, clean = loads_checked(data)  # clean: parsed by orjson, no lone surrogate in it
        except (ValueError, RecursionError):
            payload, clean = None, False
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or not choices:
            self._on_choiceless(raw, payload)
            return True
        if not self.meta:
            self.meta = {k: payload[k] for k in ("id", "created", "model") if k in payload}
        if self._aborted:
            return True
        if len(choices) == 1:
            self._on_choice(choices[0], raw, clean, learn=clean and raw is unscrubbed)
        else:
            for choice, one in split_choices(payload, choices):
                self._on_choice(choice, one, clean)
        return True

    def _on_choiceless(self, raw: bytes, payload: Any) -> None:
        """Usage, errors and anything else without choices: in order, after held choice events."""
        if is_error(payload, raw) and self.plan.windowed and not self._aborted:
            self._abort()  # held text that was not approved is never released
        self._tail.append(raw)
        self._emit_tail()

    def _on_choice(self, obj: Any, raw: bytes, clean: bool = False, learn: bool = False) -> None:
        """One choice's event; `clean`: its strings hold no lone surrogate (nothing for `clean_text` to do);
        `learn`: `raw` is the upstream's event as sent, a plain text delta's shape may be learned from it."""
        if not isinstance(obj, dict):
            self._emit(raw)
            return
        index = obj.get("index", 0)
        index = index if isinstance(index, int) else 0
        choice = self.choices.get(index)
        if choice is None:
            choice = self.choices[index] = self.plan.new_choice(index, self.guard.scanners(self.policy),
                                                                bool(self._windowed), self._rewrite)
        if choice.cut:
            return
        text = self.route.delta_text(obj)
        finish = bool(obj.get("finish_reason"))
        window = choice.add(raw, text if clean else clean_text(text), finish)
        if window is not None:
            self._submit(choice, window)
        self._touched[index] = choice
        if learn and text and not finish and self._learns:
            self._learn(raw, text, index)

    def _learn(self, raw: bytes, text: str, index: int) -> None:
        """Remember the shape of this choice's text deltas (shapes.py), so the next ones skip the JSON parse."""
        self._learns -= 1  # an upstream whose events all differ (a per-event nonce, say) stops costing soon
        shape = learn_shape(raw, text, index, self.route.name, self.route.delta_text)
        if shape is None:
            return
        self._shapes = [s for s in self._shapes if s.index != index][: _MAX_SHAPES - 1] + [shape]

    def _on_deltas(self, index: int, raws: list[bytes], texts: list[str]) -> None:
        """Text deltas of one choice in a row, of a learned shape: what `_on_choice` does with each, without the
        parse, and in one call where no window judge counts them one by one."""
        if self._aborted:
            return
        choice = self.choices[index]
        if choice.cut:
            return
        if choice.windows is None:
            choice.add_texts(raws, texts)
        else:
            for raw, text in zip(raws, texts):
                window = choice.add(raw, text, False)
                if window is not None:
                    self._submit(choice, window)
        self._touched[index] = choice

    def _settle(self) -> None:
        """After a read: the incremental judges judge what arrived, then what every judge cleared is released."""
        for choice in self._touched.values():
            if choice.cut:
                continue
            if choice.judges is not None:
                self._scan(choice, final=choice.ended)
                if choice.cut:
                    continue
            self._release(choice)
        self._touched.clear()

    # -- judging -----------------------------------------------------------------------------------

    def _scan(self, choice: ChoiceStream, final: bool) -> None:
        """Feed the choice's new text to its incremental judges; act on what they found."""
        assert choice.judges is not None
        verdicts = choice.judges.step(final)
        if final and choice.ended:
            for name, seconds in choice.scanner_seconds():
                self.guard.observe(name, "output", seconds)
        if verdicts:
            self._act_on(choice, verdicts)

    def _catch_up(self, choice: ChoiceStream) -> None:
        """The beside judges (flag only, `judges.py`) judge the text they lag behind, as they would have read by
        read: at the end of the relay, however it ended (a finished answer leaves them nothing)."""
        judges = choice.judges
        if judges is not None and judges.lagging and (verdicts := judges.catch_up()):
            self._act_on(choice, verdicts)  # flags only: nothing to redact or cut

    def _act_on(self, choice: ChoiceStream, verdicts: list[Verdict]) -> None:
        """The policy's decision on what the incremental judges found: redact, audit, cut."""
        decision = self.guard.decide(self.policy, "output", verdicts)
        if decision.redacts:
            choice.redact(placeholder_spans(redacted_findings(decision, self.policy.config), choice.chars))
        conversation = conversation_of(self.conversations, self.n, choice.index)
        self.recorder.record(self.ctx, decision, conversation, lambda: str(choice.answer),
                             choice_index=choice.index, stream_mode=self.mode,
                             latency_ms=sum(seconds for _, seconds in choice.scanner_seconds()) * 1000)
        if decision.blocks:
            self._cut(choice, decision)

    def _submit(self, choice: ChoiceStream, window: Window | None) -> None:
        if window is None:
            return
        choice.queue(window)
        worker = self._window_tasks.get(choice.index)
        if worker is None or worker.done():
            self._window_tasks[choice.index] = worker = asyncio.create_task(
                self._judge_windows(choice), name=f"stream-judge-{self.ctx.request_id}-{choice.index}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)

    async def _judge_windows(self, choice: ChoiceStream) -> None:
        try:
            while (window := choice.next_window()) is not None:
                decision = await self._judge(choice, window)
                choice.window_judged(window, passed=not decision.blocks)
                if decision.blocks:
                    self._cut(choice, decision)
                else:
                    self._release(choice)
                await self._flush()
                self._judged.set()
        except ConnectionError as exc:  # the client went away while we wrote (aiohttp: ConnectionResetError,
            self._client_error = exc  # or ConnectionError("Connection lost") from a pending drain)
            if self._reader is not None:
                self._reader.cancel()
        finally:
            self._window_tasks.pop(choice.index, None)
            self._judged.set()

    async def _judge(self, choice: ChoiceStream, window: Window) -> Decision:
        context = choice.window_context() if self.plan.windowed else ""
        text = context + window.text
        conversation = conversation_of(self.conversations, self.n, choice.index)
        started = time.perf_counter()
        try:
            decision = await self.guard.check(self.policy, self.route.output_item(conversation, text),
                                              self._windowed)
        except Exception:  # a guard bug must not let text through: fail closed
            log.exception("stream_window_judge_failed", choice_index=choice.index)
            decision = Decision(stage="output", action="block", categories=[EVALUATOR_ERROR], verdicts=[],
                                enforced=self.policy.config.mode == "enforce")
        STREAM_WINDOWS.labels(self.mode).inc()
        if decision.redacts:
            self._redact(choice, window, decision, len(context))
        self.recorder.record(self.ctx, decision, conversation, lambda: str(choice.answer),
                             choice_index=choice.index, stream_mode=self.mode,
                             latency_ms=(time.perf_counter() - started) * 1000)
        return decision

    def _redact(self, choice: ChoiceStream, window: Window, decision: Decision, context_len: int) -> None:
        """A window judge's `redact` verdict: the findings in this window and its context are masked in the held
        events as they are released (only what is still held can be masked)."""
        findings = redacted_findings(decision, self.policy.config)
        offset = window.char_start - context_len  # the context is the approved text just before the window
        length = context_len + window.char_end - window.char_start
        choice.redact([(offset + start, offset + end, text)
                      for start, end, text in placeholder_spans(findings, length)])

    def _cut(self, choice: ChoiceStream, decision: Decision) -> None:
        choice.cut_off()
        config = self.policy.config
        refusal = config.refusal_text if config.output.streaming.refusal else None
        self._emit(cut_chunk(self.route, self.meta, f"guardstream-{self.ctx.request_id}", self.ctx.model or "",
                             choice.index, decision.categories, decision.evaluators, refusal))
        STREAM_CUTS.labels(self.mode).inc()
        log.info("stream_cut", choice_index=choice.index, mode=self.mode, categories=decision.categories)
        self._emit_tail()
        if self._should_stop():
            self._stop_upstream()

    def _should_stop(self) -> bool:
        """Every choice is over for the client and one is still being generated for nothing."""
        if self._stopped or len(self.choices) < self.expected_choices:
            return False
        states = self.choices.values()
        return all(c.cut or c.finished for c in states) and any(c.cut and not c.finished for c in states)

    def _stop_upstream(self) -> None:
        self._stopped = True
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            reader.cancel()
        self.upstream.close()  # generation stops: the upstream sees its client go away

    def _abort(self) -> None:
        """The upstream failed mid-stream: buffered and optimistic modes drop every event not yet released
        and stop judging. (Final mode forwarded the text already: it still judges the partial answers, for the
        audit.)"""
        if not self.plan.windowed:
            return
        self._aborted = True
        self._judged.set()
        for choice in self.choices.values():
            choice.drop()
        for worker in self._window_tasks.values():
            worker.cancel()

    # -- the client --------------------------------------------------------------------------------

    def _release(self, choice: ChoiceStream) -> None:
        self._out.extend(choice.release())  # `_emit` of each
        if self._tail:
            self._emit_tail()

    def _emit_tail(self) -> None:
        if self._tail and not any(c.entries for c in self.choices.values()):
            self._out.extend(self._tail)
            self._tail.clear()

    def _emit(self, raw: bytes) -> None:
        self._out.append(raw)

    async def _flush(self) -> None:
        if not self._out:  # nothing to write (all held): no lock to take
            return
        if not self._windowed:  # no window judges: one task writes at a time (the reader, then `_finish`)
            await self._write_out()
            return
        async with self._write_lock:  # window judges' tasks release and write too
            await self._write_out()

    async def _write_out(self) -> None:
        while self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            await self.client.write(data)


def mask_event(route: GenerationRoute, raw: bytes, spans: list[Span]) -> bytes:
    """One held event with spans of its text masked (re-encoded; the upstream's bytes otherwise). A function of
    the route, not a method of the relay: a choice holding it must not hold the relay (a reference cycle that
    only the garbage collector would free)."""
    try:
        event = SSEParser().feed(raw)[0]
        payload = loads(event.data or "")
        route.mask_delta(payload["choices"][0], spans)
    except (ValueError, LookupError, TypeError, AttributeError):  # cannot happen for an event we judged
        log.error("stream_redaction_failed")
        return b""  # never release text that had to be masked
    return encode_event(payload)


def expected_choices(route: GenerationRoute, body: dict[str, Any], n: int | None) -> int:
    """How many choices a streamed answer will have: n, times the prompts of a batched completion."""
    prompts = 1
    prompt = body.get("prompt") if route.name == "completion" else None
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        prompts = len(prompt)
    return (n or 1) * prompts
