"""The artifact directory `guardstream finetune` writes, and its manifest.

    OUT/adapter/      the LoRA adapter (PEFT), or OUT/model/ for the classifier kind
    OUT/tokenizer/    the tokenizer the model was trained with
    OUT/manifest.json base model (path, id, weights digest), data (files, split, digest), hyperparameters,
                      seed, library versions, the evaluator options that serve it, adapter digest
    OUT/metrics.json  before / after metrics on the test split
    OUT/checkpoints/  trainer checkpoints (what `--resume` continues from)
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evaluators.digests import sha256_named_files

SCHEMA = "guardstream.finetune.v1"
MANIFEST = "manifest.json"
METRICS = "metrics.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "guardstream")


class ArtifactError(ValueError):
    """Not a finetune artifact, or an incomplete one (one line, names the path)."""


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def weights_digest(model_dir: str | Path) -> str:
    """sha256 over the weight files of a model directory (names and bytes, in name order)."""
    root = Path(model_dir)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ArtifactError(f"{root}: no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    return sha256_named_files(files)


def base_model_entry(path: str | Path) -> dict[str, Any]:
    """Where the base model is, what it calls itself, and the digest of its weights."""
    root = Path(path)
    model_id = root.name
    config = root / "config.json"
    if config.is_file():
        model_id = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path") or model_id
    return {"path": str(root.resolve()), "id": model_id, "weights_sha256": weights_digest(root)}


def write_manifest(out: Path, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    manifest = {"schema": SCHEMA, "kind": kind,
                "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                "libraries": library_versions(), **fields}
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def write_metrics(out: Path, metrics: Mapping[str, Any]) -> None:
    (out / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an artifact directory; ArtifactError when it is not one."""
    file = Path(path) / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not a finetune artifact (no {MANIFEST})") from None
    except ValueError as exc:
        raise ArtifactError(f"{file}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise ArtifactError(f"{file}: not a guardstream finetune manifest (schema {SCHEMA})")
    return manifest
