"""The `classifier` evaluator: calibrated P(unsafe) from a trained artifact, micro-batched on CPU.

Options (YAML `evaluators.NAME.options`):
  path            artifact directory (default: the shipped model, evaluators/classifier/models/default)
  threshold       override the artifact's threshold (unsafe when score >= threshold)
  max_batch_size  largest batch one forward pass takes (default 32)
  max_wait_ms     how long the batcher waits to fill a batch (default 2)
  stages          ["input", "output"] by default
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import structlog

from evaluators.base import STAGES, BaseEvaluator, EvalItem, OptionError, Stage, Verdict, check_option_names
from evaluators.batching import MicroBatcher
from evaluators.classifier import DEFAULT_MODEL_DIR
from evaluators.classifier.artifact import Artifact, ArtifactError, load_artifact
from evaluators.classifier.embedding import Embedder, shared_embedder

log = structlog.get_logger("guardstream.classifier")

OPTION_NAMES = {"path", "threshold", "max_batch_size", "max_wait_ms", "stages"}


class ClassifierEvaluator(BaseEvaluator):
    """Judges the judged turn's text; score = calibrated P(unsafe); category from the category head."""

    def __init__(self, name: str, artifact: Artifact, *, threshold: float | None = None,
                 max_batch_size: int = 32, max_wait_ms: float = 2.0,
                 stages: Sequence[Stage] = STAGES, embedder: Embedder | None = None) -> None:
        self.name = name
        self.artifact = artifact
        self.threshold = artifact.threshold if threshold is None else float(threshold)
        self.version = artifact.version if threshold is None else f"{artifact.version}-t{self.threshold:g}"
        self.stages = frozenset(stages)
        emb = artifact.embedding
        self.embedder = embedder or shared_embedder(max_length=int(emb["max_length"]),
                                                    truncation=emb.get("truncation", "head"))
        if self.embedder.weights_sha256 != emb.get("weights_sha256"):
            log.warning("classifier.embedding_mismatch", evaluator=name, artifact=str(artifact.path),
                        expected=emb.get("weights_sha256"), found=self.embedder.weights_sha256)
        self._batcher: MicroBatcher[str, tuple[float, str]] = MicroBatcher(
            self.predict, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, name=f"classifier-{name}")

    def predict(self, texts: list[str]) -> list[tuple[float, str]]:
        """Synchronous batch inference: (P(unsafe), most likely unsafe category) per text."""
        x = self.embedder.embed(texts, batch_size=max(len(texts), 1))  # sub-batched by length inside
        model = self.artifact.model
        scores = model.predict_proba(x)
        cats = model.categories.predict(x)
        return [(float(s), c) for s, c in zip(np.asarray(scores).tolist(), cats)]

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        start = time.perf_counter()
        results = await self._batcher.submit_many([item.text for item in items])
        latency_ms = (time.perf_counter() - start) * 1000.0
        verdicts = []
        for score, category in results:
            unsafe = score >= self.threshold
            verdicts.append(Verdict(safe=not unsafe, evaluator=self.name, version=self.version,
                                    categories=[category] if unsafe else [], score=score, latency_ms=latency_ms))
        return verdicts

    async def aclose(self) -> None:
        await self._batcher.aclose()


def create(name: str, options: Mapping[str, Any]) -> ClassifierEvaluator:
    check_option_names(options, OPTION_NAMES)
    path = Path(options.get("path") or DEFAULT_MODEL_DIR)
    stages = options.get("stages") or STAGES
    bad = set(stages) - set(STAGES)
    if bad:
        raise OptionError("stages", f"unknown stage(s) {sorted(bad)}")
    try:
        artifact = load_artifact(path)
    except (ArtifactError, OSError) as exc:
        raise OptionError("path", str(exc)) from None
    return ClassifierEvaluator(
        name, artifact,
        threshold=options.get("threshold"),
        max_batch_size=int(options.get("max_batch_size", 32)),
        max_wait_ms=float(options.get("max_wait_ms", 2.0)),
        stages=tuple(stages),
    )
