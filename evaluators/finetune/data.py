"""What `guardstream finetune` reads: the directory `guardstream export` writes (or one file), split into
train and test, with a digest that identifies exactly which data a model was trained on.

`--data EXPORT` picks the format directory each kind learns from (`llamaguard/`, `kto/`, `dpo/`) and
uses the export's own train/test split. A single file, or an export whose test split is empty, is split
here: deterministically, by a hash of each row's conversation, so reruns and resumed runs see the same
split and no conversation straddles train and test.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluators.digests import sha256_file
from evaluators.evaluation.datasets import DataError, LabelledRow, read_records, rows_from_mapping

#: the export format directory each kind reads
FORMAT_OF = {"llama-guard": "llamaguard", "judge": "kto", "reward": "dpo", "classifier": "kto"}
SPLIT_SALT = "guardstream-finetune"


@dataclass(frozen=True, slots=True)
class Record:
    """One row of a data file, parsed into labelled rows (two for a DPO pair), and where it came from."""

    rows: tuple[LabelledRow, ...]
    raw: Mapping[str, Any]
    where: str


@dataclass(slots=True)
class Splits:
    train: list[Record] = field(default_factory=list)
    test: list[Record] = field(default_factory=list)
    #: the files read: path, sha256, rows
    files: list[dict[str, Any]] = field(default_factory=list)
    #: "export" (the export's own split) or "hash:FRACTION" (split here)
    split: str = "export"
    export_manifest_sha256: str | None = None

    @property
    def digest(self) -> str:
        """sha256 over the files' digests and the split rule: the data manifest digest."""
        blob = json.dumps({"files": [(f["name"], f["sha256"]) for f in self.files], "split": self.split,
                           "export_manifest": self.export_manifest_sha256}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def manifest(self) -> dict[str, Any]:
        return {"files": self.files, "split": self.split, "train_rows": len(self.train), "test_rows": len(self.test),
                "export_manifest_sha256": self.export_manifest_sha256, "digest": self.digest}


def read_file(path: Path) -> list[Record]:
    """Every row of one JSONL/CSV file, parsed; the first unreadable row stops with `file:line: field ...`."""
    records: list[Record] = []
    for line_no, raw in read_records(path):
        try:
            rows = tuple(rows_from_mapping(raw))
        except (ValueError, TypeError) as exc:
            raise DataError(f"{path}:{line_no}: {exc}") from None
        records.append(Record(rows=rows, raw=raw, where=f"{path}:{line_no}"))
    return records


def conversation_key(record: Record) -> str:
    """The conversation a record belongs to: its turns up to the first judged one (answers left out)."""
    first = record.rows[0]
    turns = [[t.role, t.content] for t in first.context] + [[first.prompt_role, first.prompt]]
    return hashlib.sha256(json.dumps(turns, ensure_ascii=False).encode()).hexdigest()


def in_test(record: Record, fraction: float) -> bool:
    bucket = int(hashlib.sha256(f"{SPLIT_SALT}{conversation_key(record)}".encode()).hexdigest()[:16], 16) / 2**64
    return bucket < fraction


def read_splits(data: str | Path, kind: str, test_fraction: float = 0.1) -> Splits:
    """Train and test records for `kind` from an export directory, a format directory, or one file."""
    path = Path(data)
    if not path.exists():
        raise DataError(f"{path} does not exist (pass the directory `guardstream export` wrote, or a file)")
    splits = Splits()
    if path.is_dir():
        fmt_dir = path / FORMAT_OF[kind] if (path / FORMAT_OF[kind]).is_dir() else path
        train_file, test_file = fmt_dir / "train.jsonl", fmt_dir / "test.jsonl"
        if not train_file.is_file():
            raise DataError(f"{path}: no {FORMAT_OF[kind]}/train.jsonl (finetune {kind} reads the export's "
                            f"{FORMAT_OF[kind]} rows: guardstream export --format {FORMAT_OF[kind]})")
        export_manifest = path / "manifest.json"
        if export_manifest.is_file():
            splits.export_manifest_sha256 = sha256_file(export_manifest)
        splits.train = _read_into(splits, train_file, path)
        if test_file.is_file():
            splits.test = _read_into(splits, test_file, path)
    else:
        splits.train = _read_into(splits, path, path.parent)
    if not splits.test:
        records = splits.train
        splits.train = [r for r in records if not in_test(r, test_fraction)]
        splits.test = [r for r in records if in_test(r, test_fraction)]
        splits.split = f"hash:{test_fraction}"
    if not splits.train:
        raise DataError(f"{path}: no training rows")
    return splits


def _read_into(splits: Splits, file: Path, root: Path) -> list[Record]:
    records = read_file(file)
    name = str(file.relative_to(root)) if file.is_relative_to(root) else file.name
    splits.files.append({"name": name, "path": str(file), "sha256": sha256_file(file), "rows": len(records)})
    return records
