"""P(unsafe) from the first generated token's log-probabilities.

Backends report, per generated position, the chosen token and the top-k
alternatives as token strings. Tokenizers spell a word with or without a leading
space or newline ("safe", " safe", "\u2581safe", "\u0120safe", "\u010asafe"), and some
chat templates leave the model to emit "\\n\\n" before the answer: positions whose
token is only whitespace are skipped, and the variants of each word are summed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# SentencePiece space, byte-level space / newline / tab / carriage return
_MARKERS = "\u2581\u0120\u010a\u0109\u010d"
_STRIP = " \t\r\n\u00a0" + _MARKERS


def normalise_token(token: str) -> str:
    """A token as a bare lower-case word: `"\u0120Safe"` -> `"safe"`, `"\\n\\n"` -> `""`."""
    return token.strip(_STRIP).lower()


@dataclass(slots=True)
class Generation:
    """What a backend returns for one prompt.

    `tokens[i]` is the token generated at position i and `top[i]` maps alternative
    tokens (strings) to log-probabilities there. `finished` is False when the text may
    go on (length limit, or a backend that stopped after the first word on purpose).
    """

    text: str
    tokens: list[str] = field(default_factory=list)
    top: list[Mapping[str, float]] = field(default_factory=list)
    finished: bool = True


@dataclass(frozen=True, slots=True)
class FirstToken:
    """The first non-whitespace position: its word, P(unsafe) if known, and where it sits."""

    word: str
    score: float | None
    position: int


def first_token(tokens: Sequence[str], top: Sequence[Mapping[str, float] | None]) -> FirstToken | None:
    """Find the first non-whitespace generated token and P(unsafe) = p_unsafe / (p_safe + p_unsafe) there."""
    for i, tok in enumerate(tokens):
        word = normalise_token(tok)
        if not word:
            continue
        dist = top[i] if i < len(top) else None
        return FirstToken(word, unsafe_probability(dist) if dist else None, i)
    return None


def unsafe_probability(dist: Mapping[str, float | None]) -> float | None:
    """p_unsafe / (p_safe + p_unsafe) over all spellings of the two words; None when neither is present."""
    p_safe = p_unsafe = 0.0
    for tok, logprob in dist.items():
        if logprob is None or not math.isfinite(logprob):
            continue
        word = normalise_token(tok)
        if word == "safe":
            p_safe += math.exp(logprob)
        elif word == "unsafe":
            p_unsafe += math.exp(logprob)
    total = p_safe + p_unsafe
    return p_unsafe / total if total > 0 else None


def merge_logprobs(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """token -> logprob; tokens that decode to the same string have their probabilities added."""
    out: dict[str, float] = {}
    for tok, lp in pairs:
        if tok in out:
            hi, lo = max(out[tok], lp), min(out[tok], lp)
            out[tok] = hi + math.log1p(math.exp(lo - hi))
        else:
            out[tok] = lp
    return out
