"""Readers for the row shapes `guardstream export` writes, beside plain text rows.

- conversational messages (TRL's conversational format): a list of `{"role", "content"}` objects,
  `content` a string or a list of content parts;
- a complete Llama Guard 3 prompt (the export's `llamaguard/` rows): the conversation is read back from
  between `<BEGIN CONVERSATION>` and `<END CONVERSATION>`, the judged role from "ONLY THE LAST ... message",
  and the label and categories from the completion (`\\n\\nsafe` / `\\n\\nunsafe\\nS1,S10`).

Every failure is a `ShapeError` naming the field, so the loader can print one line: file, row, field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evaluators.base import Stage, Turn, content_text

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_CONVERSATION = re.compile(r"<BEGIN CONVERSATION>\n\n(?P<body>.*)\n\n<END CONVERSATION>", re.S)
_LAST_ROLE = re.compile(r"ONLY THE LAST (?P<role>User|Agent) message")
_TURN_START = re.compile(r"(?:^|\n\n)(?P<role>User|Agent): ", re.M)
_GUARD_ROLES = {"User": "user", "Agent": "assistant"}


class ShapeError(ValueError):
    """A field does not have a shape the readers know; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r}: {problem}")
        self.field = field


def is_messages(value: Any) -> bool:
    """True for a list (possibly empty) whose items are all mappings: the conversational format."""
    return isinstance(value, list) and all(isinstance(m, Mapping) for m in value)


def read_messages(value: Any, field: str) -> tuple[Turn, ...]:
    """A conversational field as turns; anything else (a message without role or content, a number) fails."""
    if not isinstance(value, list):
        raise ShapeError(field, f"expected a list of messages, got {type(value).__name__}")
    turns: list[Turn] = []
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise ShapeError(field, f"message {i} is a {type(message).__name__}, not an object")
        role = message.get("role")
        if not isinstance(role, str) or role.lower() not in _ROLES:
            raise ShapeError(field, f"message {i} has no known role (got {role!r})")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise ShapeError(field, f"message {i} content is a {type(content).__name__}")
        turns.append(Turn(role.lower(), content_text(content)))
    return tuple(turns)


def read_text(value: Any, field: str) -> str:
    """A plain-text field: a string (numbers are read as text; lists and objects are not)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ShapeError(field, f"expected a string or a list of messages, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class GuardRow:
    """What a Llama Guard SFT row says: the conversation, the judged stage, the verdict."""

    turns: tuple[Turn, ...]
    stage: Stage
    unsafe: bool
    categories: tuple[str, ...]


def is_llama_guard_prompt(value: Any) -> bool:
    return isinstance(value, str) and "<BEGIN CONVERSATION>" in value and "<END CONVERSATION>" in value


def read_llama_guard_row(prompt: str, completion: Any) -> GuardRow:
    """Read a rendered Llama Guard prompt and its target back into a conversation and a verdict."""
    from evaluators.llama_guard.parser import ParseError, parse_output

    turns, stage = read_llama_guard_prompt(prompt)
    if not isinstance(completion, str):
        raise ShapeError("completion", f"a Llama Guard row needs a text completion, got {type(completion).__name__}")
    try:
        parsed = parse_output(completion)
    except ParseError as exc:
        raise ShapeError("completion", f"not a Llama Guard answer: {exc}") from None
    return GuardRow(turns, stage, parsed.unsafe, tuple(parsed.categories))


def read_llama_guard_prompt(prompt: str) -> tuple[tuple[Turn, ...], Stage]:
    """The conversation inside a rendered Llama Guard prompt and the stage its judged role means."""
    body = _CONVERSATION.search(prompt)
    last = _LAST_ROLE.search(prompt)
    if body is None or last is None:
        raise ShapeError("prompt", "not a rendered Llama Guard prompt (no conversation block or judged role)")
    text = body.group("body")
    starts = list(_TURN_START.finditer(text))
    if not starts or starts[0].start() != 0:
        raise ShapeError("prompt", "the conversation block does not start with 'User: ' or 'Agent: '")
    turns = []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        turns.append(Turn(_GUARD_ROLES[match.group("role")], text[match.end():end]))
    if _GUARD_ROLES[last.group("role")] != turns[-1].role:
        raise ShapeError("prompt", "the judged role is not the last turn's")
    return tuple(turns), "input" if last.group("role") == "User" else "output"


def split_judged(turns: Sequence[Turn], field: str) -> tuple[tuple[Turn, ...], Turn]:
    """(context, judged) for a conversation whose last turn is the judged one."""
    if not turns:
        raise ShapeError(field, "empty conversation: nothing to judge")
    return tuple(turns[:-1]), turns[-1]
