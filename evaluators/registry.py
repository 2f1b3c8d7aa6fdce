"""Evaluator types by name, imported lazily so heavy engines cost nothing until used.

A policy names an evaluator `type`; `create` imports the module and calls its
factory with the evaluator's instance name and its options from the config.
Each engine registers its factory and its options model (a pydantic model in a light module, so the proxy
checks every evaluator's options when it loads its config, before any engine is built).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from evaluators.base import Evaluator
from evaluators.options import option_error, parse_options

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

#: type name -> "module:Model", the engine's options (a plugin factory may carry its own as `options_model`)
OPTION_MODELS: dict[str, str] = {
    "pii": "evaluators.rules.options:PiiOptions",
    "secrets": "evaluators.rules.options:SecretsOptions",
    "injection": "evaluators.rules.options:InjectionOptions",
    "unicode": "evaluators.rules.options:UnicodeOptions",
    "regex": "evaluators.rules.options:RegexOptions",
    "llama_guard": "evaluators.llama_guard.options:LlamaGuardOptions",
    "classifier": "evaluators.classifier.options:ClassifierOptions",
    "cascade": "evaluators.cascade:CascadeOptions",
    "data_quality": "evaluators.data_quality.options:DataQualityOptions",
    "reward_model": "evaluators.reward_model.options:RewardModelOptions",
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


def options_model(type_name: str) -> type[BaseModel] | None:
    """The options model of a type: registered, or a plugin factory's `options_model` (None: it has none, and
    checks its options itself when built)."""
    if type_name in OPTION_MODELS:
        module_name, _, attr = OPTION_MODELS[type_name].partition(":")
        model: type[BaseModel] = getattr(importlib.import_module(module_name), attr)
        return model
    declared = getattr(factory_for(type_name), "options_model", None)
    return declared if isinstance(declared, type) and issubclass(declared, BaseModel) else None


def check_options(type_name: str, options: Mapping[str, Any] | None) -> BaseModel | None:
    """An evaluator's options validated by its type's model, without building it: an `OptionError` naming the
    first bad option, `UnknownEvaluatorType` for a type nobody registered (None: the type has no model)."""
    model = options_model(type_name)
    return None if model is None else parse_options(model, options)


def create(type_name: str, name: str, options: Mapping[str, Any] | None = None) -> Evaluator:
    """Build an evaluator instance from its type name and options; a bad option is an `OptionError` naming it
    (engines that validate their options with a pydantic model included)."""
    factory = factory_for(type_name)
    try:
        return factory(name, dict(options or {}))
    except ValidationError as exc:  # a plugin that validates with its own pydantic model
        raise option_error(exc) from None
