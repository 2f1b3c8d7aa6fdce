"""Markdown tables for docs/classifier.md from an artifact's metrics.json and the cross-validation JSONs.

    python -m evaluators.classifier.report [--artifact DIR] [--loso NAME=FILE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from evaluators.classifier import DEFAULT_MODEL_DIR


def _f(x: Any) -> str:
    return "" if x is None else f"{x:.3f}"


def slices_table(slices: dict[str, Any], names: list[str] | None = None) -> str:
    lines = ["| slice | n | unsafe | precision | recall | F1 | FPR | AUPRC |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names or sorted(slices):
        if name not in slices:
            continue
        m = slices[name]
        lines.append(f"| {name} | {m['n']} | {m['tp'] + m['fn']} | {_f(m['precision'])} | {_f(m['recall'])} | "
                     f"{_f(m['f1'])} | {_f(m['fpr'])} | {_f(m.get('auprc'))} |")
    return "\n".join(lines)


def per_source_table(rows: list[dict[str, Any]], strict: list[dict[str, Any]] | None = None) -> str:
    strict_by = {(r["source"], r["label"]): r for r in strict or []}
    head = "| source | stage | label | n | flagged (recall or FPR) |" + (" flagged, strict |" if strict else "")
    lines = [head, "|---|---|---|---:|---:|" + ("---:|" if strict else "")]
    for r in sorted(rows, key=lambda r: (r["stage"], r["label"], r["source"])):
        cell = f"| {r['source']} | {r['stage']} | {r['label']} | {r['n']} | {r['flagged']:.3f} |"
        if strict:
            cell += f" {strict_by[(r['source'], r['label'])]['flagged']:.3f} |"
        lines.append(cell)
    return "\n".join(lines)


def loso_table(runs: dict[str, list[dict[str, Any]]]) -> str:
    names = list(runs)
    by_source: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for name, results in runs.items():
        for r in results:
            by_source.setdefault((r["source"], r["label"]), {})[name] = r
    lines = ["| held-out source | stage | label | n | " + " | ".join(f"{n}: flagged / AUC" for n in names) + " |",
             "|---|---|---|---:|" + "---:|" * len(names)]
    for (source, label), cells in sorted(by_source.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        any_cell = next(iter(cells.values()))
        row = f"| {source} | {any_cell.get('stage', '')} | {label} | {any_cell['n']} |"
        for n in names:
            c = cells.get(n)
            row += f" {c['flagged']:.3f} / {c['auc']:.3f} |" if c else " |"
        lines.append(row)
    for n in names:
        unsafe = [r for r in runs[n] if r["label"] == "unsafe"]
        safe = [r for r in runs[n] if r["label"] == "safe"]
        if unsafe and safe:
            lines.append(f"| **mean ({n})** | | | | recall {sum(r['flagged'] for r in unsafe) / len(unsafe):.3f}, "
                         f"FPR {sum(r['flagged'] for r in safe) / len(safe):.3f}, "
                         f"AUC {sum(r['auc'] for r in runs[n]) / len(runs[n]):.3f} |")
    return "\n".join(lines)


def compare_table(new_rows: list[dict[str, Any]], previous: dict[str, Any]) -> str:
    """Held-out sources: the shipped model against a `guardstream eval` report of another model on the same rows."""
    per = previous["metrics"]["per_source"]
    lines = ["| held-out source | stage | label | n | previous default | shipped |", "|---|---|---|---:|---:|---:|"]
    for r in sorted(new_rows, key=lambda r: (r["stage"], r["label"], r["source"])):
        p = per.get(r["source"], {})
        old = p.get("recall") if r["label"] == "unsafe" else p.get("fpr")
        lines.append(f"| {r['source']} | {r['stage']} | {r['label']} | {r['n']} | {_f(old)} | {r['flagged']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--loso", nargs="*", default=[], metavar="NAME=FILE")
    parser.add_argument("--previous", type=Path, default=None, help="a guardstream eval report on the held-out rows")
    args = parser.parse_args(argv)
    m = json.loads((args.artifact / "metrics.json").read_text(encoding="utf-8"))
    out = [f"## version {m['version']}", "", "### thresholds", "```json", json.dumps(m["thresholds"], indent=1), "```"]
    for split in ("dev", "heldout"):
        for point in ("default", "strict"):
            out += ["", f"### {split}, {point}", slices_table(m[split][point]["slices"])]
        out += ["", f"### {split} per source", per_source_table(m[split]["default"]["per_source"],
                                                                  m[split]["strict"]["per_source"])]
    for stage, table in m["dev_operating_points"].items():
        out += ["", f"### dev operating points, {stage}", "| threshold | precision | recall | F1 | FPR |",
                "|---:|---:|---:|---:|---:|"]
        out += [f"| {r['threshold']} | {_f(r['precision'])} | {_f(r['recall'])} | {_f(r['f1'])} | {_f(r['fpr'])} |"
                for r in table]
    out += ["", "### cascade zones (held-out sources + dev)", "| low / high | decided alone | unsafe cleared | "
            "recall lost | safe flagged | FPR added |", "|---|---:|---:|---:|---:|---:|"]
    out += [f"| {z['low']} / {z['high']} | {z['decided_alone']:.3f} | {z['unsafe_cleared']} | {z['recall_lost']:.3f} | "
            f"{z['safe_flagged']} | {z['fpr_added']:.3f} |" for z in m["cascade_zones"]]
    out += ["", "### int8 vs fp32", "```json", json.dumps(m.get("int8_vs_fp32"), indent=1), "```",
            "", "### categories", json.dumps(m.get("categories_dev"))]
    if args.previous:
        prev = json.loads(args.previous.read_text(encoding="utf-8"))
        out += ["", "### held-out sources: previous default vs shipped (flagged: recall or FPR)",
                compare_table(m["heldout"]["default"]["per_source"], prev),
                "", f"previous overall: {json.dumps({k: prev['metrics'][k] for k in ('precision', 'recall', 'f1', 'fpr')})}"]
    if args.loso:
        runs = {}
        for spec in args.loso:
            name, _, file = spec.partition("=")
            runs[name] = json.loads(Path(file).read_text(encoding="utf-8"))
        out += ["", "### leave one source out", loso_table(runs)]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
