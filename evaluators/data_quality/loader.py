"""YAML loading that remembers where every key and item came from.

`load_yaml_with_marks` composes the node tree (`yaml.compose`), builds plain
Python values from it and returns, next to them, a map from each key path
(`("fields", "speed", "min")`, `("constraints", 0)`) to its 1-based line and
column. Rule-file errors use it to name the line and the key. Duplicate keys,
which PyYAML would silently merge, are errors here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

Path = tuple[str | int, ...]
Marks = dict[Path, tuple[int, int]]


class YamlLocationError(ValueError):
    """A YAML problem at a known place: `line`/`column` are 1-based, `path` is the key path."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None, path: Path = ()):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path


def load_yaml_with_marks(text: str) -> tuple[Any, Marks]:
    """Parse one YAML document; return its value and the line/column of every key path."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise YamlLocationError(f"invalid YAML: {exc.problem or exc}", line, col) from None
    except yaml.YAMLError as exc:
        raise YamlLocationError(f"invalid YAML: {exc}") from None
    marks: Marks = {}
    if root is None:
        return None, marks
    constructor = SafeConstructor()
    value = _build(root, (), marks, constructor)
    return value, marks


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(node: yaml.Node, path: Path, marks: Marks, constructor: SafeConstructor) -> Any:
    marks.setdefault(path, _mark(node))
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # resolve `<<: *anchor` merges
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                line, col = _mark(key_node)
                raise YamlLocationError("mapping keys must be scalars", line, col, path)
            if key in out:
                line, col = _mark(key_node)
                raise YamlLocationError(f"duplicate key {key!r}", line, col, path + (str(key),))
            child = path + (str(key),)
            marks[child] = _mark(key_node)  # errors point at the key, not its value
            out[key] = _build(value_node, child, marks, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), marks, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)


def locate(marks: Marks, path: Sequence[str | int]) -> tuple[int | None, int | None]:
    """Line and column of the deepest known prefix of `path` (a missing key points at its parent)."""
    key = tuple(str(p) if not isinstance(p, int) else p for p in path)
    while key:
        if key in marks:
            return marks[key]
        key = key[:-1]
    return marks.get((), (None, None))
