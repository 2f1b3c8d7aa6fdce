"""The audit event v1: one definition (schemas/event.v1.json) shared by the proxy and the consumers."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

SCHEMA_NAME = "guardstream.event.v1"
SCHEMA_PATH = Path(__file__).with_name("schemas") / "event.v1.json"
#: the shadow evaluators' agreement counts, sent on the same topic (proxy/shadow.py)
TALLY_SCHEMA_NAME = "guardstream.shadow_tally.v1"
_SCHEMA_FILES = {SCHEMA_NAME: SCHEMA_PATH, TALLY_SCHEMA_NAME: SCHEMA_PATH.with_name("shadow_tally.v1.json")}


@lru_cache(maxsize=4)
def schema(name: str = SCHEMA_NAME) -> dict[str, Any]:
    return json.loads(_SCHEMA_FILES[name].read_text())


@lru_cache(maxsize=4)
def _validator(name: str) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(schema(name))


def validation_errors(event: Mapping[str, Any], name: str = SCHEMA_NAME) -> list[str]:
    """Every way `event` breaks the schema `name`, as readable strings (empty when valid)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in _validator(name).iter_errors(event)]


def content_digest(messages: Iterable[Mapping[str, str]] | None, completion: str | None) -> str:
    blob = json.dumps({"messages": list(messages or []), "completion": completion}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def new_event(**fields: Any) -> dict[str, Any]:
    """A v1 event with its identity and timestamp filled in."""
    return {
        "schema": SCHEMA_NAME,
        "event_id": str(uuid.uuid4()),
        "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        **fields,
    }
