"""Dataset export: reviewed labels in the review store -> KTO / DPO / Llama Guard SFT JSONL (see datasets.py).

    OUT/kto/train.jsonl  OUT/kto/test.jsonl
    OUT/dpo/train.jsonl  OUT/dpo/test.jsonl                          (+ confirmed comparisons)
    OUT/dpo_unconfirmed/train.jsonl  OUT/dpo_unconfirmed/test.jsonl  (unreviewed comparisons above a margin)
    OUT/llamaguard/train.jsonl  OUT/llamaguard/test.jsonl
    OUT/manifest.json    (counts, options, file digests)

Which events count: each reviewer's latest label; "not sure" abstains; reviewers who
disagree leave the event out; events stored as a hash only cannot be exported.
Comparisons of a candidate model with the baseline join the DPO rows (comparison_rows.py).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consumers import llama_guard_render
from consumers.comparison_rows import comparison_rows
from consumers.consensus import consensus
from consumers.datasets import Example, Rows, dpo_rows, example_from_event, kto_rows, llama_guard_rows
from consumers.store import Store, queries
from consumers.store import comparisons as stored_comparisons
from consumers.store.db import safe_url

FORMATS = ("kto", "dpo", "llamaguard")
#: unreviewed comparisons enter dpo_unconfirmed/ when the judge's |margin| is at least this (see comparison_rows)
DEFAULT_COMPARISON_MARGIN = 1.0


@dataclass(slots=True)
class ExportReport:
    out_dir: Path
    reviewed_events: int = 0
    exported_events: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    redacted: int = 0
    formats: dict[str, dict[str, Any]] = field(default_factory=dict)


def collect(store: Store, report: ExportReport, progress: Any = None) -> list[Example]:
    """Every exportable reviewed event as an Example; what is left out is counted in `report.skipped`."""
    examples: list[Example] = []
    with store.read() as conn:
        total = queries.reviewed_count(conn)
        task = progress.add_task("reading reviewed events", total=total) if progress else None
        for event in queries.reviewed_events(conn):
            report.reviewed_events += 1
            if progress:
                progress.advance(task)
            decision = consensus(event.labels)
            if decision.label is None:
                report.skipped[f"reviewers: {decision.reason}"] += 1
                continue
            found = example_from_event(event.event_id, event.payload, decision.label == "unsafe",
                                       decision.categories)
            if isinstance(found, str):
                report.skipped[found] += 1
                continue
            examples.append(found)
            report.exported_events += 1
            report.labels[f"{found.stage} {decision.label}"] += 1
            report.categories.update(decision.categories)
            report.redacted += found.redacted
    return examples


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> str:
    """Write rows, one JSON object per line; returns the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def export(store: Store, out_dir: str | Path, formats: Sequence[str] = FORMATS, *, test_fraction: float = 0.1,
           salt: str = "", kto_stages: Sequence[str] = ("input", "output"), progress: Any = None,
           comparison_margin: float = DEFAULT_COMPARISON_MARGIN) -> ExportReport:
    out = Path(out_dir)
    report = ExportReport(out_dir=out)
    examples = collect(store, report, progress)
    compared = None
    if "dpo" in formats:
        with store.read() as conn:
            compared = comparison_rows(stored_comparisons.all_comparisons(conn), comparison_margin)
        report.skipped.update(compared.skipped)

    def dpo_with_comparisons() -> Rows:
        rows = dpo_rows(examples)
        if compared is not None:
            for key, (conversation, row) in compared.confirmed.rows.items():
                rows.add(key, conversation, row, True)
        return rows

    builders: dict[str, Callable[[], Rows]] = {
        "kto": lambda: kto_rows(examples, kto_stages),
        "dpo": dpo_with_comparisons,
        "dpo_unconfirmed": lambda: compared.unconfirmed if compared is not None else Rows(),
        "llamaguard": lambda: llama_guard_rows(examples, llama_guard_render.RENDERER),
    }
    files: dict[str, str] = {}
    for name in [*formats, *(["dpo_unconfirmed"] if "dpo" in formats else [])]:
        rows: Rows = builders[name]()
        train, test = rows.split(test_fraction, salt)
        for split, split_rows in (("train", train), ("test", test)):
            files[f"{name}/{split}.jsonl"] = write_jsonl(out / name / f"{split}.jsonl", split_rows)
        report.formats[name] = {"train": len(train), "test": len(test), "duplicates": rows.duplicates,
                                "conflicts": rows.conflicts, "skipped": dict(rows.skipped)}
    manifest = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": safe_url(store.url), "test_fraction": test_fraction, "split_salt": salt,
        "kto_stages": list(kto_stages), "comparison_margin": comparison_margin,
        "comparisons": ({"confirmed": len(compared.confirmed.rows), "unconfirmed": len(compared.unconfirmed.rows)}
                        if compared is not None else None),
        "reviewed_events": report.reviewed_events,
        "exported_events": report.exported_events, "redacted_events": report.redacted,
        "skipped": dict(report.skipped), "labels": dict(report.labels), "categories": dict(report.categories),
        "formats": report.formats, "files": files,
        "llama_guard_renderer": f"{llama_guard_render.RENDERER.__module__}.{llama_guard_render.RENDERER.__name__}",
        "llama_guard_prompt_format": llama_guard_render.FORMAT,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return report


def summary_tables(report: ExportReport) -> list[Any]:
    """rich tables: rows per format and split; labels and categories; what was skipped and why."""
    from rich.table import Table

    formats = Table(title=f"Export to {report.out_dir}")
    for col in ("format", "train", "test", "duplicates dropped", "conflicts dropped", "skipped"):
        formats.add_column(col, justify="left" if col in ("format", "skipped") else "right")
    for name, c in report.formats.items():
        reasons = ", ".join(f"{k}: {v}" for k, v in c["skipped"].items()) or "-"
        formats.add_row(name, str(c["train"]), str(c["test"]), str(c["duplicates"]), str(c["conflicts"]), reasons)

    labels = Table(title=f"Exported events: {report.exported_events} of {report.reviewed_events} reviewed "
                         f"({report.redacted} redacted)")
    labels.add_column("label / category")
    labels.add_column("events", justify="right")
    for key, n in sorted(report.labels.items()):
        labels.add_row(key, str(n))
    for key, n in sorted(report.categories.items(), key=lambda kv: (-kv[1], kv[0])):
        labels.add_row(f"  category {key}", str(n))

    skipped = Table(title="Reviewed events not exported")
    skipped.add_column("reason")
    skipped.add_column("events", justify="right")
    for key, n in sorted(report.skipped.items()):
        skipped.add_row(key, str(n))
    if not report.skipped:
        skipped.add_row("-", "0")
    return [formats, labels, skipped]
