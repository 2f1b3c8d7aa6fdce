"""The versioned classifier artifact: a directory anyone can load without scikit-learn.

    artifact.json   format, version, embedding model id + weights sha256, head kind,
                    calibration, threshold, categories, training settings
    head.npz        head, calibration and category weights (numpy arrays)
    manifest.json   training data: files + sha256, counts per label and source, licences
    metrics.json    validation and dev-split metrics

`version` is derived from the weights and the threshold, so two runs that produce
the same model get the same version (and share cache entries), and any change
to the model changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluators.classifier.head import Model

FORMAT = "guardstream.classifier.v1"
META_FILE = "artifact.json"
WEIGHTS_FILE = "head.npz"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"


class ArtifactError(ValueError):
    """The directory is not a loadable classifier artifact."""


@dataclass(slots=True)
class Artifact:
    path: Path
    meta: dict[str, Any]
    model: Model

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    @property
    def embedding(self) -> dict[str, Any]:
        return dict(self.meta["embedding"])


def model_version(model: Model, threshold: float) -> str:
    return hashlib.sha256(f"{model.digest()}|{threshold!r}".encode()).hexdigest()[:12]


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def save_artifact(out_dir: str | Path, model: Model, meta: Mapping[str, Any], manifest: Mapping[str, Any],
                  metrics: Mapping[str, Any]) -> Artifact:
    """Write the four files; `meta` must carry embedding, threshold and training settings."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full = {
        "format": FORMAT,
        **meta,
        "version": model_version(model, float(meta["threshold"])),
        "head": {"kind": model.head.kind, "file": WEIGHTS_FILE, "arrays_sha256": model.digest()},
        "calibration": model.calibrator.kind,
        "categories": list(model.categories.classes),
    }
    model.save(out / WEIGHTS_FILE)
    _write_json(out / META_FILE, full)
    _write_json(out / MANIFEST_FILE, manifest)
    _write_json(out / METRICS_FILE, metrics)
    return Artifact(out, full, model)


def load_artifact(path: str | Path) -> Artifact:
    """Load artifact.json and head.npz; fails with a message naming what is wrong."""
    root = Path(path)
    meta_path = root / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{root} is not a classifier artifact (no {META_FILE}); build one with `guardstream train`") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path}: invalid JSON: {exc.msg}") from None
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{meta_path}: unsupported format {meta.get('format')!r} (expected {FORMAT})")
    head = meta["head"]
    model = Model.load(root / head.get("file", WEIGHTS_FILE), head["kind"], meta["calibration"], meta["categories"])
    if model.digest() != head.get("arrays_sha256"):
        raise ArtifactError(f"{root / WEIGHTS_FILE}: weights do not match the digest in {META_FILE}")
    return Artifact(root, meta, model)
