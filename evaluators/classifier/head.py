"""The classifier's trained parts as plain numpy: no scikit-learn at serve time.

* `Head`: embedding -> raw logit (logistic regression, or a one-hidden-layer ReLU MLP).
* `Calibrator`: raw logit -> calibrated P(unsafe) (Platt sigmoid or isotonic steps).
* `CategoryHead`: embedding -> the most likely unsafe category (multinomial logistic regression).

All arrays live in one `.npz` file under prefixed keys (`head.W`, `cal.a`, `cat.W`...).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

HeadKind = Literal["logreg", "mlp"]
CalibrationKind = Literal["platt", "isotonic", "none"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    p: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))
    return p


@dataclass(slots=True)
class Head:
    """Raw logit of *unsafe* from an embedding matrix (n, d)."""

    kind: HeadKind
    arrays: dict[str, np.ndarray]

    def logits(self, x: np.ndarray) -> np.ndarray:
        a = self.arrays
        z: np.ndarray
        if self.kind == "logreg":
            z = x @ a["W"] + a["b"]
            return z
        hidden = np.maximum(x @ a["W1"] + a["b1"], 0.0)
        z = hidden @ a["W2"] + a["b2"]
        return z


@dataclass(slots=True)
class Calibrator:
    """Raw logit -> calibrated probability. Platt: sigmoid(a*z + b); isotonic: a monotone step function."""

    kind: CalibrationKind
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        if self.kind == "platt":
            return _sigmoid(self.arrays["a"] * z + self.arrays["b"])
        if self.kind == "isotonic":
            p: np.ndarray = np.interp(z, self.arrays["x"], self.arrays["y"])
            return p
        return _sigmoid(z)


@dataclass(slots=True)
class CategoryHead:
    """Names the unsafe category; with a single class it always answers that class."""

    classes: list[str]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> list[str]:
        if len(self.classes) == 1 or not self.arrays:
            return [self.classes[0]] * len(x)
        scores = x @ self.arrays["W"].T + self.arrays["b"]
        return [self.classes[i] for i in np.argmax(scores, axis=1)]


@dataclass(slots=True)
class Model:
    head: Head
    calibrator: Calibrator
    categories: CategoryHead

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Calibrated P(unsafe) per row."""
        p: np.ndarray = np.clip(self.calibrator(self.head.logits(x)), 0.0, 1.0)
        return p

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"head.{k}": v for k, v in self.head.arrays.items()}
        out.update({f"cal.{k}": v for k, v in self.calibrator.arrays.items()})
        out.update({f"cat.{k}": v for k, v in self.categories.arrays.items()})
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}

    def digest(self) -> str:
        """sha256 over the array contents (file bytes of an .npz carry timestamps)."""
        h = hashlib.sha256()
        for key, value in sorted(self.arrays().items()):
            h.update(key.encode())
            h.update(str(value.shape).encode())
            h.update(np.ascontiguousarray(value).tobytes())
        h.update(self.head.kind.encode() + self.calibrator.kind.encode() + "|".join(self.categories.classes).encode())
        return h.hexdigest()

    def save(self, path: Path) -> None:
        np.savez(path, **self.arrays())  # type: ignore[arg-type]  # numpy's stub checks **kwds against savez's own allow_pickle: bool

    @classmethod
    def load(cls, path: Path, head_kind: HeadKind, calibration: CalibrationKind, classes: list[str]) -> Model:
        with np.load(path) as data:
            arrays = {k: np.asarray(data[k], dtype=np.float32) for k in data.files}

        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

        return cls(Head(head_kind, part("head.")), Calibrator(calibration, part("cal.")),
                   CategoryHead(list(classes), part("cat.")))
