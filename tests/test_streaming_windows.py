"""The pure parts of stream moderation: token counting, windows, the judge queue and release order."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config import PolicyConfig
from proxy.streaming import ModePlan, count_tokens, effective_mode
from proxy.streaming.choice import ChoiceStream
from proxy.streaming.windows import TokenWindows, Window, WindowQueue, words_start


def test_count_tokens_is_words_or_one_per_delta() -> None:
    assert count_tokens("") == 0
    assert count_tokens(" hello") == 1
    assert count_tokens("\n\n") == 1  # whitespace-only deltas are tokens too
    assert count_tokens("three small words") == 3
    assert count_tokens("日本語") == 1


def test_windows_seal_every_chunk_size_tokens_and_keep_context() -> None:
    w = TokenWindows(chunk_size=3, context_size=2)
    assert [w.add(t) for t in ("a ", "b ")] == [None, None]
    first = w.add("c ")
    assert first is not None and (first.start, first.end, first.text) == (0, 3, "a b c ")
    w.approve(first)
    assert w.context() == "b c "  # the last 2 tokens of approved text
    assert w.cleared == 4  # "a b " released; the last word held (min(context 2, half the window's 3 tokens))
    w.add("d ")
    last = w.seal(final=True)
    assert last is not None and (last.start, last.end, last.text, last.final) == (3, 4, "d ", True)
    assert w.seal() is None  # nothing open


def test_windows_grow_from_the_first_size_to_chunk_size() -> None:
    w = TokenWindows(chunk_size=16, context_size=4, first_size=2)
    sizes = []
    for i in range(100):
        window = w.add(f"w{i} ")
        if window is not None:
            sizes.append(window.end - window.start)
    assert sizes == [2, 4, 8, 16, 16, 16, 16, 16]


def test_holdback_is_words_not_deltas() -> None:
    """Text split into one-character deltas: the holdback is still whole words, so an unfinished word at the
    end of an approved window (the start of something the next window may find unsafe) is never released."""
    w = TokenWindows(chunk_size=6, context_size=4)
    window = None
    for ch in "ab cd hun":
        window = w.add(ch) or window
    assert window is not None and window.text == "ab cd "  # six one-character tokens (spaces are tokens too)
    w.approve(window)
    assert w.cleared == 0  # half the window's 6 tokens is 3 words: more than there are, so all held
    rest = w.seal()
    assert rest is not None
    w.approve(rest)
    assert w.cleared == 6  # "hun" is the last word, unfinished: held


def test_words_start() -> None:
    assert words_start("one two three", 1) == 8
    assert words_start("one two three ", 1) == 8
    assert words_start("one two three", 2) == 4
    assert words_start("one", 5) == 0
    assert words_start("a  b\n", 0) == 5


def test_final_mode_windows_only_seal_at_the_end() -> None:
    w = TokenWindows(chunk_size=None)
    for _ in range(500):
        assert w.add("x ") is None
    whole = w.seal(final=True)
    assert whole is not None and whole.end == 500


def test_queue_holds_one_in_flight_and_merges_the_rest() -> None:
    q = WindowQueue()
    q.push(Window(0, 2, [("a b ", 2)]))
    assert q.take() is not None and q.queued is None
    q.push(Window(2, 4, [("c d ", 2)]))
    q.push(Window(4, 5, [("e", 1)], final=True))
    assert q.queued is not None and (q.queued.start, q.queued.end, q.queued.text, q.queued.final) == \
        (2, 5, "c d e", True)
    assert q.pushed == 3


def test_effective_mode_defaults() -> None:
    enforce = PolicyConfig.model_validate({"output": {"evaluators": ["x"]}})
    shadow = PolicyConfig.model_validate({"mode": "shadow", "output": {"evaluators": ["x"]}})
    nothing = PolicyConfig.model_validate({"output": {"streaming": {"mode": "buffered"}}})
    assert (effective_mode(enforce), effective_mode(shadow), effective_mode(nothing)) == ("buffered", "final", "off")
    optimistic = PolicyConfig.model_validate({"output": {"evaluators": ["x"], "streaming": {
        "mode": "optimistic", "chunk_size": 8}}})
    assert ModePlan.of(optimistic).lead == 8 and ModePlan.of(enforce).lead == 0
    assert ModePlan.of(shadow).lead == math.inf and ModePlan.of(shadow).chunk_size is None


# -- release order and the leak bound, under any arrival / verdict interleaving ------------------------

deltas = st.lists(st.tuples(st.sampled_from(["", "w ", "two words ", "\n", "three more words "]),
                            st.sampled_from(["text", "tool", "judge", "judge"])), min_size=1, max_size=80)


@settings(max_examples=150, deadline=None)
@given(script=deltas, chunk=st.integers(1, 6), optimistic=st.booleans(), unsafe_at=st.integers(0, 60))
def test_choice_never_releases_unjudged_text_beyond_its_lead(script: list[tuple[str, str]], chunk: int,
                                                             optimistic: bool, unsafe_at: int) -> None:
    lead = chunk if optimistic else 0
    choice = ChoiceStream(0, TokenWindows(chunk, 2, first_size=1), None, lead, hold=not optimistic)
    windows = choice.windows
    assert windows is not None
    events: list[tuple[int, int, str]] = []  # (token position after the event, its end in characters, text)
    released: list[bytes] = []
    judged: list[tuple[int, int]] = []
    seq = 0

    def judge_one() -> None:
        window = choice.pending.take()
        if window is None:
            return
        judged.append((window.start, window.end))
        choice.pending.inflight = None
        if window.start <= unsafe_at < window.end:  # this window holds the unsafe token: cut
            choice.cut = True
            choice.drop()
        else:
            windows.approve(window)

    for text, action in script + [("", "finish")]:
        if choice.cut:
            break
        if action == "judge":
            judge_one()
        else:
            raw = f"{seq}".encode()
            seq += 1
            window = choice.add(raw, text if action != "tool" else "", finish=action == "finish")
            events.append((windows.tokens, choice.chars, text))
            if window is not None:
                choice.pending.push(window)
                assert choice.pending.inflight is None or choice.pending.queued is not None
        released += choice.release()
        # the bound: nothing beyond what the window judges cleared (buffered: approved less the held-back last
        # words) or approved + lead (optimistic) ever reached the client
        for raw in released:
            tokens, chars, _ = events[int(raw)]
            if optimistic:
                assert tokens <= windows.approved + lead or choice.judged
            else:
                assert chars <= windows.cleared or choice.judged
    while not choice.cut and not choice.pending.idle:
        judge_one()
        released += choice.release()
    # released events are a prefix of the upstream events, in order
    assert [int(r) for r in released] == list(range(len(released)))
    # windows are contiguous, grow, and are never judged twice; no more calls than windows
    assert all(a[1] == b[0] for a, b in zip(judged, judged[1:]))
    assert len(judged) <= choice.pending.pushed
    if choice.cut:
        assert all(events[int(r)][0] <= unsafe_at + lead for r in released)
    else:
        assert len(released) == len(events) and (not judged or judged[-1][1] == windows.tokens)


def test_redactions_from_consecutive_windows_mask_each_span_once() -> None:
    """Window 1's context sees again (and wider) what window 0 found: the wider span wins, one placeholder."""
    from evaluators.rules.redact import mask

    choice = ChoiceStream(0, TokenWindows(3, 2), None, 0, hold=True,
                          rewrite=lambda raw, spans: mask(raw.decode(), spans).encode())
    windows = choice.windows
    assert windows is not None
    for word in ("aa ", "bb ", "cc "):
        window = choice.add(word.encode(), word, finish=False)
    assert window is not None
    choice.redact([(6, 8, "[X]")])  # "cc" found in window 0
    windows.approve(window)
    released = choice.release()
    assert released == [b"aa ", b"bb "]  # "cc " held back: the window's last word, the next one's context
    for word in ("dd ", "ee "):
        choice.add(word.encode(), word, finish=False)
    last = choice.add(b"", "", finish=True)
    assert last is not None and last.text == "dd ee "
    choice.redact([(6, 11, "[Y]")])  # window 1 (context "bb cc ") found "cc dd" as one thing
    windows.approve(last)
    assert b"".join(released + choice.release()) == b"aa bb [Y] ee "


def test_held_text_events_merge_under_pressure() -> None:
    """One-character deltas cost ~150 bytes of event each: compacted, held bytes are about the text."""
    from proxy.sse import encode_event
    from tests.relay_driver import assemble

    def delta(d: dict[str, object], finish: str | None = None) -> bytes:
        return encode_event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                             "choices": [{"index": 0, "delta": d, "finish_reason": finish}]})

    choice = ChoiceStream(0, None, None, 0, hold=True)
    events = [delta({"role": "assistant", "content": ""})] + [delta({"content": ch}) for ch in "held text"]
    events += [delta({"reasoning_content": "hm"}), delta({"content": "!"}), delta({}, "stop")]
    for raw in events:
        body = json.loads(raw[6:])["choices"][0]
        choice.add(raw, (body["delta"].get("reasoning_content") or "") + (body["delta"].get("content") or ""),
                   bool(body["finish_reason"]))
    before = choice.held_bytes
    choice.compact()
    assert len(choice.entries) == 5  # role, "held text", reasoning, "!", finish: one-event runs stay as sent
    assert choice.held_bytes < before / 2
    assert [(e.char_start, e.char_end) for e in choice.entries][:3] == [(0, 0), (0, 9), (9, 11)]
    out = b"".join(e.raw for e in choice.entries) + b"data: [DONE]\n\n"
    assert assemble(out) == ("held text!", "stop")
