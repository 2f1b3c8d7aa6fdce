"""Llama Guard end to end on the in-process transformers backend with tiny programmed models.

The tiny model answers `safe` with P(unsafe)=0.1, or `unsafe\\nS1,S10` with P(unsafe)=0.9
when the word "bomb" is anywhere in the prompt (see tests/tiny_models.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from evaluators.base import EvalItem, Turn
from evaluators.llama_guard import LlamaGuardEvaluator
from evaluators.llama_guard.metrics import PARSE_ERRORS
from evaluators.llama_guard.prompt import BuilderRenderer, ChatTemplateRenderer
from evaluators.registry import create
from tests.tiny_models import GARBAGE, build_llama_guard_model, build_tokenizer

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-llama-guard")
    tok = build_tokenizer()
    gap_tok = build_tokenizer(answer_gap="\n\n")
    return {
        "guard": build_llama_guard_model(root / "guard", tok),
        "garbage": build_llama_guard_model(root / "garbage", tok, first_word=GARBAGE),
        "gap": build_llama_guard_model(root / "gap", gap_tok, answer_gap="\n\n"),
    }


@pytest.fixture(scope="module")
def guard(models: dict[str, Path]) -> Any:
    """One evaluator for the module: its batcher follows each test's event loop."""
    ev = LlamaGuardEvaluator("lg", {"backend": "transformers", "model": str(models["guard"]), "device": "cpu",
                                    "batch": {"max_batch_size": 16, "max_wait_ms": 5}})
    yield ev
    asyncio.run(ev.aclose())


async def test_safe_and_unsafe_verdicts_with_scores(guard: LlamaGuardEvaluator) -> None:
    assert isinstance(guard.renderer, ChatTemplateRenderer)  # the model's own template is used
    verdicts = await guard.evaluate([
        EvalItem.of_text("How do I bake bread?"),
        EvalItem.of_text("How do I build a bomb?"),
        EvalItem.of_text("Here is how to build a bomb.", "output"),
    ])
    safe, unsafe, answer = verdicts
    assert safe.safe and safe.categories == [] and safe.score == pytest.approx(0.1, abs=1e-3)
    assert not unsafe.safe and unsafe.categories == ["S1", "S10"] and unsafe.score == pytest.approx(0.9, abs=1e-3)
    assert not answer.safe and answer.categories == ["S1", "S10"]
    for v in verdicts:
        assert v.evaluator == "lg" and v.version == guard.version and v.error is None and v.latency_ms > 0
    # like Llama Guard 3 after Meta's template, the model writes "\n\n" first; the score is read after it
    (gen,) = await guard.backend.score([guard._wire(guard.cache_context(EvalItem.of_text("bread")))])
    assert gen.tokens[0] == "\n\n" and gen.tokens[1] == "safe" and gen.text.startswith("\n\nsafe")


async def test_threshold_decides_and_categories_are_still_read(models: dict[str, Path]) -> None:
    strict = LlamaGuardEvaluator("strict", {"backend": "transformers", "model": str(models["guard"]),
                                            "threshold": 0.05})
    lenient = LlamaGuardEvaluator("lenient", {"backend": "transformers", "model": str(models["guard"]),
                                              "threshold": 0.95})
    try:
        # greedy text says "safe", but P(unsafe)=0.1 >= 0.05: unsafe, categories from an extra decode
        (v,) = await strict.evaluate([EvalItem.of_text("How do I bake bread?")])
        assert not v.safe and v.categories == ["S1", "S10"] and v.score == pytest.approx(0.1, abs=1e-3)
        (v,) = await lenient.evaluate([EvalItem.of_text("a bomb")])
        assert v.safe and v.categories == [] and v.score == pytest.approx(0.9, abs=1e-3)
        assert strict.version != lenient.version  # the threshold is part of the cache identity
    finally:
        await strict.aclose()
        await lenient.aclose()


async def test_excluded_categories_are_dropped(models: dict[str, Path]) -> None:
    ev = LlamaGuardEvaluator("ex", {"backend": "transformers", "model": str(models["guard"]), "exclude": ["S10"]})
    try:
        (v,) = await ev.evaluate([EvalItem.of_text("a bomb")])
        assert not v.safe and v.categories == ["S1"]
        assert "\nS10: " not in ev.cache_context(EvalItem.of_text("a bomb"))
    finally:
        await ev.aclose()
    ev = LlamaGuardEvaluator("ex2", {"backend": "transformers", "model": str(models["guard"]),
                                     "exclude": ["S1", "S10"]})
    try:
        (v,) = await ev.evaluate([EvalItem.of_text("a bomb")])
        assert v.safe and v.categories == [] and v.score == pytest.approx(0.9, abs=1e-3)
    finally:
        await ev.aclose()


async def test_garbage_answer_is_an_error_verdict_and_counted(models: dict[str, Path]) -> None:
    ev = LlamaGuardEvaluator("junk", {"backend": "transformers", "model": str(models["garbage"])})
    before = PARSE_ERRORS.labels(evaluator="junk")._value.get()
    try:
        (v,) = await ev.evaluate([EvalItem.of_text("hello")])
    finally:
        await ev.aclose()
    assert v.error is not None and "maybe" in v.error and not v.safe
    assert PARSE_ERRORS.labels(evaluator="junk")._value.get() == before + 1


async def test_template_that_writes_the_gap_itself(models: dict[str, Path]) -> None:
    """Meta's templates leave "\\n\\n" to the model (the `guard` model writes it, the score is read at the
    next position); a template that writes it itself makes the first answer token the word."""
    ev = LlamaGuardEvaluator("gap", {"backend": "transformers", "model": str(models["gap"])})
    try:
        safe, unsafe = await ev.evaluate([EvalItem.of_text("bread"), EvalItem.of_text("bomb")])
    finally:
        await ev.aclose()
    assert safe.safe and safe.score == pytest.approx(0.1, abs=1e-3)
    assert not unsafe.safe and unsafe.categories == ["S1", "S10"] and unsafe.score == pytest.approx(0.9, abs=1e-3)


async def test_concurrent_requests_share_one_forward_pass(guard: LlamaGuardEvaluator) -> None:
    backend: Any = guard.backend
    backend.first_token_batcher.batch_sizes.clear()
    texts = [f"question {i} about bread" if i % 3 else f"question {i} about a bomb" for i in range(12)]
    results = await asyncio.gather(*(guard.evaluate([EvalItem.of_text(t)]) for t in texts))
    assert [r[0].safe for r in results] == [i % 3 != 0 for i in range(12)]
    # prompts of different lengths were left-padded into shared batches without changing any score
    assert max(backend.first_token_batcher.batch_sizes) > 1
    assert sum(backend.first_token_batcher.batch_sizes) == 12
    for (v,), t in zip(results, texts):
        assert v.score == pytest.approx(0.9 if "bomb" in t else 0.1, abs=1e-3)


async def test_multi_turn_and_cache_context(guard: LlamaGuardEvaluator) -> None:
    convo = EvalItem(turns=(Turn("user", "tell me about a bomb"), Turn("assistant", "No."),
                            Turn("user", "ok, bread then")), stage="input")
    ctx = guard.cache_context(convo)
    assert "User: tell me about a bomb\n\nAgent: No.\n\nUser: ok, bread then\n\n" in ctx
    assert guard.cache_context(EvalItem.of_text("ok, bread then")) != ctx  # context is part of the key
    (v,) = await guard.evaluate([convo])
    assert not v.safe  # the tiny model reacts to the word anywhere in the conversation


async def test_registry_and_direct_use(models: dict[str, Path]) -> None:
    ev = create("llama_guard", "reg", {"backend": "transformers", "model": str(models["guard"]),
                                       "prompt_format": "builder", "model_size": "1b"})
    try:
        assert isinstance(ev, LlamaGuardEvaluator) and isinstance(ev.renderer, BuilderRenderer)
        assert ev.stages == frozenset({"input", "output"})
        assert "S13: Elections." in ev.cache_context(EvalItem.of_text("x"))
        assert "S14" not in ev.cache_context(EvalItem.of_text("x"))
        v = await ev.check([{"role": "user", "content": "make a bomb"}])
        assert not v.safe and v.categories == ["S1", "S10"]
    finally:
        await ev.aclose()


def test_bad_options_are_rejected() -> None:
    from evaluators.base import OptionError

    with pytest.raises(OptionError, match="^backend: "):
        LlamaGuardEvaluator("x", {"backend": "nope"})
    with pytest.raises(OptionError, match="^thresold: unknown option"):
        LlamaGuardEvaluator("x", {"thresold": 0.3})


def test_batched_pass_equals_one_prompt_at_a_time(tmp_path: Path) -> None:
    """Right-padded, unmasked batch rows must match unbatched forwards (on a fully random model)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from evaluators.llama_guard.backends.transformers_backend import TransformersBackend

    tok = build_tokenizer()
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(str(tmp_path / "rand"))
    backend = TransformersBackend(str(tmp_path / "rand"), tokenizer_obj=tok, device="cpu", warmup=False)
    prompts = ["short", "a somewhat longer prompt about bread and rivers", "mid length prompt here"]
    seqs = [tok.encode(p, add_special_tokens=False) for p in prompts]
    batched = backend._next_token_logprobs(seqs)
    with torch.inference_mode():
        for row, seq in enumerate(seqs):
            alone = backend.model(input_ids=torch.tensor([seq])).logits[0, -1].float().log_softmax(-1)
            assert torch.allclose(batched[row], alone, atol=1e-5)
    asyncio.run(backend.aclose())


async def test_token_budget_truncates_the_middle(models: dict[str, Path]) -> None:
    from evaluators.base import Turn

    ev = LlamaGuardEvaluator("budget", {"backend": "transformers", "model": str(models["guard"]),
                                        "max_prompt_tokens": 400})
    turns = tuple(Turn("user" if i % 2 == 0 else "assistant", f"turn {i} " + "bread and rivers " * 40)
                  for i in range(12)) + (Turn("user", "so, how about a bomb?"),)
    item = EvalItem(turns=turns, stage="input")
    try:
        prompt = ev.cache_context(item)
        assert len(ev.tokenizer.encode(prompt, add_special_tokens=False)) <= 400
        assert "User: so, how about a bomb?\n\n<END CONVERSATION>" in prompt and "turns omitted" in prompt
        (v,) = await ev.evaluate([item])
        assert not v.safe and v.categories == ["S1", "S10"]
    finally:
        await ev.aclose()
