"""Where a reward model's parts are: a plain model directory, or the artifact `guardstream finetune reward` writes.

    MODEL_DIR/                 config.json (one label), weights, tokenizer files
    ARTIFACT/manifest.json     {"schema": "guardstream.finetune.v1", "kind": "reward", "base_model": {"path": ...},
                                "input_format": "plain" | "chat_template", ...}
    ARTIFACT/adapter/          the LoRA adapter (PEFT) merged into the base model when loaded
    ARTIFACT/tokenizer/        the tokenizer it was trained with
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINETUNE_SCHEMA = "guardstream.finetune.v1"
#: artifact files and folders left out of the digest (training state, not the served model)
_NOT_SERVED = ("checkpoints",)


class ArtifactError(ValueError):
    """Not a loadable reward model (one line, names the path)."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    base: Path
    tokenizer: Path
    adapter: Path | None
    #: the format it was trained with (artifacts say); None: decide from the tokenizer
    input_format: str | None
    digest: str


def resolve(path: str | Path) -> ModelSource:
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"{root}: not a directory")
    manifest_file = root / "manifest.json"
    if manifest_file.is_file():
        try:
            manifest = json.loads(manifest_file.read_text())
        except ValueError as exc:
            raise ArtifactError(f"{manifest_file}: not JSON ({exc})") from None
        if manifest.get("schema") == FINETUNE_SCHEMA:
            return _artifact(root, manifest)
    if not (root / "config.json").is_file():
        raise ArtifactError(f"{root}: no config.json (a model directory) and no finetune manifest.json")
    return ModelSource(base=root, tokenizer=root, adapter=None, input_format=None, digest=digest(root))


def _artifact(root: Path, manifest: dict[str, Any]) -> ModelSource:
    if manifest.get("kind") != "reward":
        raise ArtifactError(f"{root} is a {manifest.get('kind')} artifact, not a reward model")
    entry = manifest.get("base_model")
    base = entry.get("path") if isinstance(entry, dict) else None
    if not base or not Path(str(base)).is_dir():
        raise ArtifactError(f"{root}/manifest.json: base_model.path {base!r} is not a directory here")
    fmt = manifest.get("input_format")
    return ModelSource(base=Path(str(base)), tokenizer=root / "tokenizer", adapter=root / "adapter",
                       input_format=str(fmt) if fmt in ("plain", "chat_template") else None,
                       digest=digest(root, Path(str(base))))


def digest(*roots: Path) -> str:
    """A short digest of the files that make up the model (names, sizes, modification times)."""
    h = hashlib.sha256()
    for root in roots:
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = file.relative_to(root)
            if rel.parts and rel.parts[0] in _NOT_SERVED:
                continue
            stat = file.stat()
            h.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]
