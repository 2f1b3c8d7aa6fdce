"""Evaluator types by name, imported lazily so heavy engines cost nothing until used.

A policy names an evaluator `type`; `create` imports the module and calls its
factory with the evaluator's instance name and its options from the config.
Each engine registers one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from evaluators.base import Evaluator, OptionError

#: type name -> "module:factory"; factory(name: str, options: Mapping) -> Evaluator
EVALUATOR_TYPES: dict[str, str] = {
    "pii": "evaluators.rules.pii:create",
    "secrets": "evaluators.rules.secrets:create",
    "injection": "evaluators.rules.injection:create",
    "unicode": "evaluators.rules.unicode:create",
    "regex": "evaluators.rules.regex:create",
    "llama_guard": "evaluators.llama_guard:create",
    "classifier": "evaluators.classifier:create",
    "cascade": "evaluators.cascade:create",
    "data_quality": "evaluators.data_quality:create",
    "reward_model": "evaluators.reward_model:create",
}


class UnknownEvaluatorType(ValueError):
    """The config names an evaluator type nobody registered."""


def factory_for(type_name: str) -> Callable[[str, Mapping[str, Any]], Evaluator]:
    """The factory for a registered type name, or for a plugin given as "package.module:factory"."""
    try:
        target = type_name if ":" in type_name else EVALUATOR_TYPES[type_name]
    except KeyError:
        known = ", ".join(sorted(EVALUATOR_TYPES))
        raise UnknownEvaluatorType(f"unknown evaluator type {type_name!r} (known: {known})") from None
    module_name, _, attr = target.partition(":")
    factory: Callable[[str, Mapping[str, Any]], Evaluator] = getattr(importlib.import_module(module_name), attr)
    return factory


def create(type_name: str, name: str, options: Mapping[str, Any] | None = None) -> Evaluator:
    """Build an evaluator instance from its type name and options; a bad option is an `OptionError` naming it
    (engines that validate their options with a pydantic model included)."""
    factory = factory_for(type_name)
    try:
        return factory(name, dict(options or {}))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise OptionError(".".join(str(p) for p in first["loc"]) or "options", first["msg"] + more) from None
