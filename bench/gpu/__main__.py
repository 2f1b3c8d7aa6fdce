"""LoRA fine-tuning and LoRA serving on a GPU, in one run of under 8 minutes.

    python -m bench.gpu                         # a model of Llama Guard 3 1B's shape with random weights
    python -m bench.gpu --model /models/Llama-Guard-3-1B     # real weights and tokenizer when at hand
    python -m bench.gpu --dry-run               # CPU: build every config and a tiny model, train 2 steps

1. fine-tuning: `guardstream finetune llama-guard` (TRL SFTTrainer + PEFT LoRA, completion-only loss) on
   synthetic export rows, `--steps` optimisation steps: steps/s and rows/s (tokens per row reported);
2. serving: the `llama_guard` evaluator on the in-process vLLM engine with the trained adapter
   (`enable_lora`, a LoRARequest per prompt), evaluations/s at batch 1-64, and the same engine without the
   adapter as the baseline measured in the same run (the ratio is the adapter's cost).

Without real weights the model has Llama Guard 3 1B's architecture (16 layers, hidden 2048, GQA 32/8, vocab
128256) and random weights: throughput is the real model's, verdicts are noise. A deadline skips what would
not fit (`--deadline-s`). Results: JSON (`--out`) and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Llama Guard 3 1B (meta-llama/Llama-Guard-3-1B config.json)
LG3_1B_SHAPE = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                "max_position_embeddings": 131072, "tie_word_embeddings": True, "vocab_size": 128256}
TINY_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 4, "max_position_embeddings": 4096, "tie_word_embeddings": False}
BATCHES = (1, 2, 4, 8, 16, 32, 64)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="a local Llama Guard 3 directory (default: dummy weights)")
    p.add_argument("--out", type=Path, default=Path("bench/results/gpu_lora.json"), help="JSON results")
    p.add_argument("--workdir", type=Path, default=None, help="where the model, data and run go (default: temp)")
    p.add_argument("--steps", type=int, default=40, help="fine-tuning optimisation steps (40)")
    p.add_argument("--batch-size", type=int, default=8, help="fine-tuning rows per step (8)")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)), help="serving batch sizes (1..64)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per serving batch size (5)")
    p.add_argument("--deadline-s", type=float, default=420.0, help="skip what would end past this (420)")
    p.add_argument("--dry-run", action="store_true", help="CPU: tiny model, 2 steps, configs only for vLLM")
    return p.parse_args(argv)


def build_model(workdir: Path, shape: dict[str, Any], device: str) -> Path:
    """A Llama with the given shape, random (dummy) weights, and the tests' Llama Guard tokenizer + template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_models import build_tokenizer

    tok = build_tokenizer()
    shape = {**shape, "vocab_size": max(shape.get("vocab_size", 0), len(tok))}
    config = LlamaConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, initializer_range=0.02, **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    if device != "cpu":
        model = model.to(torch.bfloat16)
    path = workdir / "model"
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def finetune(model: Path, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from evaluators.finetune import FinetuneOptions, run
    from tests.finetune_support import llama_guard_export

    data = llama_guard_export(workdir / "export", code="S1", n_train=max(64, args.steps * args.batch_size // 2),
                              n_test=32)
    out = workdir / "run"
    shutil.rmtree(out, ignore_errors=True)
    opts = FinetuneOptions(data=data, out=out, base=str(model), max_steps=args.steps, batch_size=args.batch_size,
                           learning_rate=2e-4, before=False, save_steps=10_000, logging_steps=10,
                           categories=[{"code": "S1", "name": "Gambling"}])
    result = run("llama-guard", opts)
    steps, seconds = result.manifest["run"]["steps"], result.manifest["run"]["train_seconds"]
    rows = result.manifest["data"]["trained_rows"]
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds if seconds else None,
            "rows_per_s": steps * args.batch_size / seconds if seconds else None, "train_rows": rows,
            "device": result.manifest["run"]["device"], "adapter": str(out / "adapter"),
            "test_accuracy_after": (result.metrics.get("after") or {}).get("accuracy"), "options": opts.hyperparameters()}


def serving_options(model: Path, adapter: str, dry_run: bool) -> dict[str, Any]:
    return {"backend": "vllm", "model": str(model), "adapter": adapter, "categories": [{"code": "S1", "name": "Gambling"}],
            "gpu_memory_utilization": 0.5, "max_model_len": 4096,
            "engine_args": {"enforce_eager": dry_run, "max_num_seqs": 64}}


def serve(model: Path, adapter: str, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    """evaluations/s at each batch size, with the adapter and without it (same engine, same prompts)."""
    from evaluators.base import EvalItem
    from evaluators.llama_guard import LlamaGuardEvaluator
    from tests.finetune_support import KEYWORD, WORDS

    ev = LlamaGuardEvaluator("bench-lora", serving_options(model, adapter, False))
    lora = ev.backend.lora  # type: ignore[attr-defined]
    items = [EvalItem.of_text(" ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(12 + i % 20))
                              + (f" {KEYWORD}" if i % 3 == 0 else "")) for i in range(64)]
    points: list[dict[str, Any]] = []

    async def timed(batch: int) -> float:
        await ev.evaluate(items[:batch])  # warm-up (and prefix cache fill)
        start = time.perf_counter()
        for _ in range(args.rounds):
            await ev.evaluate(items[:batch])
        return batch * args.rounds / (time.perf_counter() - start)

    async def go() -> None:
        for batch in [int(b) for b in args.batches.split(",")]:
            if time.monotonic() > deadline:
                points.append({"batch": batch, "skipped": "deadline"})
                continue
            ev.backend.lora = lora  # type: ignore[attr-defined]
            with_adapter = await timed(batch)
            ev.backend.lora = None  # type: ignore[attr-defined]
            base = await timed(batch)
            points.append({"batch": batch, "evals_per_s_adapter": with_adapter, "evals_per_s_base": base,
                           "adapter_over_base": with_adapter / base if base else None})
        await ev.aclose()

    asyncio.run(go())
    return {"points": points, "version": ev.version}


def machine() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__, "gpu": gpu, "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    deadline = start + args.deadline_s
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("bench.gpu: no CUDA GPU here (use --dry-run to check the script on CPU)", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gs-bench-gpu-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"schema": "guardstream.bench.gpu.v1", "dry_run": args.dry_run, "machine": machine()}
    if args.dry_run:
        args.steps, args.batch_size = 2, 4
    model = args.model or build_model(workdir, TINY_SHAPE if args.dry_run else LG3_1B_SHAPE, "cpu" if args.dry_run
                                      else "cuda")
    result["model"] = {"path": str(model), "dummy_weights": args.model is None,
                       "shape": "tiny" if args.dry_run else ("real" if args.model else "Llama Guard 3 1B")}
    result["finetune"] = finetune(model, workdir, args)
    options = serving_options(model, result["finetune"]["adapter"], args.dry_run)
    if args.dry_run:
        from evaluators.llama_guard.adapters import Adapter, vllm_engine_lora_args

        adapter = Adapter.from_options(options["adapter"], None)
        result["serving"] = {"skipped": "dry run (no GPU)", "evaluator_options": options,
                             "engine_lora_args": vllm_engine_lora_args(adapter)}
    else:
        import gc

        gc.collect()
        torch.cuda.empty_cache()  # the trainer's memory goes back before vLLM sizes its KV cache
        result["serving"] = serve(model, result["finetune"]["adapter"], args, deadline)
    result["wall_s"] = round(time.monotonic() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    report(result)
    return 0


def report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    ft = result["finetune"]
    console.print(f"fine-tuning ({ft['device']}): {ft['steps']} steps in {ft['seconds']} s = "
                  f"{ft['steps_per_s']:.3f} steps/s, {ft['rows_per_s']:.1f} rows/s")
    points = result["serving"].get("points")
    if points:
        table = Table(title="vLLM serving, evaluations/s")
        for col in ("batch", "with adapter", "base", "adapter / base"):
            table.add_column(col, justify="right")
        for p in points:
            if p.get("skipped"):
                table.add_row(str(p["batch"]), "skipped", "", "")
            else:
                table.add_row(str(p["batch"]), f"{p['evals_per_s_adapter']:.1f}", f"{p['evals_per_s_base']:.1f}",
                              f"{p['adapter_over_base']:.2f}")
        console.print(table)
    else:
        console.print(f"serving: {result['serving'].get('skipped')}")
    console.print(f"wall time {result['wall_s']} s")


if __name__ == "__main__":
    sys.exit(main())
