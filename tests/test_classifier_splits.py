"""Leak-free splits: duplicates dropped, near-duplicates grouped, groups never straddle, giants stay in train."""

from __future__ import annotations

from collections import Counter

import numpy as np

from evaluators.classifier.splits import dedupe, group_split, near_duplicate_groups
from evaluators.evaluation.datasets import LabelledRow


def _row(text: str, unsafe: bool, source: str, group: str | None = None) -> LabelledRow:
    return LabelledRow(prompt=text, completion=None, unsafe=unsafe, source=source, group=group)


def test_dedupe_drops_copies_and_conflicts() -> None:
    rows = [_row("Hello  world", False, "a"), _row("hello world", False, "b"), _row("x", True, "a"),
            _row("X ", False, "a")]
    kept, stats = dedupe(rows)
    assert [r.prompt for r in kept] == ["Hello  world"]
    assert stats == {"input": 4, "kept": 1, "duplicates": 1, "conflicting": 2}


def test_near_duplicates_and_explicit_groups() -> None:
    rows = [_row(str(i), False, "s", group="g" if i in (3, 4) else None) for i in range(5)]
    e = np.eye(5, dtype=np.float32)
    e[1] = e[0] * 0.99 + e[1] * 0.01  # row 1 is a near-copy of row 0
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    groups = near_duplicate_groups(rows, e, threshold=0.9)
    assert groups[0] == groups[1] and groups[3] == groups[4] and len(set(groups)) == 3


def test_group_split_keeps_groups_whole_and_giants_in_train() -> None:
    rows, groups = [], []
    for i in range(200):  # 200 singletons of source a
        rows.append(_row(f"a{i}", i % 2 == 0, "a"))
        groups.append(i)
    for i in range(300):  # one giant template group, mostly source b
        rows.append(_row(f"b{i}", True, "b" if i else "a"))
        groups.append(1000)
    split = group_split(rows, groups, {"dev": 0.15, "val": 0.15}, seed=0)
    assert {split[i] for i in range(200, 500)} == {"train"}
    counts = Counter(split[:200])
    assert 25 <= counts["dev"] <= 35 and 25 <= counts["val"] <= 35  # 15% of the 200 singletons
    assert split == group_split(rows, groups, {"dev": 0.15, "val": 0.15}, seed=0)  # seeded
