"""Comparisons in the review store -> DPO preference rows (`prompt`, `chosen`, `rejected`, conversational).

- **Confirmed**: every reviewer's latest verdict names the same winner (baseline or candidate); the winner's
  answer is `chosen`, the other `rejected`. These go into `dpo/` beside the pairs from reviewed events.
- **Unconfirmed**: no reviewer has looked yet, the judge decided (not safety) with |margin| >= `min_margin`
  (judge units: reward units for a reward model, [-1, 1] for the LLM judge, where 1 is both orders agreeing).
  These go into `dpo_unconfirmed/`, apart, so they are used only by choice.

Every row also carries `source: "comparison"`, `confirmed`, `comparison_id`, `margin`, `baseline` and
`candidate` (TRL reads `prompt`, `chosen` and `rejected` and ignores the rest). Left out, counted: ties,
reviewers who disagree, texts stored as hashes only (nothing to train on), safety-decided unconfirmed ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from consumers.datasets import Rows, digest
from consumers.store.comparisons import StoredComparison, verdict_of


@dataclass(slots=True)
class ComparisonRows:
    confirmed: Rows = field(default_factory=Rows)
    unconfirmed: Rows = field(default_factory=Rows)
    skipped: Counter[str] = field(default_factory=Counter)


def comparison_rows(comparisons: Iterable[StoredComparison], min_margin: float) -> ComparisonRows:
    out = ComparisonRows()
    for c in comparisons:
        p = c.payload
        content = p.get("content") or {}
        if content.get("mode") == "hash" or content.get("messages") is None:
            out.skipped["comparison stored as hashes only"] += 1
            continue
        if c.labels:
            winner = verdict_of(c.labels)
            if winner is None:
                out.skipped["comparison: reviewers disagree"] += 1
                continue
            if winner == "tie":
                out.skipped["comparison: reviewed as a tie"] += 1
                continue
            _add(out.confirmed, c, winner, True)
            continue
        margin = p["judge"].get("margin")
        if p.get("decided_by") != "judge" or margin is None:
            out.skipped["comparison decided on safety, unreviewed"] += 1
        elif p["outcome"] == "tie" or abs(float(margin)) < min_margin:
            out.skipped[f"comparison unreviewed, |margin| below {min_margin:g}"] += 1
        else:
            _add(out.unconfirmed, c, "candidate" if margin > 0 else "baseline", False)
    return out


def _add(rows: Rows, c: StoredComparison, winner: str, confirmed: bool) -> None:
    p, content = c.payload, c.payload["content"]
    loser = "baseline" if winner == "candidate" else "candidate"
    chosen, rejected = content.get(winner), content.get(loser)
    if chosen is None or rejected is None:
        rows.skipped["comparison without both answers"] += 1
        return
    messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in content["messages"]]
    row: dict[str, Any] = {
        "prompt": messages, "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}], "source": "comparison", "confirmed": confirmed,
        "comparison_id": c.event_id, "margin": p["judge"].get("margin"),
        "baseline": p["baseline"].get("model"), "candidate": p["candidate"]["name"]}
    rows.add(digest([messages, chosen, rejected]), conversation_key(messages), row, True)


def conversation_key(messages: list[dict[str, str]]) -> str:
    """The conversation's turns up to the first user message (as `Example.conversation_key`): one split side."""
    head: list[tuple[str, str]] = []
    for m in messages:
        head.append((m["role"], m["content"]))
        if m["role"] == "user":
            break
    return digest(head)
