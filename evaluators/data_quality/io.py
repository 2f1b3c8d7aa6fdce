"""Streaming JSONL/CSV readers and writers for batch screening (`guardstream check-data`).

Readers yield `(record, raw, problem)` one row at a time: `record` is the parsed
value (None when the row cannot be read), `raw` the original row (bytes line for
JSONL, list of cells for CSV) so accepted rows are written back unchanged, and
`problem` a parse message or None. Memory is one row, whatever the file length.

CSV cells are strings; they are converted by the rule set's field types
(number/integer/boolean, numeric timestamps), and an empty cell is null.
Files ending in `.gz` are read and written gzip-compressed.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

Format = Literal["jsonl", "csv"]
Row = tuple[Any, Any, str | None]

_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
_CSV_SUFFIXES = {".csv"}


class InputError(ValueError):
    """The input cannot be screened at all (unknown format, no CSV header...)."""


def detect_format(path: str | os.PathLike[str], explicit: str | None = None) -> Format:
    if explicit and explicit != "auto":
        if explicit not in ("jsonl", "csv"):
            raise InputError(f"unknown format {explicit!r} (jsonl or csv)")
        return explicit  # type: ignore[return-value]  # narrowed by the check above
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix in _CSV_SUFFIXES:
        return "csv"
    raise InputError(f"cannot tell the format of {str(path)!r} from its name: use --format jsonl|csv")


def _is_gz(path: str | os.PathLike[str]) -> bool:
    return str(path).lower().endswith(".gz")


# -- conversions for CSV cells ------------------------------------------------------------------
def _number(cell: str) -> Any:
    try:
        return int(cell)
    except ValueError:
        try:
            return float(cell)
        except ValueError:
            return cell  # left as text: the type rule reports it


_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _boolean(cell: str) -> Any:
    return _BOOLS.get(cell.strip().lower(), cell)


def _timestamp(cell: str) -> Any:
    stripped = cell.strip()
    if stripped[:1].isdigit() or stripped[:1] in "-+.":
        converted = _number(stripped)
        if not isinstance(converted, str):
            return converted
    return cell


_CONVERTERS: dict[str, Callable[[str], Any]] = {"number": _number, "integer": _number, "boolean": _boolean,
                                                "timestamp": _timestamp}


def csv_converters(field_types: Mapping[str, str]) -> dict[str, Callable[[str], Any]]:
    """Column name -> cell converter, from a rule set's `{field: type}`."""
    return {name: _CONVERTERS[t] for name, t in field_types.items() if t in _CONVERTERS}


class RecordSource:
    """A JSONL or CSV file read one row at a time, with the byte position for a progress bar."""

    def __init__(self, path: str | os.PathLike[str], fmt: Format, field_types: Mapping[str, str] | None = None):
        self.path = Path(path)
        self.format = fmt
        self.fieldnames: list[str] | None = None
        self._converters = csv_converters(field_types or {})
        try:
            self.size = self.path.stat().st_size
            self._raw: io.BufferedReader = open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
        self._binary: io.BufferedIOBase = gzip.GzipFile(fileobj=self._raw) if _is_gz(path) else self._raw
        self._csv: Any = None
        if fmt == "csv":
            text = io.TextIOWrapper(self._binary, encoding="utf-8-sig", newline="")
            self._csv = csv.reader(text)
            try:
                header = next(self._csv)
            except StopIteration:
                header = []
            except (UnicodeDecodeError, csv.Error, OSError, EOFError) as exc:
                self.close()
                raise InputError(f"cannot read the CSV header of {str(path)!r}: {exc}") from None
            if not header or not any(h.strip() for h in header):
                self.close()
                raise InputError(f"{str(path)!r} has no CSV header row")
            self.fieldnames = header

    def position(self) -> int:
        """Bytes consumed from disk so far (read-ahead included)."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def __iter__(self) -> Iterator[Row]:
        return self._iter_jsonl() if self.format == "jsonl" else self._iter_csv()

    def _iter_jsonl(self) -> Iterator[Row]:
        loads = json.loads
        first = first_record = True
        try:
            for line in self._binary:
                if first:
                    first = False
                    if line.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
                        line = line[3:]
                if not line.strip():
                    continue
                try:
                    value = loads(line)
                except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                    if first_record and line.lstrip().startswith(b"["):
                        raise InputError(f"{str(self.path)!r} looks like one JSON array over many lines, not "
                                         "JSON Lines: convert it first, e.g. `jq -c '.[]' in.json > in.jsonl`") from None
                    yield None, line, f"invalid JSON: {getattr(exc, 'msg', None) or exc}"
                else:
                    yield value, line, None
                first_record = False
        except (OSError, EOFError) as exc:  # truncated or corrupt gzip
            raise InputError(f"cannot read {str(self.path)!r}: {exc}") from None

    def _iter_csv(self) -> Iterator[Row]:
        header = self.fieldnames or []
        width = len(header)
        plan = tuple((name, self._converters.get(name)) for name in header)
        try:
            for cells in self._csv:
                if not cells:
                    continue
                if len(cells) != width:
                    yield None, cells, f"row has {len(cells)} values, the header has {width}"
                    continue
                record = {}
                for (name, convert), cell in zip(plan, cells):
                    record[name] = None if cell == "" else (convert(cell) if convert else cell)
                yield record, cells, None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"cannot read {str(self.path)!r} as CSV: {exc}") from None
        except (OSError, EOFError) as exc:
            raise InputError(f"cannot read {str(self.path)!r}: {exc}") from None

    def close(self) -> None:
        if self._binary is not self._raw:
            self._binary.close()
        self._raw.close()

    def __enter__(self) -> RecordSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordSink:
    """Writes accepted rows unchanged, or rejected rows with their failures, in the input's format.

    Rejected JSONL lines: `{"index", "record" (or "line" when unreadable), "failures": [...]}`.
    Rejected CSV rows: the original cells plus `_index` and `_failures` ("rule:field: message; ...").
    """

    def __init__(self, path: str | os.PathLike[str], fmt: Format, *, rejected: bool,
                 fieldnames: list[str] | None = None):
        self.path = Path(path)
        self.format = fmt
        self.rejected = rejected
        self.count = 0
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        binary: gzip.GzipFile | io.BufferedWriter = gzip.GzipFile(self.path, "wb") if _is_gz(path) else open(self.path, "wb")
        self._binary = binary
        self._writer: Any = None
        if fmt == "csv":
            self._text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
            self._writer = csv.writer(self._text)
            header = list(fieldnames or [])
            self._writer.writerow(header + ["_index", "_failures"] if rejected else header)

    def write(self, index: int, record: Any, raw: Any, failures: Any) -> None:
        self.count += 1
        if self.format == "csv":
            if self.rejected:
                reasons = "; ".join(f"{f.rule_id}: {f.message}" for f in failures)
                self._writer.writerow(list(raw) + [index, reasons])
            else:
                self._writer.writerow(raw)
            return
        if not self.rejected:
            self._binary.write(raw if raw.endswith(b"\n") else raw + b"\n")
            return
        entry: dict[str, Any] = {"index": index}
        if record is None and raw is not None:
            entry["line"] = raw.decode("utf-8", "replace").rstrip("\r\n")
        else:
            entry["record"] = record
        entry["failures"] = [f.to_dict() for f in failures]
        self._binary.write(json.dumps(entry, ensure_ascii=False, default=str).encode() + b"\n")

    def close(self) -> None:
        if self.format == "csv":
            self._text.close()  # closes the binary file under it
        else:
            self._binary.close()

    def __enter__(self) -> RecordSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
