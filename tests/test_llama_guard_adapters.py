"""LoRA adapters in the llama_guard evaluator without training: identity (digest in the version), the request
shape against a vLLM server that loaded the adapter, the in-process vLLM arguments, merging in transformers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from evaluators.base import EvalItem
from evaluators.llama_guard import LlamaGuardEvaluator
from evaluators.llama_guard.adapters import Adapter, AdapterError, adapter_digest, lora_request
from evaluators.llama_guard.backends.vllm_engine import engine_kwargs

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.tiny_models import build_llama_guard_model, build_lora_adapter, build_tokenizer

    root = tmp_path_factory.mktemp("lg-adapters")
    base = build_llama_guard_model(root / "base", build_tokenizer())
    return {"base": base, "inert": build_lora_adapter(root / "inert", base),
            "noisy": build_lora_adapter(root / "noisy", base, scale=0.5, seed=1)}


def test_digest_names_the_weights_and_is_in_the_version(tiny: dict[str, Path], tmp_path: Path) -> None:
    assert adapter_digest(tiny["inert"]) != adapter_digest(tiny["noisy"])
    opts = {"backend": "openai_http", "model": "meta-llama/Llama-Guard-3-1B"}
    plain = LlamaGuardEvaluator("g", opts)
    inert = LlamaGuardEvaluator("g", {**opts, "adapter": str(tiny["inert"])})
    noisy = LlamaGuardEvaluator("g", {**opts, "adapter": str(tiny["noisy"])})
    assert len({plain.version, inert.version, noisy.version}) == 3
    assert f"lora:{adapter_digest(tiny['noisy'])[:12]}" in noisy.version
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        Adapter.from_options(str(tmp_path), None)


def test_a_missing_adapter_is_a_one_line_config_error(tmp_path: Path) -> None:
    from proxy.config import ConfigError, Settings
    from proxy.state import build_evaluators

    settings = Settings.model_validate({
        "evaluators": {"guard": {"type": "llama_guard", "options": {"adapter": str(tmp_path / "nope")}}},
        "policies": {"default": {"input": {"evaluators": ["guard"]}}}})
    with pytest.raises(ConfigError) as info:
        build_evaluators(settings)
    message = str(info.value)
    assert message.startswith("evaluators.guard.options.adapter: adapter ") and "\n" not in message


def test_openai_http_names_the_adapter_as_the_model(tiny: dict[str, Path]) -> None:
    """A vLLM server started with --enable-lora --lora-modules NAME=DIR serves the adapter as model NAME."""
    from evaluators.llama_guard.evaluator import build_backend
    from evaluators.llama_guard.options import LlamaGuardOptions

    opts = LlamaGuardOptions(backend="openai_http", model="meta-llama/Llama-Guard-3-1B", adapter=str(tiny["noisy"]))
    backend = build_backend(opts, None, Adapter.from_options(opts.adapter, None))
    assert backend.model == "noisy"  # type: ignore[attr-defined]
    named = Adapter.from_options(str(tiny["noisy"]), "guard-v2")
    assert build_backend(opts, None, named).model == "guard-v2"  # type: ignore[attr-defined]
    only_name = Adapter.from_options(None, "guard-v2")
    assert only_name is not None and only_name.version_tag() == "lora-name:guard-v2"


@dataclass
class LoRARequestShape:
    """vllm.lora.request.LoRARequest's positional fields (vLLM needs a GPU; its real run is in test_llama_guard_vllm)."""

    lora_name: str
    lora_int_id: int
    lora_path: str


def test_in_process_vllm_gets_lora_engine_args_and_a_request(tiny: dict[str, Path]) -> None:
    adapter = Adapter.from_options(str(tiny["noisy"]), None)
    assert adapter is not None
    kwargs = engine_kwargs(str(tiny["base"]), None, gpu_memory_utilization=0.5, max_model_len=4096, dtype="auto",
                           load_format="auto", top_logprobs=20, engine_args={"enforce_eager": True}, adapter=adapter)
    assert kwargs["enable_lora"] is True and kwargs["max_loras"] == 1 and kwargs["max_lora_rank"] == 8
    assert kwargs["enable_prefix_caching"] is True and kwargs["enforce_eager"] is True
    request = lora_request(adapter, LoRARequestShape)
    assert request == LoRARequestShape("noisy", 1, str(tiny["noisy"].resolve()))
    assert "enable_lora" not in engine_kwargs("m", None, gpu_memory_utilization=0.5, max_model_len=None,
                                              dtype="auto", load_format="auto", top_logprobs=20, engine_args=None,
                                              adapter=None)


def test_transformers_merges_the_adapter(tiny: dict[str, Path]) -> None:
    """An inert adapter (B = 0) keeps every verdict; a noisy one changes the model's answers."""
    items = [EvalItem.of_text("bread"), EvalItem.of_text("a bomb")]

    def judge(adapter: str | None) -> list[float | None]:
        opts = {"backend": "transformers", "model": str(tiny["base"]), "device": "cpu"}
        ev = LlamaGuardEvaluator("g", {**opts, "adapter": adapter} if adapter else opts)

        async def go() -> list[float | None]:
            try:
                return [v.score if v.error is None else None for v in await ev.evaluate(items)]
            finally:
                await ev.aclose()

        return asyncio.run(go())

    plain = judge(None)
    assert plain == pytest.approx([0.1, 0.9], abs=1e-3)
    assert judge(str(tiny["inert"])) == pytest.approx(plain, abs=1e-6)
    assert judge(str(tiny["noisy"])) != pytest.approx(plain, abs=1e-3)
