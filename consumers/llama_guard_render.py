"""The Llama Guard 3 SFT rows of the export: the prompt exactly as the `llama_guard` evaluator serves it.

`consumers.export` calls `RENDERER(messages, stage)`: the evaluator's own builder
(`evaluators/llama_guard/prompt.py`) shapes the conversation (system turns dropped, tool
turns on the User side, same-role turns merged, the middle of an over-long one cut) and
renders the complete prompt byte for byte as Meta's chat template does: BOS, the user
header, the task text, ` <|eot_id|>` and the assistant header. The row's completion is
what the model writes next (`\\n\\nsafe` or `\\n\\nunsafe\\nS1,S10`, `answer_text`), so a
trainer needs no chat framing of its own and training rows equal served prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from evaluators.base import EvalItem
from evaluators.llama_guard.prompt import PROMPT_FORMAT_VERSION, BuilderRenderer, Category, PromptBuilder, default_categories

Renderer = Callable[[Sequence[Mapping[str, str]], str], str]

#: recorded in the export manifest: which rendering the rows carry
FORMAT = PROMPT_FORMAT_VERSION


def render_llama_guard_prompt(messages: Sequence[Mapping[str, str]], stage: str,
                              categories: Sequence[Category] | None = None) -> str:
    """The complete prompt judging the last `User` turn (stage input) or `Agent` turn (output).

    Categories default to S1-S14 (the 8B model's list), as the evaluator's default options do.
    """
    builder = PromptBuilder(BuilderRenderer(tuple(categories or default_categories("8b"))))
    return builder.build(EvalItem.from_messages(messages, "input" if stage == "input" else "output"))


#: what the export renders with (see the module docstring)
RENDERER: Renderer = render_llama_guard_prompt
