"""A tiny, safe expression language for cross-field constraints.

    min_temp <= max_temp
    abs(lat) <= 90 and abs(lon) <= 180
    status in ("ok", "degraded") or speed == 0
    (vx ** 2 + vy ** 2) ** 0.5 <= max_speed

Source is parsed with `ast.parse(mode="eval")` and only a whitelist of nodes is
accepted: comparisons (chained too, `in` over a literal tuple/list/set),
`and`/`or`/`not`, `+ - * / // %`, `**` with a small constant exponent, unary
`-`/`+`, field names, number/string/bool constants and calls of `abs`, `min`,
`max`. Everything else (attributes, subscripts, other calls, lambdas,
comprehensions, f-strings, walrus, dunder names) is refused. Nothing is ever
passed to `eval`/`exec`: the tree is compiled once into nested closures.

Expressions are type-checked against the field types of the rule set: only
numbers take part in arithmetic, orderings compare number with number or
string with string, and the whole expression must be a condition. At run time a
referenced field that is missing, null or of the wrong type makes the
constraint *not applicable* (`SkipRecord`): completeness and type rules report
that record already. Timestamp fields evaluate to epoch seconds.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evaluators.data_quality.timeparse import to_seconds

NUMBER, STRING, BOOLEAN, TIMESTAMP = "number", "string", "boolean", "timestamp"
#: field types an expression may reference (integer fields are numbers here)
REFERENCEABLE = {"number": NUMBER, "integer": NUMBER, "string": STRING, "boolean": BOOLEAN, "timestamp": TIMESTAMP}

MAX_SOURCE_CHARS = 1000
MAX_DEPTH = 40
MAX_EXPONENT = 8
FUNCTIONS = ("abs", "min", "max")

Fn = Callable[[Mapping[str, Any]], Any]


class ExpressionError(ValueError):
    """The expression is not valid or not allowed; `column` is 1-based within the source."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(f"col {column}: {message}" if column else message)
        self.reason = message
        self.column = column


class SkipRecord(Exception):
    """A referenced field is missing, null or ill-typed: the constraint does not apply."""


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled constraint: `fn(record)` is truthy when it holds; may raise `SkipRecord`."""

    source: str
    names: frozenset[str]
    fn: Fn


@dataclass(slots=True)
class _Node:
    kind: str  # NUMBER | STRING | BOOLEAN
    fn: Fn | None = None
    const: Any = None

    @property
    def is_const(self) -> bool:
        return self.fn is None

    def as_fn(self) -> Fn:
        """The node as a function of the record (a constant node's returns its constant)."""
        if self.fn is not None:
            return self.fn
        const = self.const
        return lambda r: const


def compile_expression(source: object, field_types: Mapping[str, str], epoch_scale: float = 1.0) -> Expression:
    """Parse, check and compile `source`; `field_types` maps field name -> rule-set type.

    `epoch_scale` converts numeric timestamps to seconds (0.001 for epoch milliseconds).
    """
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("expression must be a non-empty string")
    if len(source) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"expression longer than {MAX_SOURCE_CHARS} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}", exc.offset) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("expression too deeply nested or malformed") from None
    compiler = _Compiler(field_types, epoch_scale)
    node = compiler.visit(tree.body, 0)
    if node.kind != BOOLEAN:
        raise ExpressionError("a constraint must be a condition (a comparison, `and`/`or`/`not`, or a boolean field)")
    fn = node.as_fn()
    return Expression(source=source, names=frozenset(compiler.names), fn=fn)


def _col(node: ast.AST) -> int | None:
    offset = getattr(node, "col_offset", None)
    return offset + 1 if offset is not None else None


_REFUSED = {
    ast.Attribute: "attribute access (`.name`) is not allowed",
    ast.Subscript: "subscripts (`x[...]`) are not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.NamedExpr: "assignment expressions (`:=`) are not allowed",
    ast.IfExp: "conditional expressions (`a if c else b`) are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Starred: "starred expressions are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Dict: "dict literals are not allowed",
}

_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _safe_pow(a: Any, b: Any) -> Any:
    result = a ** b
    if type(result) is complex:
        raise ValueError("negative number raised to a fractional power")
    return result


_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _safe_pow,
}


def _binary(op: Callable[[Any, Any], Any], left: _Node, right: _Node) -> Fn:
    """One closure for `left op right`, with a constant side folded in."""
    if right.is_const:
        f, c = left.as_fn(), right.const
        return lambda r: op(f(r), c)
    if left.is_const:
        c, g = left.const, right.as_fn()
        return lambda r: op(c, g(r))
    f, g = left.as_fn(), right.as_fn()
    return lambda r: op(f(r), g(r))


class _Compiler:
    def __init__(self, field_types: Mapping[str, str], epoch_scale: float):
        self.field_types = field_types
        self.epoch_scale = epoch_scale
        self.names: set[str] = set()

    def visit(self, node: ast.AST, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise ExpressionError("expression too deeply nested", _col(node))
        for refused, message in _REFUSED.items():
            if isinstance(node, refused):
                raise ExpressionError(message, _col(node))
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise ExpressionError(f"{type(node).__name__} is not allowed", _col(node))
        compiled: _Node = method(node, depth + 1)
        return compiled

    # -- leaves ---------------------------------------------------------------------------
    def _Constant(self, node: ast.Constant, depth: int) -> _Node:
        value = node.value
        if isinstance(value, bool):
            return _Node(BOOLEAN, const=value)
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise ExpressionError("non-finite constant", _col(node))
            return _Node(NUMBER, const=value)
        if isinstance(value, str):
            return _Node(STRING, const=value)
        raise ExpressionError(f"constant {value!r} is not allowed (numbers, strings, True/False only)", _col(node))

    def _Name(self, node: ast.Name, depth: int) -> _Node:
        name = node.id
        if name.startswith("__"):
            raise ExpressionError(f"dunder name {name!r} is not allowed", _col(node))
        if name in FUNCTIONS:
            raise ExpressionError(f"{name!r} is a function: call it, e.g. {name}(x)", _col(node))
        declared = self.field_types.get(name)
        if declared is None:
            raise ExpressionError(f"unknown field {name!r} (declare it under `fields`)", _col(node))
        kind = REFERENCEABLE.get(declared)
        if kind is None:
            raise ExpressionError(f"field {name!r} has type {declared!r}; expressions read "
                                  "number, integer, string, boolean or timestamp fields", _col(node))
        self.names.add(name)
        return _Node(NUMBER if kind == TIMESTAMP else kind, fn=_getter(name, kind, self.epoch_scale))

    # -- operators ------------------------------------------------------------------------
    def _BoolOp(self, node: ast.BoolOp, depth: int) -> _Node:
        parts = [self.visit(v, depth) for v in node.values]
        for part, src in zip(parts, node.values):
            if part.kind != BOOLEAN:
                raise ExpressionError("operands of `and`/`or` must be conditions", _col(src))
        fns = tuple(p.as_fn() for p in parts)
        if isinstance(node.op, ast.And):
            if len(fns) == 2:
                a, b = fns
                return _Node(BOOLEAN, fn=lambda r: a(r) and b(r))
            return _Node(BOOLEAN, fn=lambda r: all(f(r) for f in fns))
        if len(fns) == 2:
            a, b = fns
            return _Node(BOOLEAN, fn=lambda r: a(r) or b(r))
        return _Node(BOOLEAN, fn=lambda r: any(f(r) for f in fns))

    def _UnaryOp(self, node: ast.UnaryOp, depth: int) -> _Node:
        operand = self.visit(node.operand, depth)
        if isinstance(node.op, ast.Not):
            if operand.kind != BOOLEAN:
                raise ExpressionError("`not` needs a condition", _col(node))
            if operand.is_const:
                return _Node(BOOLEAN, const=not operand.const)
            f = operand.as_fn()
            return _Node(BOOLEAN, fn=lambda r: not f(r))
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            if operand.kind != NUMBER:
                raise ExpressionError("unary minus/plus needs a number", _col(node))
            sign = -1 if isinstance(node.op, ast.USub) else 1
            if operand.is_const:
                return _Node(NUMBER, const=sign * operand.const)
            f = operand.as_fn()
            return _Node(NUMBER, fn=(lambda r: -f(r)) if sign < 0 else f)
        raise ExpressionError(f"operator {type(node.op).__name__} is not allowed", _col(node))

    def _BinOp(self, node: ast.BinOp, depth: int) -> _Node:
        op = type(node.op)
        if op not in _ARITH:
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed", _col(node))
        left, right = self.visit(node.left, depth), self.visit(node.right, depth)
        if left.kind != NUMBER or right.kind != NUMBER:
            raise ExpressionError("arithmetic works on numbers only", _col(node))
        if op is ast.Pow:
            if not right.is_const or abs(right.const) > MAX_EXPONENT:
                raise ExpressionError(f"`**` needs a constant exponent between -{MAX_EXPONENT} and {MAX_EXPONENT}",
                                      _col(node.right))
        if left.is_const and right.is_const:
            try:
                return _Node(NUMBER, const=_ARITH[op](left.const, right.const))
            except (ArithmeticError, ValueError) as exc:
                raise ExpressionError(f"constant arithmetic fails: {exc}", _col(node)) from None
        return _Node(NUMBER, fn=_binary(_ARITH[op], left, right))

    def _Compare(self, node: ast.Compare, depth: int) -> _Node:
        operands = [self.visit(node.left, depth)]
        pairs: list[Fn | None] = []
        for op_node, comp in zip(node.ops, node.comparators):
            op = type(op_node)
            left = operands[-1]
            if op in (ast.In, ast.NotIn):
                right = self._literal_set(comp, left.kind)
            elif op in _COMPARE:
                right = self.visit(comp, depth)
                if op in _ORDERING and (left.kind != right.kind or left.kind == BOOLEAN):
                    raise ExpressionError("`<`, `<=`, `>`, `>=` compare two numbers or two strings", _col(comp))
                if left.kind != right.kind:
                    raise ExpressionError(f"comparing a {left.kind} with a {right.kind}", _col(comp))
            else:
                raise ExpressionError(f"comparison {op.__name__} is not allowed", _col(comp))
            operands.append(right)
            pairs.append(self._pair(op, left, right))
        if all(p is None for p in pairs):  # constant comparison
            value = all(_COMPARE[type(o)](a.const, b.const)
                        for o, a, b in zip(node.ops, operands, operands[1:]))
            return _Node(BOOLEAN, const=value)
        if len(pairs) == 1 and pairs[0] is not None:
            return _Node(BOOLEAN, fn=pairs[0])
        return _Node(BOOLEAN, fn=self._chain(node.ops, operands))

    def _Call(self, node: ast.Call, depth: int) -> _Node:
        func = node.func
        if not isinstance(func, ast.Name) or func.id not in FUNCTIONS:
            raise ExpressionError(f"only {', '.join(FUNCTIONS)} may be called", _col(node))
        if node.keywords:
            raise ExpressionError("keyword arguments are not allowed", _col(node))
        args = [self.visit(a, depth) for a in node.args]
        if any(a.kind != NUMBER for a in args):
            raise ExpressionError(f"{func.id}() takes numbers", _col(node))
        if func.id == "abs":
            if len(args) != 1:
                raise ExpressionError("abs() takes exactly one argument", _col(node))
            (arg,) = args
            if arg.is_const:
                return _Node(NUMBER, const=abs(arg.const))
            f = arg.as_fn()
            return _Node(NUMBER, fn=lambda r: abs(f(r)))
        if len(args) < 2:
            raise ExpressionError(f"{func.id}() takes at least two arguments", _col(node))
        pick = min if func.id == "min" else max
        fns = tuple(a.as_fn() for a in args)
        if len(fns) == 2:
            a, b = fns
            return _Node(NUMBER, fn=lambda r: pick(a(r), b(r)))
        return _Node(NUMBER, fn=lambda r: pick([f(r) for f in fns]))

    # -- helpers --------------------------------------------------------------------------
    def _literal_set(self, node: ast.AST, kind: str) -> _Node:
        if not isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            raise ExpressionError("`in` needs a literal tuple, list or set of constants", _col(node))
        values = []
        for elt in node.elts:
            if not isinstance(elt, ast.Constant):
                raise ExpressionError("`in` needs a literal tuple, list or set of constants", _col(elt))
            item = self._Constant(elt, 0)
            if item.kind != kind:
                raise ExpressionError(f"`in` compares a {kind} with a {item.kind}", _col(elt))
            values.append(item.const)
        return _Node(kind, const=frozenset(values))

    @staticmethod
    def _pair(op: type, left: _Node, right: _Node) -> Fn | None:
        if left.is_const and right.is_const:
            return None
        return _binary(_COMPARE[op], left, right)

    @staticmethod
    def _chain(ops: list[ast.cmpop], operands: list[_Node]) -> Fn:
        """`a < b < c`: each operand evaluated once, short-circuiting like Python."""
        getters = tuple(o.as_fn() for o in operands)
        tests = tuple(_COMPARE[type(o)] for o in ops)

        def chained(r: Mapping[str, Any]) -> bool:
            left = getters[0](r)
            for test, get in zip(tests, getters[1:]):
                right = get(r)
                if not test(left, right):
                    return False
                left = right
            return True

        return chained


#: the exact Python types a JSON value of each kind has (exact: a bool is not a number)
_EXACT_TYPES = {NUMBER: (float, int), STRING: (str,), BOOLEAN: (bool,)}


def _getter(name: str, kind: str, epoch_scale: float) -> Fn:
    """Read a field, raising `SkipRecord` unless it has the declared kind."""
    types = _EXACT_TYPES.get(kind)
    if types is not None:
        def typed(r: Mapping[str, Any]) -> Any:
            v = r.get(name)
            if type(v) in types:
                return v
            raise SkipRecord
        return typed

    def timestamp(r: Mapping[str, Any]) -> Any:
        t = to_seconds(r.get(name), epoch_scale)
        if t is None:
            raise SkipRecord
        return t
    return timestamp
