"""bench/gpu on CPU (--dry-run): the GPU script builds its configs, a tiny model, trains a LoRA for 2 steps and
writes its JSON, so a session with a GPU can run it as it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_bench_dry_run(tmp_path: Path) -> None:
    from bench.gpu.__main__ import LG3_1B_SHAPE, main

    out = tmp_path / "gpu.json"
    assert main(["--dry-run", "--out", str(out), "--workdir", str(tmp_path / "work")]) == 0
    result = json.loads(out.read_text())
    assert result["dry_run"] is True and result["model"]["dummy_weights"] is True
    ft = result["finetune"]
    assert ft["steps"] == 2 and ft["steps_per_s"] > 0 and Path(ft["adapter"], "adapter_config.json").is_file()
    serving = result["serving"]
    assert serving["engine_lora_args"] == {"enable_lora": True, "max_loras": 1, "max_lora_rank": 16}
    assert serving["evaluator_options"]["backend"] == "vllm" and serving["evaluator_options"]["adapter"] == ft["adapter"]
    assert LG3_1B_SHAPE["num_hidden_layers"] == 16 and LG3_1B_SHAPE["vocab_size"] == 128256


def test_gpu_bench_refuses_to_run_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from bench.gpu.__main__ import main

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["--out", str(tmp_path / "x.json")]) == 2
    assert "--dry-run" in capsys.readouterr().err
