"""Synthetic fine-tuning data in the export's formats, where the right answer depends on the input.

Rows are random sentences over a small vocabulary; a row is unacceptable (label false / unsafe / rejected)
exactly when it contains the keyword. Half the rows of each split carry it, so a model that ignores the
input scores 50% and one that learned the rule scores 100%.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

WORDS = ("how do I make a cake what is the weather today tell me a story about cats and dogs write code in "
         "python please explain the history of the city the answer is here is an example thank you").split()
KEYWORD = "casino"


def sentence(rng: random.Random, keyword: bool, n: int = 8) -> str:
    words = rng.sample(WORDS, n)
    if keyword:
        words.insert(rng.randrange(n + 1), KEYWORD)
    return " ".join(words)


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def kto_export(root: Path, n_train: int = 160, n_test: int = 40, seed: int = 0, stage: str = "output") -> Path:
    """OUT/kto/{train,test}.jsonl as `guardstream export` writes them (conversational, label true = acceptable)."""
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            bad = i % 2 == 0
            if stage == "output":
                prompt = [{"role": "user", "content": sentence(rng, False, 6)}]
                completion = [{"role": "assistant", "content": sentence(rng, bad)}]
            else:
                prompt, completion = [{"role": "user", "content": sentence(rng, bad)}], []
            rows.append({"prompt": prompt, "completion": completion, "label": not bad})
        _write(root / "kto" / f"{split}.jsonl", rows)
    return root


def llama_guard_export(root: Path, code: str = "S2", n_train: int = 160, n_test: int = 40, seed: int = 0,
                       categories: Any = None) -> Path:
    """OUT/llamaguard/{train,test}.jsonl: prompts about the keyword are unsafe with category `code`."""
    from consumers.llama_guard_render import render_llama_guard_prompt
    from evaluators.llama_guard.prompt import answer_text, resolve_categories

    cats = resolve_categories(categories) if categories else None
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            bad = i % 2 == 0
            prompt = render_llama_guard_prompt([{"role": "user", "content": sentence(rng, bad)}], "input", cats)
            rows.append({"prompt": prompt, "completion": answer_text(bad, [code] if bad else [])})
        _write(root / "llamaguard" / f"{split}.jsonl", rows)
    return root


def dpo_export(root: Path, n_train: int = 120, n_test: int = 40, seed: int = 0) -> Path:
    """OUT/dpo/{train,test}.jsonl: the rejected answer is the chosen one with the keyword put in somewhere."""
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for _ in range(n):
            words = rng.sample(WORDS, 8)
            bad = list(words)
            bad.insert(rng.randrange(9), KEYWORD)
            rows.append({"prompt": [{"role": "user", "content": sentence(rng, False, 6)}],
                         "chosen": [{"role": "assistant", "content": " ".join(words)}],
                         "rejected": [{"role": "assistant", "content": " ".join(bad)}]})
        _write(root / "dpo" / f"{split}.jsonl", rows)
    return root
