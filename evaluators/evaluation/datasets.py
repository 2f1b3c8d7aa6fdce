"""Labelled data for `guardstream eval` and `guardstream train`: JSONL or CSV, one item per row.

Format (one of two shapes per row):

* moderation rows: `text` (the content to judge) and `label`;
* conversation rows: `prompt` and optionally `completion` (the answer to judge) and `label`.

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
split apart), `license`, `id`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from evaluators.base import EvalItem, Stage, Turn

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
    """One labelled example: the conversation, whether it is unsafe, and bookkeeping."""

    prompt: str
    completion: str | None
    unsafe: bool
    categories: tuple[str, ...] = ()
    source: str | None = None
    group: str | None = None
    license: str | None = None
    id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The judged text: the completion when there is one, else the prompt."""
        return self.completion if self.completion else self.prompt

    def stage(self) -> Stage:
        return "output" if self.completion else "input"

    def to_item(self, stage: Stage | None = None) -> EvalItem:
        """The `EvalItem` an evaluator sees: a one-turn prompt, or prompt + answer."""
        stage = stage or self.stage()
        if stage == "output":
            turns = (Turn("user", self.prompt), Turn("assistant", self.completion or ""))
        else:
            turns = (Turn("user", self.text),)
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


def row_from_mapping(raw: Mapping[str, Any], label_true: LabelTrue | None = None) -> LabelledRow:
    """Build a `LabelledRow` from one parsed JSON object or CSV record."""
    if "label" not in raw:
        raise ValueError("missing field 'label'")
    if raw.get("text") is not None and "prompt" not in raw:
        prompt, completion = str(raw["text"]), None
    elif raw.get("prompt") is not None:
        prompt = str(raw["prompt"])
        completion = None if raw.get("completion") is None else str(raw["completion"])
    else:
        raise ValueError("needs a 'text' field or a 'prompt' field")
    kto = "completion" in raw
    known = {"text", "prompt", "completion", "label", "categories", "category", "source", "group", "license", "id"}
    return LabelledRow(
        prompt=prompt,
        completion=completion or None,
        unsafe=parse_label(raw["label"], kto=kto, label_true=label_true),
        categories=_categories(raw),
        source=_opt_str(raw.get("source")),
        group=_opt_str(raw.get("group")),
        license=_opt_str(raw.get("license")),
        id=_opt_str(raw.get("id")),
        extra={k: v for k, v in raw.items() if k not in known},
    )


def _records(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
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
    """Read every labelled row of a JSONL or CSV file, failing loudly on the first bad one."""
    path = Path(path)
    rows: list[LabelledRow] = []
    try:
        for line_no, record in _records(path):
            try:
                rows.append(row_from_mapping(record, label_true))
            except (ValueError, TypeError) as exc:
                raise DataError(f"{path}:{line_no}: {exc}") from None
            if limit is not None and len(rows) >= limit:
                break
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    return rows
