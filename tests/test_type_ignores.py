"""Every `type: ignore` in the type-checked packages names its error code and says why, on the same line:
`# type: ignore[code]  # reason`. mypy enforces the code (`ignore-without-code`) and that each one is still
needed (`warn_unused_ignores`); this test enforces the reason."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: what mypy checks (pyproject.toml [tool.mypy] files)
CHECKED = ("proxy", "evaluators", "consumers")
IGNORE = re.compile(r"#\s*type:\s*ignore\b")
WITH_REASON = re.compile(r"#\s*type:\s*ignore\[[a-z0-9\-, ]+\]\s+#\s*\S")


def bare_ignores(source: str) -> list[int]:
    """Lines whose `type: ignore` comment lacks a code or a reason."""
    bad = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and IGNORE.search(tok.string) and not WITH_REASON.search(tok.string):
            bad.append(tok.start[0])
    return bad


def test_every_type_ignore_names_its_code_and_reason() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}" for room in CHECKED for path in sorted((ROOT / room).rglob("*.py"))
             for line in bare_ignores(path.read_text())]
    assert found == []


def test_the_check_tells_the_three_forms_apart() -> None:
    assert bare_ignores("x = 1  # type: ignore\n") == [1]
    assert bare_ignores("x = 1  # type: ignore[assignment]\n") == [1]
    assert bare_ignores("x = 1  # type: ignore[assignment]  # a reason\n") == []
    assert bare_ignores('x = "# type: ignore"\n') == []  # strings are not comments
