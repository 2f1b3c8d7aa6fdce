"""The in-process vLLM backend, on a GPU only.

Two checks: the programmed tiny model (tests/tiny_models.py, hidden 64 so the head size
suits the GPU attention kernels) must give the same verdicts and scores as on
transformers; and a model of Llama Guard 3 1B's shape with random weights
(`load_format="dummy"`) must run through the whole path (engine, prefix caching,
logprobs) and come back with well-formed verdicts. Skipped where there is no CUDA GPU
or no `vllm` extra; this session's machine has neither.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from evaluators.base import EvalItem
from evaluators.llama_guard import LlamaGuardEvaluator


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None or not _cuda(),
                       reason="needs a CUDA GPU and the vllm extra (pip install 'guardstream[vllm]')"),
]

#: Llama Guard 3 1B's architecture (meta-llama/Llama-Guard-3-1B config.json), vocab cut to the tiny tokenizer's
LG3_1B_SHAPE = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                "max_position_embeddings": 131072, "tie_word_embeddings": True}


def _evaluator(path: Path, **extra: Any) -> LlamaGuardEvaluator:
    return LlamaGuardEvaluator("lg-vllm", {"backend": "vllm", "model": str(path), "gpu_memory_utilization": 0.25,
                                           "max_model_len": 4096, "engine_args": {"enforce_eager": True}, **extra})


async def test_programmed_tiny_model_matches_transformers(tmp_path: Path) -> None:
    from tests.tiny_models import build_llama_guard_model, build_tokenizer

    path = build_llama_guard_model(tmp_path / "tiny", build_tokenizer(), hidden_size=64)
    ev = _evaluator(path)
    try:
        safe, unsafe, answer = await ev.evaluate([EvalItem.of_text("bread"), EvalItem.of_text("a bomb"),
                                                  EvalItem.of_text("a bomb", "output")])
        low = _threshold_copy(ev, 0.05)
        (forced,) = await low.evaluate([EvalItem.of_text("bread")])
    finally:
        await ev.aclose()
    assert safe.safe and safe.score == pytest.approx(0.1, abs=0.03)
    assert not unsafe.safe and unsafe.categories == ["S1", "S10"] and unsafe.score == pytest.approx(0.9, abs=0.03)
    assert not answer.safe and answer.categories == ["S1", "S10"]
    assert not forced.safe and forced.categories == ["S1", "S10"]  # categories via the continuation call


def _threshold_copy(ev: LlamaGuardEvaluator, threshold: float) -> LlamaGuardEvaluator:
    """Same engine, another threshold (a second engine would not fit next to the first)."""
    opts = ev.options.model_copy(update={"threshold": threshold})
    return LlamaGuardEvaluator("lg-vllm-low", opts, backend=ev.backend, tokenizer=ev.tokenizer)


async def test_llama_guard_3_shape_with_dummy_weights(tmp_path: Path) -> None:
    from transformers import LlamaConfig

    from tests.tiny_models import build_tokenizer

    tok = build_tokenizer(tmp_path / "lg3")
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **LG3_1B_SHAPE)
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(tmp_path / "lg3")
    ev = _evaluator(tmp_path / "lg3", load_format="dummy")
    try:
        items = [EvalItem.of_text(f"question {i}") for i in range(8)]
        verdicts = await ev.evaluate(items)
        gens = await ev.backend.score([ev.cache_context(items[0]).removeprefix(tok.bos_token)])
    finally:
        await ev.aclose()
    assert len(verdicts) == 8
    for v in verdicts:  # random weights: any verdict, but a well-formed one
        assert v.error is not None or (v.score is not None and 0.0 <= v.score <= 1.0)
        json.dumps(v.to_dict())
    (g,) = gens
    assert g.tokens and len(g.top[0]) >= 5 and all(isinstance(k, str) for k in g.top[0])


async def test_lora_adapter_gives_the_same_scores_as_transformers_with_peft(tmp_path: Path) -> None:
    """The in-process engine with `enable_lora` and a LoRARequest per prompt scores like the merged adapter."""
    from tests.tiny_models import build_llama_guard_model, build_lora_adapter, build_tokenizer

    base = build_llama_guard_model(tmp_path / "tiny", build_tokenizer(), hidden_size=64)
    adapter = build_lora_adapter(tmp_path / "adapter", base, scale=0.05, seed=3)
    items = [EvalItem.of_text("bread"), EvalItem.of_text("a bomb"), EvalItem.of_text("a bomb", "output")]
    reference = LlamaGuardEvaluator("lg-tf", {"backend": "transformers", "model": str(base), "adapter": str(adapter)})
    try:
        expected = await reference.evaluate(items)
    finally:
        await reference.aclose()
    ev = _evaluator(base, adapter=str(adapter))
    try:
        got = await ev.evaluate(items)
    finally:
        await ev.aclose()
    assert ev.adapter is not None and reference.adapter is not None
    assert ev.adapter.digest == reference.adapter.digest and "lora:" in ev.version
    for want, have in zip(expected, got):
        assert (want.error is None) == (have.error is None)
        if want.error is None:
            assert have.safe == want.safe and have.score == pytest.approx(want.score, abs=0.03)
