"""`guardstream` command line: thin, it parses arguments and calls into the rooms.

Each subcommand lives in its own module exposing `configure(parser)` and
`run(args) -> int`. Modules must stay light at import time (heavy libraries
are imported inside `run`), so `guardstream --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("proxy.commands.serve", "run the guardrail proxy"),
    "demo": ("proxy.commands.demo", "start proxy + demo upstream, send example traffic, print what happened"),
    "hash-key": ("proxy.commands.hash_key", "print the sha256 of a client API key for the config"),
    "eval": ("proxy.commands.eval", "measure an evaluator on labelled data"),
    "train": ("evaluators.commands.train", "train the CPU safety classifier from KTO-format data"),
    "finetune": ("proxy.commands.finetune", "fine-tune an evaluator (llama-guard, judge, reward, classifier) "
                 "on exported reviews"),
    "promote": ("proxy.commands.promote", "check a fine-tuned candidate against the live evaluator, then "
                "point the config at it"),
    "check-data": ("evaluators.commands.check_data", "screen a dataset with data-quality rules"),
    "review": ("consumers.commands.review", "consume audit events into the review store and serve the review UI"),
    "export": ("consumers.commands.export", "export reviewed labels as KTO / DPO / Llama Guard SFT datasets"),
    "metrics": ("consumers.commands.metrics", "aggregate audit events and serve the ops dashboard"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guardstream", description="Streaming guardrail proxy for LLM traffic.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # command not built yet
            raise
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
