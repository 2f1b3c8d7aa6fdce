"""Llama Guard answer parser and the P(unsafe) score from first-token logprobs."""

from __future__ import annotations

import math

import pytest

from evaluators.llama_guard.parser import Parsed, ParseError, parse_categories, parse_label, parse_output
from evaluators.llama_guard.scoring import first_token, merge_logprobs, normalise_token, unsafe_probability


@pytest.mark.parametrize("text, expected", [
    ("safe", Parsed("safe")),
    ("\n\nsafe", Parsed("safe")),
    ("  safe  \n", Parsed("safe")),
    ("Safe", Parsed("safe")),
    ("unsafe\nS1", Parsed("unsafe", ["S1"])),
    ("unsafe\nS1,S10", Parsed("unsafe", ["S1", "S10"])),
    ("\n\nunsafe\n S1 , s10 ,\n", Parsed("unsafe", ["S1", "S10"])),
    ("unsafe\n\nS2", Parsed("unsafe", ["S2"])),
    ("unsafe", Parsed("unsafe", [])),
    ("unsafe\nS3,S3", Parsed("unsafe", ["S3"])),
])
def test_parse_ok(text: str, expected: Parsed) -> None:
    assert parse_output(text) == expected


@pytest.mark.parametrize("text", [
    "", "   \n", "maybe", "I cannot help with that", "safe\nS1", "unsafe\nS1\nextra", "unsafe\nviolence",
    "unsafe\nS1;S2", "sa fe", "safety",
])
def test_parse_errors(text: str) -> None:
    with pytest.raises(ParseError):
        parse_output(text)


def test_custom_codes_and_labels() -> None:
    assert parse_categories("C-WEAPONS, S2", known={"C-WEAPONS", "S2"}) == ["C-WEAPONS", "S2"]
    with pytest.raises(ParseError):
        parse_categories("C-WEAPONS")
    assert parse_label("\n unsafe\nS1") == "unsafe"
    with pytest.raises(ParseError, match="expected 'safe' or 'unsafe'"):
        parse_label("banana")


@pytest.mark.parametrize("token", ["safe", " safe", "\u2581safe", "\u0120safe", "\u010asafe", "SAFE", "\nsafe\n"])
def test_token_variants_normalise(token: str) -> None:
    assert normalise_token(token) == "safe"


def test_whitespace_tokens_normalise_to_nothing() -> None:
    for tok in ["\n", "\n\n", " ", "\u010a\u010a", "\u2581", "\u0120"]:
        assert normalise_token(tok) == ""


def test_score_sums_variants() -> None:
    dist = {"safe": math.log(0.3), " safe": math.log(0.1), "\u2581unsafe": math.log(0.4), "\u0120unsafe":
            math.log(0.1), "The": math.log(0.05)}
    assert unsafe_probability(dist) == pytest.approx(0.5 / 0.9)
    assert unsafe_probability({"hello": -0.1}) is None
    assert unsafe_probability({"safe": -0.01}) == 0.0


def test_first_token_skips_leading_newlines() -> None:
    tokens = ["\n\n", "unsafe", "\n", "S1"]
    top = [{"\n\n": -0.01, "safe": -5.0}, {"unsafe": math.log(0.7), "safe": math.log(0.3)}, {}, {}]
    ft = first_token(tokens, top)
    assert ft is not None and ft.word == "unsafe" and ft.position == 1 and ft.score == pytest.approx(0.7)
    assert first_token(["\n", " "], [{}, {}]) is None
    garbage = first_token(["banana"], [{"banana": -0.1, "safe": -3.0}])
    assert garbage is not None and garbage.word == "banana"
    no_top = first_token(["safe"], [])
    assert no_top is not None and no_top.score is None


def test_merge_logprobs_adds_duplicates() -> None:
    merged = merge_logprobs([("safe", math.log(0.2)), ("safe", math.log(0.3)), ("x", -1.0)])
    assert math.exp(merged["safe"]) == pytest.approx(0.5) and merged["x"] == -1.0
