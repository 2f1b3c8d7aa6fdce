"""From several reviewers' labels to one decision, and how it compares with the evaluators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from consumers.store.models import Label


@dataclass(frozen=True, slots=True)
class Consensus:
    """`label` is "unsafe" or "safe" when the reviewers' latest labels agree, else None with a `reason`."""

    label: str | None
    categories: tuple[str, ...] = ()
    reason: str | None = None
    reviewers: int = 0


def latest_by_reviewer(labels: Iterable[Label]) -> dict[str, Label]:
    latest: dict[str, Label] = {}
    for label in sorted(labels, key=lambda lab: (lab.created_at, lab.id)):
        latest[label.reviewer] = label
    return latest


def consensus(labels: Iterable[Label]) -> Consensus:
    """Each reviewer's latest label counts; "not sure" abstains; any disagreement leaves it undecided.

    Unsafe categories are the union of the agreeing reviewers' corrected categories.
    """
    latest = latest_by_reviewer(labels)
    decided = [lab for lab in latest.values() if lab.label != "not_sure"]
    if not latest:
        return Consensus(None, reason="unreviewed")
    if not decided:
        return Consensus(None, reason="not_sure", reviewers=len(latest))
    kinds = {lab.label for lab in decided}
    if len(kinds) > 1:
        return Consensus(None, reason="conflict", reviewers=len(latest))
    label = kinds.pop()
    cats = sorted({c for lab in decided for c in lab.categories}, key=category_sort_key) if label == "unsafe" else []
    return Consensus(label, tuple(cats), reviewers=len(latest))


def category_sort_key(category: str) -> tuple[int, int, str]:
    """S1 < S2 < ... < S14 < other names alphabetically."""
    if category[:1] == "S" and category[1:].isdigit():
        return (0, int(category[1:]), "")
    return (1, 0, category)


def reviewers_agree(latest: Mapping[str, Label]) -> bool | None:
    """None with fewer than two decided reviewers, else whether they all gave the same label."""
    decided = [lab.label for lab in latest.values() if lab.label != "not_sure"]
    if len(decided) < 2:
        return None
    return len(set(decided)) == 1


def evaluator_agreement(decision: Consensus, verdicts: Sequence[Mapping[str, object]]) -> dict[str, bool]:
    """evaluator name -> whether its verdict matches the reviewers' decision (errored verdicts left out)."""
    if decision.label is None:
        return {}
    unsafe = decision.label == "unsafe"
    return {str(v["evaluator"]): (not v["safe"]) == unsafe for v in verdicts if not v.get("error")}
