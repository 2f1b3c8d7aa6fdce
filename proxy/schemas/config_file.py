"""The config file's mechanics, shared by the proxy (proxy/config.py) and the consumer commands: read one YAML
mapping, apply `GUARDSTREAM__A__B=value` environment overrides and command-line overrides, and turn validation
errors into one line per error naming the file and the key path.

Precedence, for every key: command-line flag > environment > file > the model's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

ENV_PREFIX = "GUARDSTREAM__"


class ConfigError(Exception):
    """A configuration problem, with a message that names the key and the reason."""


def read_mapping(source: Path) -> dict[str, Any]:
    """The YAML file's top-level mapping (empty file: {}); a ConfigError naming the file otherwise."""
    try:
        raw = yaml.safe_load(source.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    return raw


def apply_overrides(raw: dict[str, Any], env: Mapping[str, str], overrides: Mapping[str, Any] | None) -> None:
    """`GUARDSTREAM__` environment variables, then `overrides` (dotted key -> value; None: not given) over `raw`."""
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__") if k]
            if keys:
                set_path(raw, keys, env_value(value))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_path(raw, dotted.split("."), value)


def env_value(value: str) -> Any:
    """An environment value parsed as a YAML scalar (`true`, `512`, `null`); text YAML cannot read stays text."""
    if not value:
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def set_path(raw: dict[str, Any], keys: list[str], value: Any) -> None:
    node = raw
    for key in keys[:-1]:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = node[key] = {}
        node = nxt
    node[keys[-1]] = value


def validation_error(source: Path | str, exc: ValidationError) -> ConfigError:
    """One line per error, each naming the file and the key path."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {err['msg']}")
    return ConfigError("\n".join(lines))


def one_line(message: str) -> str:
    """The first line of a message, and how many it had (a config error is one line)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()] or [""]
    return lines[0] + (f" (and {len(lines) - 1} more lines)" if len(lines) > 1 else "")


def error_lines(exc: Exception, prefix: str = "guardstream") -> str:
    """A configuration error as printed: each of its lines on its own, `prefix: ` first."""
    return "\n".join(f"{prefix}: {line}" for line in str(exc).splitlines())
