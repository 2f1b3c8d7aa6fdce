"""What the encoder reads: one token sequence per judged item, the same in training and serving.

* a prompt (stage input): `<s> query: PROMPT </s>`;
* an answer (stage output), read in the context of its prompt:
  `<s> query: PROMPT </s></s> passage: ANSWER </s>` (XLM-R's pair template; e5's prefixes).

Texts longer than their budget keep their first and last tokens (a request at the end of a long
jailbreak preamble, a harmful turn at the end of an answer, are still read). The prompt of an
answer gets at most `PROMPT_IN_PAIR` tokens; the answer the rest. Only the `tokenizers`
library is needed (no torch, no transformers).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_LENGTH = 128
PROMPT_IN_PAIR = 40
QUERY, PASSAGE = "query: ", "passage: "


@dataclass(frozen=True, slots=True)
class Judged:
    """One item to score: the prompt, and the answer when the answer is judged."""

    prompt: str
    answer: str | None = None


def _head_tail(ids: list[int], budget: int) -> list[int]:
    if len(ids) <= budget:
        return ids
    head = (budget + 1) // 2
    return ids[:head] + ids[len(ids) - (budget - head):]


class Encoder:
    """Turns `Judged` items into padded id / mask arrays with a `tokenizers.Tokenizer`."""

    def __init__(self, tokenizer: Any, max_length: int = MAX_LENGTH, prompt_in_pair: int = PROMPT_IN_PAIR) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.prompt_in_pair = prompt_in_pair
        vocab = tokenizer.get_vocab()
        self.bos, self.eos, self.pad_id = vocab["<s>"], vocab["</s>"], vocab["<pad>"]

    def _content(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def ids(self, items: Sequence[Judged]) -> list[list[int]]:
        """Token ids per item (specials included), at most `max_length` each."""
        prompts = self._content([QUERY + (it.prompt or "") for it in items])
        answers_at = [i for i, it in enumerate(items) if it.answer is not None]
        answers = dict(zip(answers_at, self._content([PASSAGE + (items[i].answer or "") for i in answers_at])))
        out = []
        for i, prompt in enumerate(prompts):
            if i not in answers:
                out.append([self.bos, *_head_tail(prompt, self.max_length - 2), self.eos])
                continue
            answer = answers[i]
            p = _head_tail(prompt, self.prompt_in_pair)
            a = _head_tail(answer, self.max_length - 4 - len(p))
            out.append([self.bos, *p, self.eos, self.eos, *a, self.eos])
        return out

    def pad(self, ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) as int64 arrays, right-padded to the longest."""
        width = max((len(s) for s in ids), default=1)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return input_ids, mask


def length_batches(lengths: Sequence[int], max_tokens: int, max_rows: int = 64) -> Iterator[list[int]]:
    """Indices sorted by length, cut into sub-batches of at most `max_rows` whose padded size (rows x the longest)
    stays within `max_tokens` (a longer text goes alone)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * lengths[order[end]] <= max_tokens and end - start < max_rows:
            end += 1
        yield order[start:end]
        start = end
