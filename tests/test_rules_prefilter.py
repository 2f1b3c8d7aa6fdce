"""The Hyperscan prefilter (`evaluators/rules/_prefilter.py`) changes what the rules cost, never what they find:
every engine finds the same with and without it, on texts built from the pieces its patterns are made of."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from evaluators.rules._prefilter import Triggers
from evaluators.rules.injection import InjectionEvaluator
from evaluators.rules.pii import PiiEvaluator
from evaluators.rules.secrets import SecretsEvaluator
from tests.planted import PLANTED

FRAGMENTS = [
    *PLANTED.values(), "-----BEGIN ", "PRIVATE KEY-----", "AKIA", "ghp_", "sk-", "xoxb-", "AIza", "sk_live_", "eyJ",
    "://", "@", "password", "Password=", "token: ", "Bearer ", "aws_secret_access_key", " = ", "\"", "'", "\n",
    " ", ".", "-", "+", "(", ")", "00", "0044 ", "+1 ", "415", "555-0132", "4111", "1111 ", "DE89", "3704 ",
    "ignore", " all ", "previous", " instructions", "you are now", "DAN", "reveal", "system prompt",
    "aWdub3JlIGFsbCBwcmV2aW91cyBpbnN0cnVjdGlvbnM=", "\x1c", "\x0b", "hello", "world", "x" * 30, "12345678",
]
ENGINES = [SecretsEvaluator("s"), PiiEvaluator("p"), InjectionEvaluator("i")]


def _without_prefilter(engine: Any) -> Any:
    plain = type(engine)(engine.name, engine.options)
    plain._triggers = Triggers([])  # no database: `present` answers None, every text is scanned
    return plain


PLAIN = [_without_prefilter(e) for e in ENGINES]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(alphabet=st.characters(max_codepoint=127),
                                                              max_size=8)), max_size=14))
def test_prefiltered_engines_find_what_the_full_scan_finds(parts: list[str]) -> None:
    text = "".join(parts)
    for fast, plain in zip(ENGINES, PLAIN):
        assert fast.analyse(text) == plain.analyse(text), (type(fast).__name__, text)


def test_the_prefilter_answers_for_ascii_only() -> None:
    triggers = Triggers([rb"ghp_"])
    assert triggers.present("a ghp_ b") is True and triggers.present("plain prose") is False
    assert triggers.present("caf\u00e9 ghp_") is None  # non-ASCII: the engine scans it in full


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ghp_", "plain", "caf\u00e9", "x" * 5000, "a ghp_ b"]), st.booleans()),
                max_size=12))
def test_a_remembered_answer_is_the_answer(asks: list[tuple[str, bool]]) -> None:
    """`present` remembers its last short text: asked again about that object, about an equal copy, or after
    another text, it answers as a fresh `Triggers` does."""
    remembering = Triggers([rb"ghp_"])
    last = ""
    for text, again in asks:
        asked = last if again else "".join(list(text))  # the same object again, or a new equal one
        assert remembering.present(asked) == Triggers([rb"ghp_"]).present(asked)
        last = asked



#: literals' starts and near misses: a streamed text may end in the first characters of a token
STARTS = ["A", "AK", "AKI", "A3", "AI", "AIz", "g", "gh", "ghp", "githu", "github_pa", "s", "sk", "x", "xo", "xox",
          "xoxb", "h", "hooks.sla", "hooks.slack.com/serv", "k", "k_li", "sk_live", "e", "ey", ":", ":/", "http:/",
          "pas", "Bear", "-----BEG", "zz", "q"]
STREAMED = st.lists(st.one_of(st.sampled_from(FRAGMENTS + STARTS),
                              st.text(alphabet=st.characters(max_codepoint=127), max_size=6)), max_size=16)


class _EveryEnd(dict[str, tuple[str, ...]]):
    """Token starts that every text ends in: the partial match is always tried."""

    def get(self, key: str, default: Any = None) -> tuple[str, ...]:
        return ("",)


def _without_shortcuts(engine: Any) -> Any:
    """The same engine, with the same prefilter, but its streams take no shortcut: the partial match is always
    tried for tokens (secrets), and the engine judges every quiet text."""
    plain = type(engine)(engine.name, engine.options)
    if hasattr(plain, "_token_starts"):
        plain._token_starts = _EveryEnd()
    return plain


LONGHAND = [_without_shortcuts(e) for e in ENGINES]


#: the default engine and engines that look for some kinds only (their literals and patterns shrink together)
SECRETS = [ENGINES[0], *(SecretsEvaluator("s", {"kinds": kinds}) for kinds in (
    ["jwt"], ["connection_string", "openai_key", "generic_secret"], ["aws_access_key", "stripe_key", "private_key"]))]
SECRETS_LONGHAND = [LONGHAND[0], *(_without_shortcuts(e) for e in SECRETS[1:])]


@settings(max_examples=400, deadline=None)
@given(STREAMED, st.sampled_from(STARTS + ["", " ", "."]), st.integers(min_value=0, max_value=200),
       st.integers(min_value=0, max_value=len(SECRETS) - 1))
def test_where_a_token_may_still_be_streaming_is_found_as_by_the_partial_match(parts: list[str], end: str,
                                                                              at: int, engine: int) -> None:
    """`SecretsEvaluator.open_from` rules out an unfinished token from the Hyperscan pass and the text's last
    characters before trying the partial match: it holds back exactly what the partial match alone holds."""
    text = "".join(parts) + end
    stripped = text.rstrip()
    words = stripped.split()
    run = len(stripped) - len(words[-1]) if words and len(stripped) == len(text) else len(text)
    start = min(at, run)
    assert SECRETS[engine].open_from(text, start, run) == SECRETS_LONGHAND[engine].open_from(text, start, run), text


@settings(max_examples=200, deadline=None)
@given(STREAMED, st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=8))
def test_streamed_answers_are_judged_as_without_the_shortcuts(parts: list[str], sizes: list[int]) -> None:
    """Step by step, a stream's scanner finds and clears the same with the shortcuts (a text without triggers
    judged without the engine, the token check above) as without them, wherever the text is split."""
    text = "".join(parts)
    for fast, plain in zip(ENGINES, LONGHAND):
        scanners = fast.incremental(), plain.incremental()
        scanners[1]._quiet = None  # the engine judges every text
        pos = i = 0
        while pos < len(text):
            piece = text[pos:pos + sizes[i % len(sizes)]]
            pos, i = pos + len(piece), i + 1
            assert scanners[0].feed(piece) == scanners[1].feed(piece), (type(fast).__name__, text, sizes, pos)
        assert scanners[0].flush() == scanners[1].flush(), (type(fast).__name__, text)
