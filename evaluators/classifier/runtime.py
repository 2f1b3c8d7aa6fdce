"""Serving the learned safety model without torch: ONNX Runtime + the `tokenizers` library.

An encoder artifact (format `guardstream.classifier.v2`) is a directory:

    artifact.json   format, version, backbone, file digests, encoding, calibration per stage,
                    thresholds per stage and operating point, categories
    model.onnx      ids, mask -> unsafe logit, category logits (int8 weights)
    tokenizer.json  the (pruned) SentencePiece tokenizer the model was trained with
    manifest.json   training data: sources, licences, counts
    metrics.json    dev split, held-out sources, per language, operating points, cascade zones

Loading checks both files against the sha256 digests in artifact.json and fails with one line
naming the file when either differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluators.classifier.artifact import ArtifactError
from evaluators.classifier.encoding import Encoder, Judged, length_batches
from evaluators.digests import sha256_file

FORMAT = "guardstream.classifier.v2"
META_FILE, MODEL_FILE, TOKENIZER_FILE = "artifact.json", "model.onnx", "tokenizer.json"


def artifact_version(files: dict[str, str], calibration: Any, thresholds: Any) -> str:
    """A digest of the weights, tokenizer, calibration and thresholds: same model, same version."""
    blob = json.dumps({"files": files, "calibration": calibration, "thresholds": thresholds}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    p: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))
    return p


@dataclass(slots=True)
class Scored:
    score: float  # calibrated P(unsafe)
    categories: list[str]  # every category whose probability reaches the category threshold, best first


class SafetyArtifact:
    """A loaded, verified encoder artifact; `score` is thread-safe (one ONNX session per artifact)."""

    def __init__(self, path: Path, meta: dict[str, Any], threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = path
        self.meta = meta
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("GUARDSTREAM_CLASSIFIER_THREADS", "0") or 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        enc = meta["encoding"]
        self.encoder = Encoder(Tokenizer.from_file(str(path / TOKENIZER_FILE)), int(enc["max_length"]),
                               int(enc["prompt_in_pair"]))
        self.categories: list[str] = list(meta["categories"])
        self.category_threshold = float(meta.get("category_threshold", 0.5))
        self.calibration = {k: (float(v[0]), float(v[1])) for k, v in meta["calibration"].items()}
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    def threshold(self, stage: str, point: str = "default") -> float:
        return float(self.meta["thresholds"][stage][point])

    def logits(self, items: Sequence[Judged], max_tokens: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Raw (unsafe logit, category logits) per item; items are length-sorted into sub-batches."""
        ids = self.encoder.ids(items)
        z = np.zeros(len(ids), dtype=np.float32)
        c = np.zeros((len(ids), len(self.categories)), dtype=np.float32)
        for chunk in length_batches([len(i) for i in ids], max_tokens):
            input_ids, mask = self.encoder.pad([ids[i] for i in chunk])
            zu, zc = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})
            z[chunk], c[chunk] = zu, zc
        return z, c

    def calibrated(self, z: np.ndarray, stages: Sequence[str]) -> np.ndarray:
        ab = np.array([self.calibration.get(s, (1.0, 0.0)) for s in stages], dtype=np.float64).reshape(-1, 2)
        return _sigmoid(ab[:, 0] * z + ab[:, 1])

    def score(self, items: Sequence[Judged]) -> list[Scored]:
        if not items:
            return []
        z, c = self.logits(items)
        p = self.calibrated(z, ["output" if it.answer is not None else "input" for it in items])
        pc = _sigmoid(c)
        out = []
        for score, probs in zip(p.tolist(), pc):
            ranked = np.argsort(-probs)
            names = [self.categories[i] for i in ranked if probs[i] >= self.category_threshold]
            out.append(Scored(float(score), names or [self.categories[int(ranked[0])]]))
        return out


def read_meta(path: str | Path) -> dict[str, Any]:
    root = Path(path)
    meta_path = root / META_FILE
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{root} is not a classifier artifact (no {META_FILE}); build one with `guardstream train`") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path}: invalid JSON: {exc.msg}") from None
    return meta


def verify(root: Path, meta: dict[str, Any]) -> None:
    """Both files must match their recorded sha256; one line naming the file otherwise."""
    for name, expected in meta.get("files", {}).items():
        path = root / name
        if not path.is_file():
            raise ArtifactError(f"{path}: missing (the artifact lists it with sha256 {expected[:12]}...)")
        found = sha256_file(path)
        if found != expected:
            raise ArtifactError(f"{path}: sha256 {found[:12]}... does not match {expected[:12]}... recorded in "
                                f"{META_FILE}; the file is corrupt or was replaced")


_loaded: dict[tuple[str, float], SafetyArtifact] = {}
_loaded_lock = threading.Lock()


def load(path: str | Path) -> SafetyArtifact:
    """Load and verify an encoder artifact once per process (shared by every evaluator using it)."""
    root = Path(path).resolve()
    meta = read_meta(root)
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{root / META_FILE}: unsupported format {meta.get('format')!r} (expected {FORMAT})")
    key = (str(root), (root / META_FILE).stat().st_mtime)
    with _loaded_lock:
        if key not in _loaded:
            verify(root, meta)
            _loaded[key] = SafetyArtifact(root, meta)
        return _loaded[key]
