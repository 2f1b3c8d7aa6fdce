"""Redaction: placeholders per finding, overlapping spans merged, real evaluator output masked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from evaluators.base import Finding
from evaluators.rules.pii import create as create_pii
from evaluators.rules.redact import merge_spans, placeholder, redact
from evaluators.rules.secrets import create as create_secrets


def test_placeholders_and_plain_spans() -> None:
    text = "mail a@b.io now"
    assert placeholder(Finding("pii", "email", 5, 11)) == "[PII:email]"
    assert redact(text, [Finding("pii", "email", 5, 11)]) == "mail [PII:email] now"
    assert redact(text, []) == text


def test_overlapping_spans_merge_adjacent_do_not() -> None:
    text = "0123456789"
    overlapping = [Finding("secret", "generic_secret", 4, 8), Finding("pii", "phone", 2, 6)]
    assert redact(text, overlapping) == "01[PII:phone]89"
    adjacent = [Finding("pii", "a", 0, 3), Finding("pii", "b", 3, 5)]
    assert redact(text, adjacent) == "[PII:a][PII:b]56789"
    nested = [Finding("pii", "outer", 1, 9), Finding("pii", "inner", 3, 4)]
    assert redact(text, nested) == "0[PII:outer]9"


def test_out_of_range_spans_are_clipped() -> None:
    assert redact("abc", [Finding("pii", "x", 1, 99)]) == "a[PII:x]"
    assert redact("abc", [Finding("pii", "x", 5, 9)]) == "abc"


def test_redacts_what_evaluators_find() -> None:
    text = "I'm ann@corp.io, card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE, password: Xk9#mP2$vL7qZ"
    findings = create_pii("pii", {}).judge(text).findings + create_secrets("secrets", {}).judge(text).findings
    assert redact(text, findings) == (
        "I'm [PII:email], card [PII:credit_card], key [SECRET:aws_access_key], password: [SECRET:generic_secret]"
    )


spans = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)).map(sorted), max_size=8)


@given(st.text(max_size=40), spans)
def test_merged_spans_are_disjoint_and_cover_every_finding(text: str, raw: list[list[int]]) -> None:
    findings = [Finding("pii", "k", a, b) for a, b in raw]
    merged = merge_spans(findings, len(text))
    for (_, end1, _), (start2, _, _) in zip(merged, merged[1:], strict=False):
        assert end1 <= start2
    for f in findings:
        start, end = max(0, f.start), min(f.end, len(text))
        if end > start:
            assert any(s <= start and end <= e for s, e, _ in merged)
    out = redact(text, findings)
    assert out.count("[PII:k]") == len(merged)
