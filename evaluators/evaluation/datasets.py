"""Labelled data for `guardstream eval` and `guardstream train`: JSONL or CSV, one item per row.

Every shape `guardstream export` writes is read as it is (see `consumers/datasets.py`):

* moderation rows: `text` (the content to judge) and `label`;
* KTO rows: `prompt`, optionally `completion` (the answer to judge), and `label`; `prompt` and
  `completion` are strings, or lists of chat messages (TRL's conversational format, what export writes:
  an input-stage row has `completion: []` and judges the prompt's last message, earlier turns and system
  messages are kept as context);
* DPO rows: `prompt`, `chosen`, `rejected` (strings or messages; without `prompt`, the conversations'
  shared turns are the prompt): two items, `chosen` read as safe and `rejected` as unsafe, which is what the
  export's pairs mean (a reviewed safe and a reviewed unsafe answer to one prompt), grouped by prompt;
* Llama Guard SFT rows: `prompt` (a rendered Llama Guard prompt) and `completion` (`\\n\\nsafe` or
  `\\n\\nunsafe\\nS1,S10`): the conversation is read back from the prompt, label and categories from
  the completion.

`label` is `"safe"` / `"unsafe"` (any case; also benign, harmless, clean, ok / harmful,
toxic, flagged, malicious, jailbreak, injection), or a boolean / 0 / 1. The meaning of a
boolean follows the row's shape, so both native formats read correctly:

* a row with a `completion` field is a KTO row (as TRL reads it): `true` means the
  completion is *desirable*, i.e. **safe**;
* any other row (`text`, or `prompt` alone) follows the moderation convention:
  `true` / `1` means **unsafe** (flagged).

`label_true` overrides this ("safe" or "unsafe"). Optional fields: `categories`
(list, or a string separated by `,` or `;`), `category` (one), `source` (where the
row comes from: reported per source), `group` (rows sharing a group are never
split apart), `license`, `id`. A row of no known shape fails the load with one line
naming the file, the row and the field.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from evaluators.base import EvalItem, Stage, Turn
from evaluators.evaluation import shapes

LabelTrue = Literal["safe", "unsafe"]

_TRUE = {"true", "yes", "t", "y"}
_FALSE = {"false", "no", "f", "n"}
#: label words that say what they mean, whatever the row's shape
UNSAFE_WORDS = {"unsafe", "harmful", "toxic", "flagged", "malicious", "jailbreak", "injection"}
SAFE_WORDS = {"safe", "benign", "harmless", "clean", "ok"}


class DataError(ValueError):
    """A data file row cannot be read; the message names the file and the line."""


@dataclass(frozen=True, slots=True)
class LabelledRow:
    """One labelled example: the conversation, whether it is unsafe, and bookkeeping.

    `prompt` is the prompt's last turn (role `prompt_role`), `context` the turns before it
    (system messages, earlier turns), `completion` the judged answer when there is one.
    """

    prompt: str
    completion: str | None
    unsafe: bool
    categories: tuple[str, ...] = ()
    source: str | None = None
    group: str | None = None
    license: str | None = None
    id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    context: tuple[Turn, ...] = ()
    prompt_role: str = "user"

    @property
    def text(self) -> str:
        """The judged text: the completion when there is one, else the prompt."""
        return self.completion if self.completion else self.prompt

    def stage(self) -> Stage:
        return "output" if self.completion else "input"

    def to_item(self, stage: Stage | None = None) -> EvalItem:
        """The `EvalItem` an evaluator sees: the conversation ending in the prompt, or prompt + answer.

        A forced `input` stage on a row with an answer judges the answer's text as a prompt.
        """
        stage = stage or self.stage()
        conversation = (*self.context, Turn(self.prompt_role, self.prompt))
        if stage == "output":
            turns = (*conversation, Turn("assistant", self.completion or ""))
        elif self.completion:
            turns = (Turn("user", self.text),)
        else:
            turns = conversation
        return EvalItem(turns=turns, stage=stage)


def parse_label(value: Any, *, kto: bool, label_true: LabelTrue | None = None) -> bool:
    """Return True when the label says *unsafe*. See the module docstring for the conventions."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in UNSAFE_WORDS or word in SAFE_WORDS:
            return word in UNSAFE_WORDS
        if word in _TRUE or word == "1":
            flag = True
        elif word in _FALSE or word == "0":
            flag = False
        else:
            raise ValueError(f"unreadable label {value!r} (use safe/unsafe, true/false or 0/1)")
    elif isinstance(value, bool):
        flag = value
    elif isinstance(value, (int, float)) and value in (0, 1):
        flag = bool(value)
    else:
        raise ValueError(f"unreadable label {value!r} (use safe/unsafe, true/false or 0/1)")
    meaning = label_true or ("safe" if kto else "unsafe")
    return flag if meaning == "unsafe" else not flag


def _categories(raw: Mapping[str, Any]) -> tuple[str, ...]:
    value = raw.get("categories")
    if value is None or value == "":
        value = raw.get("category")
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            return tuple(c.strip() for c in text.replace(";", ",").split(",") if c.strip())
    return tuple(str(c) for c in value)


def _opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


_KNOWN = {"text", "prompt", "completion", "label", "categories", "category", "source", "group", "license", "id",
          "chosen", "rejected"}


def _bookkeeping(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {"categories": _categories(raw), "source": _opt_str(raw.get("source")), "group": _opt_str(raw.get("group")),
            "license": _opt_str(raw.get("license")), "id": _opt_str(raw.get("id")),
            "extra": {k: v for k, v in raw.items() if k not in _KNOWN}}


def _judged_row(before: tuple[Turn, ...], answer: Turn | None, unsafe: bool, **keep: Any) -> LabelledRow:
    """A row from the turns before the judged answer (or, with no answer, ending in the judged prompt)."""
    if not before:
        before = (Turn("user", ""),)
    *context, last = before
    return LabelledRow(prompt=last.content, completion=answer.content if answer is not None else None,
                       unsafe=unsafe, context=tuple(context), prompt_role=last.role, **keep)


def _side(raw: Mapping[str, Any], name: str) -> tuple[Turn, ...]:
    """A prompt/completion/chosen/rejected field as turns (a string is one turn)."""
    value = raw.get(name)
    if shapes.is_messages(value):
        return shapes.read_messages(value, name)
    text = shapes.read_text(value, name)
    return (Turn("assistant" if name != "prompt" else "user", text),) if text else ()


def _kto_rows(raw: Mapping[str, Any], label_true: LabelTrue | None) -> list[LabelledRow]:
    keep = _bookkeeping(raw)
    if raw.get("text") is not None and "prompt" not in raw:
        return [LabelledRow(prompt=shapes.read_text(raw["text"], "text"), completion=None,
                            unsafe=parse_label(raw["label"], kto=False, label_true=label_true), **keep)]
    if raw.get("prompt") is None:
        raise ValueError("needs a 'text' field or a 'prompt' field")
    unsafe = parse_label(raw["label"], kto="completion" in raw, label_true=label_true)
    prompt = _side(raw, "prompt")
    answer = _side(raw, "completion") if raw.get("completion") is not None else ()
    if not answer:
        if not prompt:
            raise shapes.ShapeError("prompt", "empty prompt and no completion: nothing to judge")
        return [_judged_row(prompt, None, unsafe, **keep)]
    return [_judged_row(prompt + answer[:-1], answer[-1], unsafe, **keep)]


def _dpo_rows(raw: Mapping[str, Any]) -> list[LabelledRow]:
    keep = _bookkeeping(raw)
    prompt = _side(raw, "prompt") if raw.get("prompt") is not None else ()
    rows = []
    for name, unsafe in (("chosen", False), ("rejected", True)):
        answer = _side(raw, name)
        if not answer or (not prompt and len(answer) < 2):
            raise shapes.ShapeError(name, "needs an answer after a prompt")
        turns = prompt + answer
        rows.append(_judged_row(turns[:-1], turns[-1], unsafe, **keep))
    conversation = [[t.role, t.content] for t in rows[0].context] + [[rows[0].prompt_role, rows[0].prompt]]
    group = keep["group"] or "dpo:" + hashlib.sha256(json.dumps(conversation).encode()).hexdigest()[:16]
    return [replace(r, group=group) for r in rows]


def _llama_guard_row(raw: Mapping[str, Any]) -> LabelledRow:
    guard = shapes.read_llama_guard_row(raw["prompt"], raw.get("completion"))
    keep = {**_bookkeeping(raw), "categories": guard.categories}
    if guard.stage == "output":
        return _judged_row(guard.turns[:-1], guard.turns[-1], guard.unsafe, **keep)
    return _judged_row(guard.turns, None, guard.unsafe, **keep)


def rows_from_mapping(raw: Mapping[str, Any], label_true: LabelTrue | None = None) -> list[LabelledRow]:
    """The labelled rows one parsed JSON object or CSV record holds (two for a DPO pair)."""
    if "chosen" in raw or "rejected" in raw:
        return _dpo_rows(raw)
    if "label" not in raw:
        if shapes.is_llama_guard_prompt(raw.get("prompt")):
            return [_llama_guard_row(raw)]
        raise ValueError("missing field 'label'")
    return _kto_rows(raw, label_true)


def row_from_mapping(raw: Mapping[str, Any], label_true: LabelTrue | None = None) -> LabelledRow:
    """One row (the first, for a DPO pair): kept for callers that read one record at a time."""
    return rows_from_mapping(raw, label_true)[0]


def read_records(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(line number, parsed object) for each row of a JSONL or CSV file; DataError names file and line."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            for line_no, record in enumerate(csv.DictReader(fh), start=2):
                yield line_no, record
        return
    if suffix not in (".jsonl", ".json", ".ndjson"):
        raise DataError(f"{path}: unknown data format {suffix!r} (use .jsonl or .csv)")
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: invalid JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{line_no}: each line must be a JSON object")
            yield line_no, record


def load_rows(path: str | Path, label_true: LabelTrue | None = None, limit: int | None = None) -> list[LabelledRow]:
    """Read every labelled row of a JSONL or CSV file, failing loudly on the first bad one.

    Items a DPO file repeats (one answer in several pairs) are read once.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory: name a file (an export's kto/test.jsonl, dpo/..., llamaguard/...)")
    rows: list[LabelledRow] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for line_no, record in read_records(path):
            try:
                found = rows_from_mapping(record, label_true)
            except (ValueError, TypeError) as exc:
                raise DataError(f"{path}:{line_no}: {exc}") from None
            for row in found:
                if len(found) > 1:
                    key = (row.context, row.prompt, row.completion, row.unsafe)
                    if key in seen:
                        continue
                    seen.add(key)
                rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    return rows[:limit] if limit is not None else rows
