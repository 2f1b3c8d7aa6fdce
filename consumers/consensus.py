"""From several reviewers' labels to one decision, and how it compares with the evaluators."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from consumers.store.models import Label
from evaluators.base import LLAMA_GUARD_CATEGORIES


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


#: what an evaluator can name: a set of categories, or None for every category (a generic unsafe/safe judge,
#: or one whose categories are not known yet)
Scope = frozenset[str] | None
#: the category name of a verdict that is unsafe without naming why (proxy/policy.py)
GENERIC = "unsafe"
_LLAMA_GUARD = frozenset(LLAMA_GUARD_CATEGORIES)


def scope_of(named: Iterable[str]) -> Scope:
    """An evaluator's scope from the categories it has been seen to name: a Llama Guard code stands for the
    whole S1-S14 taxonomy; no name, or the generic "unsafe", means every category."""
    names = frozenset(named)
    if not names or GENERIC in names:
        return None
    return names | _LLAMA_GUARD if names & _LLAMA_GUARD else names


def describe_scope(scope: str | Iterable[str]) -> str:
    """A scope for people: "all categories", or its names with the Llama Guard taxonomy as "S1-S14"."""
    if isinstance(scope, str):
        return "all categories" if scope == "all" else scope
    names = set(scope)
    shown = ["S1-S14"] if _LLAMA_GUARD <= names else []
    return ", ".join(shown + sorted(names - _LLAMA_GUARD if shown else names, key=category_sort_key))


def _in_scope(categories: Iterable[str], scope: Scope) -> bool:
    return scope is None or bool(scope.intersection(categories))


def evaluator_agreement(decision: Consensus, verdicts: Sequence[Mapping[str, object]],
                        scopes: Mapping[str, Scope] | None = None) -> dict[str, bool]:
    """evaluator name -> whether its verdict matches the reviewers' decision ON THE CATEGORIES IT CAN NAME
    (errored verdicts left out). A PII rule that let through a prompt reviewers found violent agrees with
    them (violence is not its business); one that flagged a prompt reviewers confirmed for violence only does
    not. Reviewers who confirm "unsafe" without naming a category are compared with every evaluator.
    `scopes` gives each evaluator's scope (see `scope_of`); missing ones are read off the verdict itself."""
    if decision.label is None:
        return {}
    out: dict[str, bool] = {}
    for v in verdicts:
        if v.get("error"):
            continue
        name, flagged = str(v["evaluator"]), not v["safe"]
        if decision.label == "safe":
            out[name] = not flagged
            continue
        scope = (scopes or {}).get(name, scope_of(_names(v))) if decision.categories else None
        out[name] = flagged == _in_scope(decision.categories, scope)
    return out


def flag_confirmed(decision: Consensus, verdict: Mapping[str, object]) -> bool | None:
    """For an evaluator's flag (None if it did not flag or errored): did the reviewers confirm it, i.e. label
    the event unsafe for a category in the flag's scope (or without naming any)? For precision."""
    if verdict.get("error") or verdict["safe"] or decision.label is None:
        return None
    if decision.label == "safe":
        return False
    return not decision.categories or _in_scope(decision.categories, scope_of(_names(verdict)))


def _names(verdict: Mapping[str, object]) -> list[str]:
    cats = verdict.get("categories")
    return [str(c) for c in cats] if isinstance(cats, (list, tuple)) else []
