"""A tiny reward model trained offline in seconds: it prefers answers that give the number the user asked for.

`build_reward_model(path)` trains a 2-layer `LlamaForSequenceClassification` (hidden 32, one label) with the
Bradley-Terry loss TRL's RewardTrainer uses, -log sigmoid(r(chosen) - r(rejected)), on synthetic pairs:

    user: "Please give me the number 37."
    chosen:   "Sure, the number is 37."           (the asked-for number)
    rejected: "Sure, happy to help with that."    (no number)

and saves it (model + tokenizer without a chat template: the evaluator's plain rendering) under `path`.
Held-out pairs are checked before it is returned: it must rank at least 95% of them right, so a test that uses
it tests the evaluator and not a model that learned nothing. Built once per process and copied.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

NUMBER_PROMPTS = ("Please give me the number {n}.", "What number comes after {m}?", "Tell me the number {n}, please.")
GOOD = ("Sure, the number is {n}.", "{n}", "The answer is {n}.", "Here it is: {n}")
BAD = ("Sure, happy to help with that.", "I am not sure, sorry.", "That is a good question.",
       "Here is a short, helpful answer to your question.")

_BUILT: dict[int, Path] = {}


def number_prompt(rng: random.Random) -> tuple[str, int]:
    n = rng.randrange(2, 999)
    template = rng.choice(NUMBER_PROMPTS)
    return template.format(n=n, m=n - 1), n


def good_answer(n: int, rng: random.Random | None = None) -> str:
    return (rng or random.Random(n)).choice(GOOD).format(n=n)


def bad_answer(rng: random.Random | None = None) -> str:
    return (rng or random.Random(0)).choice(BAD)


def pairs(count: int, seed: int) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        prompt, n = number_prompt(rng)
        out.append((prompt, good_answer(n, rng), bad_answer(rng)))
    return out


def render(prompt: str, answer: str) -> str:
    from evaluators.base import Turn
    from evaluators.reward_model.render import plain_text

    return plain_text([Turn("user", prompt), Turn("assistant", answer)])


def build_reward_model(path: str | Path, *, steps: int = 40, seed: int = 0) -> Path:
    """Train (once per process) and copy the tiny reward model to `path`."""
    path = Path(path)
    if seed not in _BUILT:
        _BUILT[seed] = _train(Path(tempfile.mkdtemp(prefix="tiny-reward-")), steps, seed)
    shutil.copytree(_BUILT[seed], path, dirs_exist_ok=True)
    return path


def _train(path: Path, steps: int, seed: int) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from tests.tiny_models import build_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = None  # the evaluator renders plain `Role: content` text
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    model = LlamaForSequenceClassification(config)
    tokenizer.padding_side = "right"
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train = pairs(steps * 16, seed)
    model.train()
    for step in range(steps):
        batch = train[step * 16:(step + 1) * 16]
        texts = [render(p, c) for p, c, _ in batch] + [render(p, r) for p, _, r in batch]
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        rewards = model(**enc).logits[:, 0]
        chosen, rejected = rewards[:16], rewards[16:]
        loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    accuracy = ranking_accuracy(model, tokenizer, pairs(200, seed + 1))
    assert accuracy >= 0.95, f"the tiny reward model did not learn (held-out accuracy {accuracy:.2f})"
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def ranking_accuracy(model: Any, tokenizer: Any, test: list[tuple[str, str, str]]) -> float:
    import torch

    with torch.inference_mode():
        texts = [render(p, c) for p, c, _ in test] + [render(p, r) for p, _, r in test]
        rewards = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits[:, 0]
    n = len(test)
    return float((rewards[:n] > rewards[n:]).float().mean())
