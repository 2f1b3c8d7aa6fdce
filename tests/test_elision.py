"""Long texts kept within a size for audit events: head and tail, a marker saying how much was left out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.elision import ElidedText, elide, fit, marker


def test_short_text_is_kept_whole() -> None:
    assert elide("hello", 5) == "hello"
    assert fit(["a", None, "bc"], 10) == ["a", None, "bc"]


def test_long_text_keeps_head_and_tail_and_says_how_much_is_gone() -> None:
    text = "H" * 100 + "m" * 10_000 + "T" * 300
    out = elide(text, 400)
    assert out == "H" * 100 + marker(10_000) + "T" * 300
    assert "10000 characters elided" in out


def test_fit_keeps_short_texts_whole_and_shares_the_rest() -> None:
    texts = ["short", "x" * 50_000, None, "y" * 10_000]
    out = fit(texts, 20_005)
    assert out[0] == "short" and out[2] is None
    assert out[1] == elide("x" * 50_000, 10_000) and out[3] == "y" * 10_000  # y fits in its share: kept whole


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.text(max_size=50), max_size=60), limit=st.integers(min_value=0, max_value=400))
def test_elided_text_built_piecewise_equals_elide_of_the_whole(pieces: list[str], limit: int) -> None:
    built = ElidedText(limit)
    for piece in pieces:
        built.append(piece)
    assert str(built) == elide("".join(pieces), limit)
    assert built.length == sum(map(len, pieces))


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=12),
       budget=st.integers(min_value=100, max_value=8000))
def test_fit_stays_within_budget_and_cuts_only_the_longest(sizes: list[int], budget: int) -> None:
    out = fit(["z" * n for n in sizes], budget)
    assert sum(t.count("z") for t in out if t) <= max(budget, 0)
    whole = [n for t, n in zip(out, sizes) if t == "z" * n]
    cut = [n for t, n in zip(out, sizes) if t != "z" * n]
    assert not cut or min(cut) >= max(whole, default=0)  # only texts longer than every kept one lose text
    assert all("elided" in t for t, n in zip(out, sizes) if t and t != "z" * n)
