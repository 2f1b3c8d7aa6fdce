"""Evaluator options as typed models: the base each engine's options model extends, the `stages` option they
share, and the one `OptionError` a failed validation becomes (the option's path and the reason, one line).

Every engine declares its `options:` mapping as a pydantic model next to it (the registry names them), so the
proxy checks an evaluator's options when it loads its config, and the engine reads typed fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar, cast

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError
from pydantic_core import ErrorDetails

from evaluators.base import STAGES, OptionError, Stage


class EngineOptions(BaseModel):
    """Base of an engine's options: unknown options are errors (a typo fails at start-up)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def stage_set(value: Any) -> frozenset[Stage]:
    """`input`, `output`, or a list of them (not empty)."""
    if isinstance(value, frozenset) and value and value <= set(STAGES):
        return cast(frozenset[Stage], value)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise ValueError(f"must be a non-empty subset of [input, output] (got {value!r})")
    stages = frozenset(str(s) for s in items)
    bad = stages - set(STAGES)
    if bad or not stages:
        raise ValueError(f"must be a non-empty subset of [input, output] (got {sorted(stages)})")
    return cast(frozenset[Stage], stages)


#: the `stages` option every engine accepts: a stage name or a non-empty list of them
Stages = Annotated[frozenset[Stage], PlainValidator(stage_set)]

M = TypeVar("M", bound=BaseModel)


def parse_options(model: type[M], options: Mapping[str, Any] | M | None) -> M:
    """`options` validated by `model` (an instance passes as it is); an `OptionError` naming the first bad one."""
    if isinstance(options, model):
        return options
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        raise option_error(exc, model) from None


def option_error(exc: ValidationError, model: type[BaseModel] | None = None) -> OptionError:
    """The first error of a validation as an `OptionError`: its path under `options` and a one-line reason."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where, reason = _describe(first, model)
    if len(errors) > 1:
        reason += f" (and {len(errors) - 1} more)"
    return OptionError(where or "options", reason)


def _describe(error: ErrorDetails, model: type[BaseModel] | None) -> tuple[str, str]:
    loc = ".".join(str(p) for p in error["loc"])
    raised = (error.get("ctx") or {}).get("error")
    if isinstance(raised, OptionError):  # a model validator that names the option itself
        return (f"{loc}.{raised.option}" if loc else raised.option), raised.reason
    if isinstance(raised, ValueError):
        return loc, str(raised)
    if error["type"] == "missing":
        return loc, "required"
    if error["type"] == "extra_forbidden":
        if model is not None and len(error["loc"]) == 1:
            return loc, f"unknown option (known: {', '.join(sorted(model.model_fields))})"
        return loc, "unknown option"
    return loc, error["msg"]
