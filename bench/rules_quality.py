"""How often the rule evaluators fire on benign prompts, and how much prompt injection they catch.

    python -m bench.rules_quality [--datasets /work/shared/datasets] [--show 5] [--limit 5000]

Benign: every prompt set under `datasets/benign/` (rows their `review_flags.csv`
marks as not benign are left out). Injection: `deepset-prompt-injections/train.jsonl`
(label 1 = injection, 0 = benign; read while writing the heuristics) and the attack
prompts of `jbb-artifacts` (held out: only ever scored, never read for tuning).
A dev tool, not a test: it prints tables and, with `--show`, the texts that
fired so a person can read them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evaluators.registry import create

csv.field_size_limit(sys.maxsize)


def _jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _csv(path: Path, **kw) -> Iterator[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh, **kw)


def benign_sets(root: Path) -> dict[str, list[str]]:
    """Prompt texts per benign source, known non-benign rows removed."""
    b = root / "benign"
    flagged_acp = {int(r["row"]) for r in _csv(b / "awesome-chatgpt-prompts/review_flags.csv")}
    sets: dict[str, list[str]] = {
        "awesome-chatgpt-prompts": [
            r["prompt"] for i, r in enumerate(_csv(b / "awesome-chatgpt-prompts/prompts.csv")) if i not in flagged_acp
        ],
        "banking77": [r["text"] for f in ("train.csv", "test.csv") for r in _csv(b / "banking77" / f)],
        "clinc150": [t for rows in json.loads((b / "clinc150/data_full.json").read_text()).values() for t, _ in rows],
        "dolly-15k-partial": [r["instruction"] for r in _jsonl(b / "dolly-15k-partial/instructions.jsonl")],
        "flan-cot": [
            line.split("\t", 1)[0].replace("\\n", "\n")
            for f in sorted((b / "flan-cot").glob("*.tsv"))
            for line in f.read_text(encoding="utf-8").splitlines()
        ],
        "gpteacher": [
            (r["instruction"] + "\n" + r["input"]).strip()
            for f in ("codegen-instruct.json", "roleplay-simple-deduped-roleplay-instruct.json")
            for r in json.loads((b / "gpteacher" / f).read_text())
        ],
        "gsm8k": [r["question"] for f in ("train.jsonl", "test.jsonl") for r in _jsonl(b / "gsm8k" / f)],
        "hwu64": [r["answer_from_user"] for r in _csv(b / "hwu64/hwu64_cv_testsets_combined.csv")],
        "ifeval": [r["prompt"] for r in _jsonl(b / "ifeval/input_data.jsonl")],
        "nq-open": [r["question"] for f in sorted((b / "nq-open").glob("NQ-open*.jsonl")) for r in _jsonl(f)],
        "oasst-eval-prompts": _oasst(b / "oasst-eval-prompts"),
        "self-instruct": [
            (r["instruction"] + "\n" + (r["instances"][0]["input"] if r.get("instances") else "")).strip()
            for f in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl")
            for r in _jsonl(b / "self-instruct" / f)
        ],
        "t0-train-50k-templates": [r["prompt"] for r in _jsonl(b / "t0-train-50k-templates/sample.jsonl")],
        "truthfulqa": [r["Question"] for r in _csv(b / "truthfulqa/TruthfulQA.csv")],
    }
    return sets


def _oasst(d: Path) -> list[str]:
    unsafe_lottery = {59, 262, 261, 256}  # review_flags.csv (unsafe or borderline)
    texts = [json.loads(line) for line in (d / "en_100_text.jsonl").read_text().splitlines() if line.strip()]
    texts += [
        json.loads(line)
        for i, line in enumerate((d / "prompt_lottery_en_250_text.jsonl").read_text().splitlines())
        if line.strip() and i not in unsafe_lottery
    ]
    texts += [
        json.loads(line)
        for i, line in enumerate((d / "multilingual-60.jsonl").read_text().splitlines())
        if line.strip() and i % 5 != 0
    ]
    unsafe_sft = {("result_03", 0), ("result_09", 66), ("result_03", 93), ("result_05", 8)}
    for r in _jsonl(d / "oasst_sft_1k_prompts_en.jsonl"):
        tag = Path(r["source_file"]).name[:9]
        if (tag, r["index"]) not in unsafe_sft:
            texts.append(r["prompt"])
    return texts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=Path("/work/shared/datasets"))
    ap.add_argument("--show", type=int, default=0, help="print up to N texts that fired, per engine and set")
    ap.add_argument("--limit", type=int, default=0, help="at most N texts per benign set (0: all)")
    args = ap.parse_args(argv)
    console = Console()
    engines = {t: create(t, t) for t in ("pii", "secrets", "injection", "unicode")}
    sets = benign_sets(args.datasets)

    table = Table(title="Rule evaluators on benign prompts: share of texts flagged")
    table.add_column("set")
    table.add_column("texts", justify="right")
    for t in engines:
        table.add_column(t, justify="right")
    totals = {t: 0 for t in engines}
    n_total = 0
    shown: list[tuple[str, str, str]] = []
    for set_name, texts in sets.items():
        if args.limit:
            texts = texts[: args.limit]
        n_total += len(texts)
        row = [set_name, str(len(texts))]
        for t, ev in engines.items():
            hits = [x for x in texts if not ev.judge(x).safe]
            totals[t] += len(hits)
            row.append(f"{len(hits)} ({100 * len(hits) / max(1, len(texts)):.2f}%)")
            shown += [(t, set_name, x) for x in hits[: args.show]]
        table.add_row(*row)
    table.add_row(
        "ALL", str(n_total), *[f"{totals[t]} ({100 * totals[t] / n_total:.2f}%)" for t in engines], style="bold"
    )
    console.print(table)

    rows = list(_jsonl(args.datasets / "deepset-prompt-injections/train.jsonl"))
    inj = engines["injection"]
    pos = [r["text"] for r in rows if r["label"] == 1]
    neg = [r["text"] for r in rows if r["label"] == 0]
    tp = sum(not inj.judge(x).safe for x in pos)
    fp = sum(not inj.judge(x).safe for x in neg)
    t2 = Table(title="injection on deepset-prompt-injections/train.jsonl")
    for c in ("label", "texts", "flagged", "rate"):
        t2.add_column(c, justify="right")
    t2.add_row("1 (injection)", str(len(pos)), str(tp), f"{100 * tp / len(pos):.1f}% recall")
    t2.add_row("0 (benign)", str(len(neg)), str(fp), f"{100 * fp / len(neg):.1f}% FPR")
    console.print(t2)
    # held out: never used to write or tune the heuristics, only to report them
    jbb = [r for r in _jsonl(args.datasets / "jbb-artifacts/jbb_artifacts_flat.jsonl") if r.get("prompt")]
    t3 = Table(title="injection on jbb-artifacts attack prompts (held out; GCG/DSN are token-level suffixes)")
    for c in ("method", "unique prompts", "flagged", "rate"):
        t3.add_column(c, justify="right")
    by_method: dict[str, set[str]] = {}
    for r in jbb:
        by_method.setdefault(r["method"], set()).add(r["prompt"])
    for method, prompts in sorted(by_method.items()):
        hit = sum(not inj.judge(x).safe for x in prompts)
        t3.add_row(method, str(len(prompts)), str(hit), f"{100 * hit / len(prompts):.1f}%")
    console.print(t3)
    if args.show:
        for t, set_name, x in shown:
            v = engines[t].judge(x)
            console.print(
                f"[bold]{t}[/] {set_name}: {[(f.kind, x[f.start : f.end][:60]) for f in v.findings]}  <- {x[:160]!r}"
            )
        for x in [x for x in neg if not inj.judge(x).safe][: args.show]:
            console.print(f"[bold]injection FP (deepset 0)[/]: {x[:200]!r}")
        for x in [x for x in pos if inj.judge(x).safe][: args.show]:
            console.print(f"[bold]injection miss (deepset 1)[/]: {x[:200]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
