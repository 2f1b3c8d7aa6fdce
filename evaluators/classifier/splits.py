"""Leak-free splits: exact duplicates removed, near-duplicates grouped, groups kept whole.

Two rows land in the same group when they share an explicit `group` value or when
their embeddings' cosine similarity reaches a threshold (paraphrases of one
behaviour across benchmarks, templated rows). Groups are then assigned to
train / val / dev per stratum (source x label), so each split sees every source
and no near-duplicate straddles two splits.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from evaluators.evaluation.datasets import LabelledRow

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text.strip().lower())


def dedupe(rows: Sequence[LabelledRow], key: Callable[[LabelledRow], str] | None = None
           ) -> tuple[list[LabelledRow], dict[str, int]]:
    """Drop exact duplicates (same `key`, default the normalised text); drop all copies labelled both ways."""
    by_text: dict[str, list[LabelledRow]] = defaultdict(list)
    for row in rows:
        by_text[key(row) if key is not None else normalise(row.text)].append(row)
    kept: list[LabelledRow] = []
    conflicts = duplicates = 0
    for copies in by_text.values():
        if len({r.unsafe for r in copies}) > 1:
            conflicts += len(copies)
            continue
        kept.append(copies[0])
        duplicates += len(copies) - 1
    return kept, {"input": len(rows), "kept": len(kept), "duplicates": duplicates, "conflicting": conflicts}


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def near_duplicate_groups(rows: Sequence[LabelledRow], embeddings: np.ndarray, threshold: float,
                          block: int = 2048) -> list[int]:
    """A group id per row: connected components of (same `group` field) or (cosine >= threshold)."""
    n = len(rows)
    uf = _UnionFind(n)
    first_of: dict[str, int] = {}
    for i, row in enumerate(rows):
        if row.group is not None:
            if row.group in first_of:
                uf.union(first_of[row.group], i)
            else:
                first_of[row.group] = i
    if threshold <= 1.0 and n > 1:
        for start in range(0, n, block):
            sims = embeddings[start : start + block] @ embeddings.T
            ii, jj = np.nonzero(sims >= threshold)
            for i, j in zip(ii.tolist(), jj.tolist()):
                if start + i < j:
                    uf.union(start + i, j)
    return [uf.find(i) for i in range(n)]


def group_split(rows: Sequence[LabelledRow], groups: Sequence[int], fractions: dict[str, float],
                seed: int) -> list[str]:
    """Assign each row a split name; whole groups move together, stratified by (source, label).

    `fractions` maps split names to target shares of rows, e.g. {"dev": .15, "val": .15};
    the rest goes to "train". A group belongs to the stratum most of its rows come from.
    A group too big to fit a split (more than half of that split's target, e.g. a
    template shared by hundreds of attack prompts) goes to train and does not count
    towards the stratum's size. Groups are shuffled with `seed`, then filled split by split.
    """
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    strata: dict[tuple[str, bool], list[int]] = defaultdict(list)
    for g, idx in members.items():
        key = Counter((rows[i].source or "", rows[i].unsafe) for i in idx).most_common(1)[0][0]
        strata[key].append(g)
    rng = random.Random(seed)
    assignment = ["train"] * len(rows)
    smallest_share = min(fractions.values(), default=0.0)
    for key in sorted(strata):
        group_ids = sorted(strata[key])
        rng.shuffle(group_ids)
        sizes = {g: len(members[g]) for g in group_ids}
        total = sum(sizes.values())
        while True:  # drop oversized groups from the stratum's size until none is left
            fits = [g for g in group_ids if sizes[g] <= max(1.0, 0.5 * smallest_share * total)]
            new_total = sum(sizes[g] for g in fits)
            if new_total == total:
                break
            total = new_total
        filled = {name: 0 for name in fractions}
        for g in fits:
            target = next((name for name, share in fractions.items()
                           if filled[name] + sizes[g] / 2 <= share * total), "train")
            if target != "train":
                filled[target] += sizes[g]
            for i in members[g]:
                assignment[i] = target
    return assignment
