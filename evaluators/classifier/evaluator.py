"""The `classifier` evaluator: calibrated P(unsafe) from a trained artifact, micro-batched on CPU.

Options (YAML `evaluators.NAME.options`, the `ClassifierOptions` model in options.py):
  path             artifact directory (default: the shipped model, evaluators/classifier/models/default)
  operating_point  `default` (few false alarms) or `strict` (high recall); encoder artifacts only
  threshold        override the artifact's threshold(s) (unsafe when score >= threshold)
  max_batch_size   largest batch one forward pass takes (default 32)
  max_wait_ms      how long the batcher waits to fill a batch (default 2)
  stages           ["input", "output"] by default

Two artifact formats load: the encoder (`guardstream.classifier.v2`, the shipped default: ONNX
Runtime, no torch; answers are judged with their prompt; categories are S-codes and
`prompt_injection`) and the older embedding + head format (v1: MiniLM via torch, `hf` extra).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from evaluators.base import STAGES, BaseEvaluator, EvalItem, OptionError, Stage, Verdict
from evaluators.batching import MicroBatcher
from evaluators.classifier import DEFAULT_MODEL_DIR
from evaluators.classifier.artifact import Artifact, ArtifactError, load_artifact
from evaluators.classifier.embedding import Embedder, shared_embedder
from evaluators.classifier.encoding import Judged
from evaluators.classifier.options import ClassifierOptions
from evaluators.classifier.runtime import FORMAT, SafetyArtifact, Scored, read_meta
from evaluators.classifier.runtime import load as load_encoder
from evaluators.options import parse_options

log = structlog.get_logger("guardstream.classifier")


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


def judged_of(item: EvalItem) -> Judged:
    """A prompt alone (stage input), or the answer with the user turn before it (stage output)."""
    if item.stage == "input":
        return Judged(item.text)
    judged = item.judged if item.judged >= 0 else len(item.turns) + item.judged
    prompt = next((t.content for t in reversed(item.turns[:judged]) if t.role == "user"), "")
    return Judged(prompt, item.text)


class EncoderEvaluator(BaseEvaluator):
    """Judges prompts, and answers in the context of their prompt, with an ONNX encoder artifact."""

    def __init__(self, name: str, artifact: SafetyArtifact, *, threshold: float | None = None,
                 operating_point: str = "default", max_batch_size: int = 32, max_wait_ms: float = 2.0,
                 stages: Sequence[Stage] = STAGES) -> None:
        self.name = name
        self.artifact = artifact
        self.thresholds = {stage: artifact.threshold(stage, operating_point) if threshold is None else float(threshold)
                           for stage in STAGES}
        suffix = "" if operating_point == "default" else f"-{operating_point}"
        self.version = artifact.version + suffix + ("" if threshold is None else f"-t{float(threshold):g}")
        self.stages = frozenset(stages)
        self._batcher: MicroBatcher[Judged, Scored] = MicroBatcher(
            artifact.score, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, name=f"classifier-{name}")

    def cache_context(self, item: EvalItem) -> str:
        j = judged_of(item)
        return j.prompt if j.answer is None else f"{j.prompt}\x00{j.answer}"

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        start = time.perf_counter()
        results = await self._batcher.submit_many([judged_of(item) for item in items])
        latency_ms = (time.perf_counter() - start) * 1000.0
        verdicts = []
        for item, scored in zip(items, results):
            unsafe = scored.score >= self.thresholds[item.stage]
            verdicts.append(Verdict(safe=not unsafe, evaluator=self.name, version=self.version,
                                    categories=scored.categories if unsafe else [], score=scored.score,
                                    latency_ms=latency_ms))
        return verdicts

    async def aclose(self) -> None:
        await self._batcher.aclose()


def create(name: str, options: Mapping[str, Any]) -> ClassifierEvaluator | EncoderEvaluator:
    opts = parse_options(ClassifierOptions, options)
    path = Path(opts.path or DEFAULT_MODEL_DIR)
    stages = tuple(sorted(opts.stages))
    try:
        if read_meta(path).get("format") == FORMAT:
            return EncoderEvaluator(name, load_encoder(path), threshold=opts.threshold,
                                    operating_point=opts.operating_point, max_batch_size=opts.max_batch_size,
                                    max_wait_ms=opts.max_wait_ms, stages=stages)
        artifact = load_artifact(path)
    except (ArtifactError, OSError) as exc:
        raise OptionError("path", str(exc)) from None
    return ClassifierEvaluator(name, artifact, threshold=opts.threshold, max_batch_size=opts.max_batch_size,
                               max_wait_ms=opts.max_wait_ms, stages=stages)
