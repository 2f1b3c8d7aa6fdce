"""The configuration is documented and its documented examples work: every key of every config model is in
docs/configuration.md (in its section), and every `GUARDSTREAM__...=value` override the docs and the config
module show is a valid override that lands where it says."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import proxy.config
from proxy.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).parents[1]
DOC = (ROOT / "docs" / "configuration.md").read_text()


def sections(text: str) -> dict[str, str]:
    """`## \\`name\\`` sections of the reference, by top-level key."""
    parts = re.split(r"^## `([a-z_]+)`", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The config model inside an annotation (`X`, `X | None`, `list[X]`, `dict[str, X]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = model_of(arg)
        if found is not None:
            return found
    return None


def keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, field name) of every field of `model`, nested models included."""
    for name, field in model.model_fields.items():
        yield prefix + name, name
        inner = model_of(field.annotation)
        if inner is not None:
            yield from keys(inner, f"{prefix}{name}.")


@pytest.mark.parametrize("section", list(Settings.model_fields))
def test_every_config_key_is_documented_in_its_section(section: str) -> None:
    documented = sections(DOC)
    assert section in documented, f"docs/configuration.md has no ## `{section}` section"
    inner = model_of(Settings.model_fields[section].annotation)
    assert inner is not None
    missing = [path for path, name in keys(inner, f"{section}.")
               if not re.search(rf"(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z_])", documented[section])]
    assert not missing, f"undocumented in docs/configuration.md: {missing}"


def env_examples() -> list[tuple[str, str]]:
    """Every `GUARDSTREAM__A__B=value` written in the docs, the README and the config module."""
    texts = [DOC, (ROOT / "README.md").read_text(), proxy.config.__doc__ or ""]
    return sorted({(m.group(1), m.group(2)) for text in texts
                   for m in re.finditer(r"(GUARDSTREAM__[A-Z0-9_]+)=([^\s`'\")]+)", text)})


@pytest.mark.parametrize("name,value", env_examples())
def test_every_documented_env_override_works(name: str, value: str) -> None:
    try:
        settings = load_settings(env={name: value})
    except ConfigError as exc:
        pytest.fail(f"the documented example {name}={value} is not a valid override: {exc}")
    node: Any = settings
    for key in name.removeprefix("GUARDSTREAM__").lower().split("__"):
        node = node[key] if isinstance(node, dict) else getattr(node, key)
    assert str(node) == value


def test_env_overrides_reach_nested_keys_and_are_validated() -> None:
    settings = load_settings(env={"GUARDSTREAM__POLICIES__DEFAULT__MODE": "shadow",
                                  "GUARDSTREAM__UPSTREAM__POOL_SIZE": "32",
                                  "GUARDSTREAM__LOGGING__LOG_CONTENT": "true"})
    assert settings.policies["default"].mode == "shadow"
    assert settings.upstream.pool_size == 32 and settings.logging.log_content is True
    with pytest.raises(ConfigError, match="policy"):
        load_settings(env={"GUARDSTREAM__POLICY__MODE": "shadow"})  # the old, wrong example: one clear error


def test_an_env_value_yaml_cannot_read_is_taken_as_text() -> None:
    """`...`, `{unclosed` or `- ` were a YAML traceback at start-up; they are plain strings (and validated)."""
    assert load_settings(env={"GUARDSTREAM__AUDIT__TOPIC": "{unclosed"}).audit.topic == "{unclosed"
    with pytest.raises(ConfigError, match="server.port"):
        load_settings(env={"GUARDSTREAM__SERVER__PORT": "..."})
