"""The training run shared by the LoRA kinds: device, LoRA config, trainer arguments, checkpoints and resume."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluators.finetune.options import FinetuneOptions
from evaluators.finetune.progress import RichProgress

if TYPE_CHECKING:  # peft is imported by the runs that train
    from peft import PeftModel

CHECKPOINTS = "checkpoints"


class FinetuneError(ValueError):
    """A run that cannot start (bad options, an existing run in the way); one line."""


@dataclass(slots=True)
class RunOutcome:
    steps: int
    start_step: int
    seconds: float
    final_loss: float | None
    device: str

    def manifest(self) -> dict[str, Any]:
        return {"steps": self.steps, "resumed_from_step": self.start_step or None, "train_seconds": self.seconds,
                "final_loss": self.final_loss, "device": self.device}


def device_of(opts: FinetuneOptions) -> str:
    import torch

    if opts.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return opts.device


def set_threads(opts: FinetuneOptions) -> None:
    if opts.torch_threads:
        import torch

        torch.set_num_threads(opts.torch_threads)


def model_dtype(device: str) -> Any:
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def lora_config(opts: FinetuneOptions, task_type: str) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout,
                      target_modules=opts.target_modules, task_type=task_type)


def trained_adapter(model: object) -> PeftModel:
    """A trainer's model after training with `lora_config`: TRL wraps the base model in a peft `PeftModel`."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise FinetuneError(f"the trainer's model is a {type(model).__name__}, not the LoRA model it was given")
    return model


def checkpoints_dir(opts: FinetuneOptions) -> Path:
    return opts.out / CHECKPOINTS


def resume_from(opts: FinetuneOptions) -> bool:
    """True to continue from the newest checkpoint; refuses to silently overwrite an earlier run's."""
    found = sorted(checkpoints_dir(opts).glob("checkpoint-*")) if checkpoints_dir(opts).is_dir() else []
    if found and not opts.resume:
        raise FinetuneError(f"{opts.out} holds checkpoints of an earlier run: pass --resume to continue it, "
                            "or choose another --out")
    return bool(found) and opts.resume


def trainer_arguments(opts: FinetuneOptions, device: str) -> dict[str, Any]:
    """Keyword arguments common to TRL's SFTConfig and RewardConfig."""
    import torch

    cuda = device.startswith("cuda")
    return {
        "output_dir": str(checkpoints_dir(opts)), "num_train_epochs": opts.epochs, "max_steps": opts.max_steps,
        "learning_rate": opts.learning_rate, "per_device_train_batch_size": opts.batch_size,
        "gradient_accumulation_steps": opts.grad_accum, "seed": opts.seed, "data_seed": opts.seed,
        "save_strategy": "steps", "save_steps": opts.save_steps, "save_total_limit": 2,
        "logging_steps": opts.logging_steps, "report_to": [], "disable_tqdm": True, "use_cpu": not cuda,
        "bf16": cuda and torch.cuda.is_bf16_supported(), "lr_scheduler_type": "constant_with_warmup",
        "warmup_steps": 0, "dataloader_num_workers": 0, "remove_unused_columns": False,
    }


def run_trainer(trainer: Any, opts: FinetuneOptions, progress: RichProgress, device: str) -> RunOutcome:
    """Train, continuing from the newest checkpoint with --resume (the trainer checkpoints every `save_steps`
    and at the last step)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the rich bar shows the loss; no raw dicts on stdout
    resume = resume_from(opts)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if resume else None)
    return RunOutcome(steps=trainer.state.global_step, start_step=progress.start_step or 0,
                      seconds=round(time.perf_counter() - started, 2), final_loss=progress.last_loss, device=device)
