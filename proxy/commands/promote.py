"""`guardstream promote`: gate a candidate against the live evaluator, then switch the config to it.

    guardstream promote ARTIFACT --config FILE --evaluator NAME     a finetune artifact takes over NAME's options
    guardstream promote --config FILE --candidate NAME --data EXPORT  a shadow evaluator replaces the one it shadows

Candidate and live evaluator judge the export's test split and a fixed canary set; if the candidate's recall
drops or its false-positive rate rises beyond the bounds on either, nothing changes (exit 1). Otherwise FILE is
rewritten, the old file kept as FILE.bak-TIMESTAMP, and the diff printed (proxy/promotion.py; the gates are
evaluators/finetune/promote.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  guardstream promote runs/lg-v2 --config guardstream.yaml --evaluator llama_guard
  guardstream promote runs/lg-v2 --config guardstream.yaml --evaluator llama_guard --max-recall-drop 0.01 \\
      --max-fpr-rise 0.005 --canary our_canaries.jsonl
  guardstream promote runs/clf --config guardstream.yaml --evaluator classifier --dry-run
  guardstream promote --config guardstream.yaml --candidate clf_candidate --data export/   # after shadowing
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("artifact", type=Path, nargs="?", default=None, metavar="ARTIFACT",
                        help="artifact directory of guardstream finetune (with --evaluator)")
    parser.add_argument("--config", required=True, type=Path, metavar="FILE", help="the guardstream config to change")
    parser.add_argument("--evaluator", metavar="NAME", help="the evaluator in FILE whose options ARTIFACT takes over")
    parser.add_argument("--candidate", metavar="NAME",
                        help="a shadow evaluator in FILE that replaces the live one it shadows (needs --data)")
    parser.add_argument("--policy", default=None, help="with --candidate: only this policy (default: every one)")
    parser.add_argument("--stage", choices=("input", "output"), default=None,
                        help="with --candidate: only this stage (default: both)")
    parser.add_argument("--data", type=Path, default=None, metavar="EXPORT",
                        help="test rows (export directory or file; default: the candidate's own test split)")
    parser.add_argument("--canary", type=Path, default=None, metavar="FILE",
                        help="canary rows (default: the shipped set of clear unsafe and clear safe items)")
    parser.add_argument("--max-recall-drop", type=float, default=0.0,
                        help="largest allowed recall drop against the live evaluator (0.0)")
    parser.add_argument("--max-fpr-rise", type=float, default=0.0,
                        help="largest allowed false-positive-rate rise against the live evaluator (0.0)")
    parser.add_argument("--dry-run", action="store_true", help="check and print the diff, write nothing")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from evaluators.evaluation.compare import print_comparison
    from evaluators.evaluation.datasets import DataError
    from evaluators.finetune.manifest import ArtifactError
    from proxy.config import ConfigError
    from proxy.promotion import promote, promote_shadow

    console, err = Console(), Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
    by_artifact = args.artifact is not None and args.evaluator is not None and args.candidate is None
    by_shadow = args.candidate is not None and args.artifact is None and args.evaluator is None
    if not (by_artifact or by_shadow) or (by_shadow and args.data is None):
        err.print("guardstream promote: name ARTIFACT --evaluator NAME, or --candidate NAME --data EXPORT")
        return 2
    bounds = {"canary": args.canary, "max_recall_drop": args.max_recall_drop, "max_fpr_rise": args.max_fpr_rise,
              "write": not args.dry_run}
    try:
        if by_artifact:
            result = promote(args.artifact, args.config, args.evaluator, data=args.data, **bounds)
        else:
            result = promote_shadow(args.config, args.candidate, policy=args.policy, stage=args.stage,
                                    data=args.data, **bounds)
    except (ArtifactError, ConfigError, DataError, ValueError, OSError) as exc:
        err.print(f"guardstream promote: {exc}")
        return 2
    for label, comparison in result.comparisons.items():
        console.rule(label)
        print_comparison(comparison, ("live", "candidate"), console, show=10)
    table = Table(title="Promotion gates (candidate against live)")
    for col in ("dataset", "metric", "live", "candidate", "allowed", "verdict"):
        table.add_column(col)
    for g in result.gates:
        allowed = f">= {g.live - g.bound:.4f}" if g.metric == "recall" else f"<= {g.live + g.bound:.4f}"
        table.add_row(g.dataset, g.metric, f"{g.live:.4f}", f"{g.candidate:.4f}", allowed,
                      "[green]ok[/green]" if g.ok else "[red]REFUSED[/red]")
    console.print(table)
    if not result.accepted:
        err.print(f"guardstream promote: refused; {args.config} is unchanged")
        return 1
    console.print(result.diff or "(no change)", markup=False, highlight=False)
    if result.written:
        console.print(f"promoted: {args.config} now serves {args.artifact or args.candidate} "
                      f"(previous file: {result.backup})")
    else:
        console.print("dry run: nothing written")
    return 0
