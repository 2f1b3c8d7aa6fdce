"""Configurable blocklist: whole words case-insensitively, patterns, category, option errors."""

from __future__ import annotations

import re

import pytest

from evaluators.rules.regex import create, trie_regex


def found(evaluator, text: str) -> list[tuple[str, str, str]]:
    return [(f.category, f.kind, text[f.start : f.end]) for f in evaluator.judge(text).findings]


def test_words_are_whole_and_case_insensitive() -> None:
    ev = create("bl", {"words": ["Project Falcon", "cat", "category", "c++"]})
    text = "About PROJECT FALCON: the Cat sat; cats and concatenate do not count, category does, so does C++."
    assert found(ev, text) == [
        ("blocklist", "word", "PROJECT FALCON"),
        ("blocklist", "word", "Cat"),
        ("blocklist", "word", "category"),
        ("blocklist", "word", "C++"),
    ]
    assert ev.judge("nothing here").safe


def test_patterns_list_and_mapping_and_category() -> None:
    ev = create(
        "ids", {"patterns": {"ticket": r"\bJIRA-\d+\b", "host": r"\b[a-z]+\.corp\.internal\b"}, "category": "internal"}
    )
    v = ev.judge("see jira-42 on build.corp.internal")
    assert not v.safe and v.categories == ["internal"]
    assert found(ev, "see JIRA-42 on build.corp.internal") == [
        ("internal", "ticket", "JIRA-42"),
        ("internal", "host", "build.corp.internal"),
    ]
    exact = create("x", {"patterns": [r"Secret"], "ignore_case": False})
    assert found(exact, "secret Secret") == [("blocklist", "pattern", "Secret")]


def test_patterns_and_words_together_in_text_order() -> None:
    ev = create("mix", {"patterns": [r"\d{3}-\d{4}"], "words": ["confidential"]})
    assert [k for _, k, _ in found(ev, "555-1234 is CONFIDENTIAL")] == ["pattern", "word"]
    assert [k for _, k, _ in found(ev, "Confidential: 555-1234")] == ["word", "pattern"]


def test_trie_regex_matches_exactly_the_words() -> None:
    words = ["a", "ab", "abc", "b.c", "xyz", "x"]
    pattern = re.compile(rf"(?:{trie_regex(words)})\Z")
    for w in words:
        assert pattern.match(w), w
    for w in ["", "abcd", "bxc", "xy", "y"]:
        assert not pattern.match(w), w


def test_large_word_list() -> None:
    words = [f"term{i:05d}" for i in range(5000)]
    ev = create("big", {"words": words})
    assert found(ev, "x term04999 y term5000 z TERM00000") == [
        ("blocklist", "word", "term04999"),
        ("blocklist", "word", "TERM00000"),
    ]


def test_option_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        create("e", {})
    with pytest.raises(ValueError, match="bad pattern"):
        create("e", {"patterns": ["(unclosed"]})
    with pytest.raises(ValueError, match="unknown option"):
        create("e", {"words": ["x"], "wordz": ["y"]})
