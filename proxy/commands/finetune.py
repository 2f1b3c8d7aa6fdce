"""`guardstream finetune KIND --data EXPORT --out DIR`: fine-tune an evaluation expert on reviewed traffic.

KIND is llama-guard, judge, reward or classifier (see evaluators/finetune/). The run writes an artifact
directory (adapter or model, tokenizer, manifest, before/after metrics on the test split); `--resume`
continues an interrupted run from its newest checkpoint.

The training is the evaluators' (`evaluators.finetune.run`); this command adds the proxy's config file, whose
llama_guard evaluator a run may render its prompts like (`--config FILE --evaluator NAME`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  guardstream finetune llama-guard --data export/ --base models/Llama-Guard-3-1B --out runs/lg-v2
  guardstream finetune judge --data export/ --base models/Qwen2.5-0.5B-Instruct --categories quality.yaml \\
      --out runs/quality-judge
  guardstream finetune reward --data export/ --base models/Qwen2.5-0.5B-Instruct --out runs/reward
  guardstream finetune classifier --data export/ --out runs/clf
  guardstream finetune llama-guard --data export/ --base models/Llama-Guard-3-1B --out runs/lg-v2 --resume
"""


def configure(parser: argparse.ArgumentParser) -> None:
    from evaluators.finetune.options import KINDS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("kind", choices=KINDS, metavar="KIND", help=f"what to train: {', '.join(KINDS)}")
    parser.add_argument("--data", required=True, type=Path, metavar="EXPORT",
                        help="the directory `guardstream export` wrote (or one JSONL file)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="artifact directory to write")
    parser.add_argument("--base", default=None, metavar="MODEL_DIR",
                        help="local base model directory (classifier: the artifact to compare with; default shipped)")
    parser.add_argument("--categories", type=Path, default=None, metavar="FILE",
                        help="YAML/JSON list of {code, name, description}: the categories the prompt lists "
                             "(judge: required; llama-guard: a team's own categories)")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="llama-guard/judge: render prompts as the evaluator --evaluator NAME of FILE does "
                             "(its categories, exclusions, prompt format and budgets)")
    parser.add_argument("--evaluator", default=None, metavar="NAME", help="the llama_guard evaluator in --config")
    parser.add_argument("--model-size", choices=("1b", "8b"), default=None,
                        help="Llama Guard default category list (1b: S1-S13; default: from the model name)")
    parser.add_argument("--epochs", type=float, default=None,
                        help="passes over the training rows (2; classifier: 6, exports are small)")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after N optimisation steps (overrides epochs)")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="AdamW learning rate (2e-4)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per device step (8)")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (1)")
    parser.add_argument("--max-length", type=int, default=4096, help="longer rows are left out, counted (4096)")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank (16)")
    parser.add_argument("--lora-alpha", type=int, default=32, help="LoRA alpha (32)")
    parser.add_argument("--lora-dropout", type=float, default=0.05, help="LoRA dropout (0.05)")
    parser.add_argument("--target-modules", default="all-linear",
                        help="LoRA target modules, comma-separated, or all-linear (default)")
    parser.add_argument("--seed", type=int, default=0, help="seed (0)")
    parser.add_argument("--test-fraction", type=float, default=0.1,
                        help="held-out share when the data has no test split of its own (0.1)")
    parser.add_argument("--save-steps", type=int, default=200, help="checkpoint every N steps (200)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in DIR")
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--torch-threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--no-before", action="store_true", help="skip measuring the base on the test split")
    parser.add_argument("--input-format", choices=("plain", "chat_template"), default="plain",
                        help="reward: conversation as 'Role: text' turns, or the tokenizer's chat template")


def evaluator_render_options(config: Path, name: str | None) -> dict[str, Any]:
    """The rendering options of a configured llama_guard evaluator (one-line errors otherwise)."""
    from evaluators.finetune.options import render_options
    from proxy.config import load_settings

    settings = load_settings(config)
    if name is None or name not in settings.evaluators:
        raise ValueError(f"--config needs --evaluator NAME, one of: {', '.join(sorted(settings.evaluators))}")
    cfg = settings.evaluators[name]
    if cfg.type != "llama_guard":
        raise ValueError(f"evaluator {name!r} in {config} is a {cfg.type}, not a llama_guard")
    return render_options(cfg.options)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from evaluators.evaluation.datasets import DataError
    from evaluators.finetune import run as run_kind
    from evaluators.finetune.lora import FinetuneError
    from evaluators.finetune.manifest import ArtifactError
    from evaluators.finetune.measure import print_before_after
    from evaluators.finetune.options import FinetuneOptions, read_categories
    from proxy.config import ConfigError

    console, err = Console(), Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

    try:
        categories = read_categories(args.categories) if args.categories else None
        rendering = evaluator_render_options(args.config, args.evaluator) if args.config else {}
    except (OSError, ValueError, ConfigError) as exc:
        err.print(f"guardstream finetune: {exc}")
        return 2
    modules = args.target_modules if args.target_modules == "all-linear" else args.target_modules.split(",")
    opts = FinetuneOptions(
        data=args.data, out=args.out, base=args.base, max_steps=args.max_steps,
        epochs=args.epochs if args.epochs is not None else (6.0 if args.kind == "classifier" else 2.0),
        learning_rate=args.learning_rate, batch_size=args.batch_size, grad_accum=args.grad_accum,
        max_length=args.max_length, lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        target_modules=modules, seed=args.seed, test_fraction=args.test_fraction, resume=args.resume,
        save_steps=args.save_steps, device=args.device, categories=categories or rendering.pop("categories", None),
        model_size=args.model_size or rendering.pop("model_size", None), evaluator_options=rendering,
        before=not args.no_before, torch_threads=args.torch_threads, input_format=args.input_format, console=err)
    _quiet_libraries()
    try:
        result = run_kind(args.kind, opts)
    except (DataError, FinetuneError, ArtifactError, ValueError, OSError) as exc:
        err.print(f"guardstream finetune {args.kind}: {exc}")
        return 2
    if result.metrics.get("after"):
        print_before_after(result.metrics, console, f"{args.kind} on the test split: base vs fine-tuned")
    console.print(f"artifact written to {args.out} (manifest.json, metrics.json); "
                  f"serve it with evaluator options {result.manifest['evaluator']['options']}")
    return 0


def _quiet_libraries() -> None:
    """Library progress bars and load reports would drown the rich bar: keep warnings and errors only."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # transformers' logging is unannotated
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers' logging is unannotated
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass
