"""`guardstream export`: reviewed labels -> KTO / DPO / Llama Guard SFT JSONL, split by conversation.

    guardstream export --db var/review.db --out datasets/review --format all
"""

from __future__ import annotations

import argparse

from consumers.commands.common import add_config_arguments, load_settings_or_exit, open_store_or_exit


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--format", default="all", choices=["kto", "dpo", "llamaguard", "all"])
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of conversations in test")
    parser.add_argument("--split-salt", default="", help="change to draw a different (still deterministic) split")
    parser.add_argument("--kto-stages", default="input,output",
                        help="stages in the KTO file; 'output' for TRL KTOTrainer (input rows have no completion)")
    parser.add_argument("--comparison-margin", type=float, default=None, metavar="M",
                        help="unreviewed comparisons whose judge margin is at least M go to dpo_unconfirmed/ "
                             "(default 1.0: reward units, or both orders of an LLM judge agreeing)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from consumers.export import DEFAULT_COMPARISON_MARGIN, FORMATS, export, summary_tables

    settings = load_settings_or_exit(args)
    if not 0.0 <= args.test_fraction < 1.0:
        print("guardstream export: --test-fraction must be in [0, 1)")
        return 2
    formats = FORMATS if args.format == "all" else (args.format,)
    stages = tuple(s.strip() for s in args.kto_stages.split(",") if s.strip())
    console = Console()
    store = open_store_or_exit(settings, "export")
    try:
        with Progress(console=console, transient=True, disable=args.quiet) as progress:
            report = export(store, args.out, formats, test_fraction=args.test_fraction, salt=args.split_salt,
                            kto_stages=stages, progress=progress,
                            comparison_margin=(DEFAULT_COMPARISON_MARGIN if args.comparison_margin is None
                                               else args.comparison_margin))
    finally:
        store.dispose()
    for table in summary_tables(report):
        console.print(table)
    return 0
