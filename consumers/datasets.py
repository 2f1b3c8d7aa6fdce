"""Reviewed events -> training rows in the formats TRL reads. Pure functions: no I/O.

- KTO (unpaired preference, conversational): `{"prompt": [messages], "completion": [answer], "label": bool}`;
  `label` is True when the judged content is acceptable (reviewed safe), False when reviewed unsafe.
  Output-stage events: prompt = the conversation sent upstream, completion = the answer as one assistant message.
  Input-stage events judge the prompt itself: prompt = the conversation ending in the judged user turn and
  completion = [] (a prompt judgement, used by prompt classifiers; `--kto-stages output` leaves them out
  when training a generator with TRL's KTOTrainer).
- DPO (conversational): `{"prompt": [messages], "chosen": [safe answer], "rejected": [unsafe answer]}`, one row
  per (safe, unsafe) pair of reviewed answers to the same prompt (e.g. n>1 choices, retries, a refusal).
- Llama Guard SFT (prompt-completion): `{"prompt": the complete Llama Guard 3 prompt as the evaluator serves it,
  "completion": "\\n\\nsafe" | "\\n\\nunsafe\\nS1,S10"}` (what the model writes after Meta's template); only
  S-codes go in the completion; an unsafe label without any S-code is skipped.

Rows are deduplicated by a hash of their content (duplicates with conflicting labels are all dropped) and
split train/test by conversation: a hash of the turns up to the first user message, so every event of one
conversation lands on the same side.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from consumers.consensus import category_sort_key
from consumers.llama_guard_render import Renderer
from evaluators.llama_guard.prompt import answer_text

Messages = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Example:
    """One reviewed, exportable event: its text and the reviewers' decision."""

    event_id: str
    stage: str
    messages: tuple[tuple[str, str], ...]
    completion: str | None
    unsafe: bool
    categories: tuple[str, ...]
    redacted: bool

    @property
    def message_dicts(self) -> Messages:
        return [{"role": r, "content": c} for r, c in self.messages]

    @property
    def conversation_key(self) -> str:
        head: list[tuple[str, str]] = []
        for turn in self.messages:
            head.append(turn)
            if turn[0] == "user":
                break
        return digest(head)


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def in_test_split(conversation_key: str, test_fraction: float, salt: str = "") -> bool:
    """Deterministic: the same conversation always lands on the same side."""
    bucket = int(hashlib.sha256(f"{salt}{conversation_key}".encode()).hexdigest()[:16], 16) / 2**64
    return bucket < test_fraction


@dataclass(slots=True)
class Rows:
    """Rows of one format, keyed for dedupe, with what was dropped."""

    rows: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # key -> (conversation, row)
    duplicates: int = 0
    conflicts: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    _verdicts: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _conflicted: set[str] = field(default_factory=set, init=False, repr=False)

    def add(self, key: str, conversation: str, row: dict[str, Any], verdict: Any) -> None:
        """Same key + same verdict: a duplicate. Same key + different verdict: a conflict (dropped)."""
        previous = self.rows.get(key)
        if previous is None:
            if key in self._conflicted:
                self.duplicates += 1
                return
            self.rows[key] = (conversation, row)
            self._verdicts[key] = verdict
        elif self._verdicts[key] == verdict:
            self.duplicates += 1
        else:
            del self.rows[key]
            self._conflicted.add(key)
            self.conflicts += 1

    def split(self, test_fraction: float, salt: str = "") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        train: list[dict[str, Any]] = []
        test: list[dict[str, Any]] = []
        for _key, (conversation, row) in sorted(self.rows.items(), key=lambda kv: (kv[1][0], kv[0])):
            (test if in_test_split(conversation, test_fraction, salt) else train).append(row)
        return train, test


def kto_rows(examples: Iterable[Example], stages: Sequence[str] = ("input", "output")) -> Rows:
    out = Rows()
    for ex in examples:
        if ex.stage not in stages:
            out.skipped[f"stage {ex.stage} not exported"] += 1
            continue
        completion: Messages = ([{"role": "assistant", "content": ex.completion or ""}]
                                if ex.stage == "output" else [])
        row = {"prompt": ex.message_dicts, "completion": completion, "label": not ex.unsafe}
        out.add(digest([ex.stage, row["prompt"], completion]), ex.conversation_key, row, row["label"])
    return out


def dpo_rows(examples: Iterable[Example]) -> Rows:
    out = Rows()
    by_prompt: dict[str, tuple[Example, dict[str, Example], dict[str, Example]]] = {}
    for ex in examples:
        if ex.stage != "output" or ex.completion is None:
            continue
        key = digest(ex.messages)
        first, safe, unsafe = by_prompt.setdefault(key, (ex, {}, {}))
        (unsafe if ex.unsafe else safe).setdefault(ex.completion, ex)
    for key, (first, safe, unsafe) in by_prompt.items():
        clash = set(safe) & set(unsafe)  # the same answer judged both ways: no usable preference
        out.conflicts += len(clash)
        for chosen, rejected in product(sorted(set(safe) - clash), sorted(set(unsafe) - clash)):
            row = {"prompt": first.message_dicts, "chosen": [{"role": "assistant", "content": chosen}],
                   "rejected": [{"role": "assistant", "content": rejected}]}
            out.add(digest([key, chosen, rejected]), first.conversation_key, row, True)
    return out


def llama_guard_target(ex: Example) -> str | None:
    """"\\n\\nsafe", or "\\n\\nunsafe\\nS1,S10" (S-codes only, in order); None when unsafe without any S-code."""
    if not ex.unsafe:
        return answer_text(False)
    codes = sorted((c for c in ex.categories if c[:1] == "S" and c[1:].isdigit()), key=category_sort_key)
    return answer_text(True, codes) if codes else None


def llama_guard_rows(examples: Iterable[Example], render: Renderer) -> Rows:
    out = Rows()
    for ex in examples:
        target = llama_guard_target(ex)
        if target is None:
            out.skipped["unsafe without a Llama Guard category"] += 1
            continue
        conversation = ex.message_dicts
        if ex.stage == "output":
            conversation = conversation + [{"role": "assistant", "content": ex.completion or ""}]
        prompt = render(conversation, ex.stage)
        out.add(digest(prompt), ex.conversation_key, {"prompt": prompt, "completion": target}, target)
    return out


def example_from_event(event_id: str, payload: Mapping[str, Any], unsafe: bool,
                       categories: Sequence[str]) -> Example | str:
    """An Example, or the reason the event cannot be exported."""
    content = payload.get("content") or {}
    if content.get("mode") == "hash":
        return "content stored as hash only"
    messages = content.get("messages")
    if not messages:
        return "no messages stored"
    completion = content.get("completion")
    if payload.get("stage") == "output" and completion is None:
        return "output event without the answer"
    return Example(event_id=event_id, stage=str(payload["stage"]),
                   messages=tuple((str(m["role"]), str(m["content"])) for m in messages),
                   completion=completion, unsafe=unsafe, categories=tuple(categories),
                   redacted=content.get("mode") == "redacted")
