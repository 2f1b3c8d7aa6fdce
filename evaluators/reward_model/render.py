"""The text a reward model reads for (conversation, answer): the one rendering shared by serving and training.

- `chat_template`: the tokenizer's own chat template over the messages (the answer is the last, assistant,
  message; no generation prompt is added), as TRL's RewardTrainer renders conversational rows.
- `plain`: turns as `Role: content`, separated by a blank line (`User: ...\\n\\nAssistant: ...`), for tokenizers
  without a chat template and servers that are sent text. This is `guardstream finetune reward`'s `plain`
  input format, so a model trained there reads here exactly what it learned from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from evaluators.base import Turn

InputFormat = Literal["plain", "chat_template"]
ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System", "developer": "System", "tool": "Tool"}


def plain_text(turns: Sequence[Turn]) -> str:
    """`Role: content` turns separated by blank lines."""
    return "\n\n".join(f"{ROLE_NAMES.get(t.role, t.role.title())}: {t.content}" for t in turns)


def messages_of(turns: Sequence[Turn]) -> list[dict[str, str]]:
    return [{"role": t.role, "content": t.content} for t in turns]


def conversation_text(turns: Sequence[Turn], tokenizer: Any, input_format: InputFormat) -> str:
    """What the model reads: the tokenizer's chat template, or the plain rendering."""
    if input_format == "chat_template":
        return str(tokenizer.apply_chat_template(messages_of(turns), tokenize=False))
    return plain_text(turns)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))
