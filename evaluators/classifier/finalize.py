"""Turn an exported ONNX model into a finished artifact: calibration, thresholds, metrics, manifest.

All numbers come from the served model (int8 ONNX via `runtime.SafetyArtifact`):

* calibration: Platt scaling per stage on the val split (`encoder_train.calibrate`);
* thresholds, stage input: `default` keeps false alarms at most `POOL_FPR` on *every* held-out
  benign pool (`default_data.THRESHOLD_POOLS`, none trained on); stage output: at most
  `ANSWER_FPR` of the val split's safe answers; `strict` (both stages): the highest threshold
  that still flags `STRICT_RECALL` of the val split's unsafe items (never above `default`);
* metrics: dev split and held-out sources per source, per stage and per language; operating
  points; cascade zones on the held-out sources; int8 against float32 agreement.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluators.classifier import measure
from evaluators.classifier.default_data import THRESHOLD_POOLS
from evaluators.classifier.encoder_train import Prepared, calibrate, judged
from evaluators.classifier.progress import Bar, no_progress
from evaluators.classifier.runtime import (
    FORMAT,
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    SafetyArtifact,
    artifact_version,
)
from evaluators.classifier.taxonomy import CATEGORIES
from evaluators.classifier.taxonomy import describe as describe_categories
from evaluators.digests import sha256_file
from evaluators.evaluation.datasets import LabelledRow

POOL_FPR = 0.02
ANSWER_FPR = 0.03
STRICT_RECALL = 0.95
#: a category is named when its own probability reaches this (the head's classes are balanced, which makes
#: rare categories' probabilities generous: 0.5 named a second category for many single-hazard prompts)
CATEGORY_THRESHOLD = 0.6
ENCODING = {"max_length": 128, "prompt_in_pair": 40, "prompt_format": "<s> query: PROMPT </s>",
            "answer_format": "<s> query: PROMPT </s></s> passage: ANSWER </s>", "truncation": "head_tail"}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_meta(out: Path, calibration: dict[str, Any], thresholds: dict[str, Any], training: dict[str, Any],
               name: str = "guardstream-default") -> dict[str, Any]:
    files = {MODEL_FILE: sha256_file(out / MODEL_FILE), TOKENIZER_FILE: sha256_file(out / TOKENIZER_FILE)}
    meta = {
        "format": FORMAT, "name": name, "version": artifact_version(files, calibration, thresholds),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files, "encoding": ENCODING, "calibration": calibration, "thresholds": thresholds,
        "categories": list(CATEGORIES), "category_names": describe_categories(), "category_threshold": CATEGORY_THRESHOLD,
        "judged_text": "stage input: the prompt; stage output: the answer, read after its prompt",
        "training": training,
    }
    _write_json(out / META_FILE, meta)
    return meta


def _stage_idx(rows: Sequence[LabelledRow], stage: str) -> list[int]:
    return [i for i, r in enumerate(rows) if r.stage() == stage]


def choose_thresholds(val: Sequence[LabelledRow], val_p: np.ndarray, pools: Sequence[np.ndarray],
                      pool_names: Sequence[str] = THRESHOLD_POOLS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for stage in ("input", "output"):
        idx = _stage_idx(val, stage)
        unsafe = np.array([val_p[i] for i in idx if val[i].unsafe])
        safe = np.array([val_p[i] for i in idx if not val[i].unsafe])
        if stage == "input" and pools:
            default = measure.threshold_for_fpr(pools, POOL_FPR)
            rule = f"every held-out benign pool ({', '.join(pool_names)}) flagged at most {POOL_FPR:.0%}"
        else:
            default = measure.threshold_for_fpr([safe], ANSWER_FPR) if len(safe) else 0.5
            rule = f"val safe {stage} items flagged at most {ANSWER_FPR:.0%}"
        strict = min(measure.threshold_for_recall(unsafe, STRICT_RECALL), default) if len(unsafe) else default
        out[stage] = {"default": round(float(default), 6), "strict": round(float(strict), 6), "default_rule": rule,
                      "strict_rule": f"val unsafe {stage} items flagged at least {STRICT_RECALL:.0%}"}
    return out


def _score(art: SafetyArtifact, rows: Sequence[LabelledRow], progress: Callable[[str, int], Callable[[int], None]],
           what: str, chunk: int = 512) -> np.ndarray:
    tick = progress(f"scoring {what}", len(rows))
    out = []
    for start in range(0, len(rows), chunk):
        z, _ = art.logits([judged(r) for r in rows[start:start + chunk]])
        out.append(z)
        tick(min(chunk, len(rows) - start))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def package(out: Path, build: Path, model: Any, tokenizer_json: dict[str, Any], keep: Sequence[int] | None,
            prepared: Prepared, heldout: Sequence[LabelledRow], training: dict[str, Any], manifest: dict[str, Any], *,
            pools: Sequence[str] = THRESHOLD_POOLS, name: str = "guardstream-default",
            log: Callable[[str], None] = print, progress: Bar = no_progress,
            base_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Prune (when `keep` is given) and export a trained `SafetyModel`, then `finish` it into `out`.

    `base_meta`: the artifact a warm start began from (`guardstream finetune classifier`): its calibration and
    thresholds are kept (a review export's val split is too small and too unlike live traffic to set them),
    and so is its category head for the categories the rows do not name.
    """
    import copy

    from evaluators.classifier.export import export_onnx, prune_embeddings, prune_vocabulary

    out.mkdir(parents=True, exist_ok=True)
    build.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model)
    if keep is not None:
        tokenizer_json, _ = prune_vocabulary(tokenizer_json, list(keep))
        prune_embeddings(model, list(keep))
        training = {**training, "vocabulary": {"kept": len(keep), "original": training.get("vocabulary_original")}}
    export_onnx(model, build / "model_fp32.onnx")
    return finish(out, build, build / "model_fp32.onnx", tokenizer_json, prepared, heldout, training, manifest,
                  pools=pools, name=name, log=log, progress=progress, base_meta=base_meta)


def finish(out: Path, build: Path, fp32: Path, tokenizer_json: dict[str, Any], prepared: Prepared,
           heldout: Sequence[LabelledRow], training: dict[str, Any], manifest: dict[str, Any], *,
           pools: Sequence[str] = THRESHOLD_POOLS, name: str = "guardstream-default",
           log: Callable[[str], None] = print, progress: Bar = no_progress,
           base_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """From a float32 export: refit the category head, quantise, write the tokenizer, `finalize`."""
    from tokenizers import Tokenizer

    from evaluators.classifier.encoding import Encoder
    from evaluators.classifier.export import quantize_int8, refit_categories

    encoder = Encoder(Tokenizer.from_str(json.dumps(tokenizer_json)))
    train_rows = [prepared.rows[i] for i in prepared.index("train")]
    training = {**training, "category_head": refit_categories(fp32, encoder, train_rows, CATEGORIES,
                                                              keep_unfitted=base_meta is not None)}
    quantize_int8(fp32, out / MODEL_FILE)
    (out / TOKENIZER_FILE).write_text(json.dumps(tokenizer_json, ensure_ascii=False), encoding="utf-8")
    return finalize(out, build, prepared, heldout, training, manifest, fp32=fp32, pools=pools, name=name, log=log,
                    progress=progress, base_meta=base_meta)


def finalize(out: Path, build: Path, prepared: Prepared, heldout: Sequence[LabelledRow], training: dict[str, Any],
             manifest: dict[str, Any], *, fp32: Path | None = None, pools: Sequence[str] = THRESHOLD_POOLS,
             name: str = "guardstream-default", log: Callable[[str], None] = print,
             progress: Bar = no_progress, base_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    rows = prepared.rows
    provisional = write_meta(out, {"input": [1.0, 0.0], "output": [1.0, 0.0]},
                             {s: {"default": 0.5, "strict": 0.5} for s in ("input", "output")}, training, name)
    art = SafetyArtifact(out, provisional)
    idx = {name: prepared.index(name) for name in ("train", "val", "dev")}
    val = [rows[i] for i in idx["val"]]
    dev = [rows[i] for i in idx["dev"]]
    z_val = _score(art, val, progress, "val")
    z_dev = _score(art, dev, progress, "dev")
    z_held = _score(art, list(heldout), progress, "held-out sources")
    calibration = ({k: [float(v[0]), float(v[1])] for k, v in base_meta["calibration"].items()} if base_meta else
                   {k: [round(v[0], 8), round(v[1], 8)] for k, v in calibrate(val, z_val, 0.5).items()})
    art.calibration = {k: (v[0], v[1]) for k, v in calibration.items()}
    def stages(rows: Sequence[Any]) -> list[str]:
        return [r.stage() for r in rows]

    p_val, p_dev, p_held = (art.calibrated(z, stages(rs)) for z, rs in ((z_val, val), (z_dev, dev), (z_held, heldout)))
    pool_scores = [p_held[[i for i, r in enumerate(heldout) if r.source == pool and r.stage() == "input"]]
                   for pool in pools]
    thresholds = (base_meta["thresholds"] if base_meta else
                  choose_thresholds(val, p_val, [p for p in pool_scores if len(p)], pools))
    meta = write_meta(out, calibration, thresholds, training, name)
    log(f"artifact {meta['version']}: thresholds {json.dumps({s: [t['default'], t['strict']] for s, t in thresholds.items()})}")

    def at(rs: Sequence[LabelledRow], point: str) -> np.ndarray:
        return np.array([thresholds[r.stage()][point] for r in rs])

    metrics: dict[str, Any] = {"version": meta["version"], "thresholds": thresholds, "calibration": calibration}
    for name, rs, p in (("val", val, p_val), ("dev", dev, p_dev), ("heldout", list(heldout), p_held)):
        metrics[name] = {point: {"slices": measure.slices(rs, p, at(rs, point)),
                                 "per_source": measure.per_source(rs, p, at(rs, point))}
                         for point in ("default", "strict")}
    metrics["dev_operating_points"] = {s: measure.operating_table([dev[i] for i in _stage_idx(dev, s)],
                                                                  p_dev[_stage_idx(dev, s)]) for s in ("input", "output")}
    measured = [i for i, r in enumerate(heldout) if r.source not in pools]
    cascade_rows = [heldout[i] for i in measured] + dev
    metrics["cascade_zones"] = measure.cascade_zones(cascade_rows, np.concatenate([p_held[measured], p_dev]))
    if fp32 is not None:
        metrics["int8_vs_fp32"] = _compare_fp32(out, fp32, dev, p_dev, provisional, art, progress)
    metrics["categories_dev"] = _category_agreement(art, dev, p_dev, at(dev, "default"))
    _write_json(out / "metrics.json", metrics)
    _write_json(out / "manifest.json", {**manifest, "splits": _split_counts(prepared)})
    _export_splits(build / "splits", prepared, idx, {"val": p_val, "dev": p_dev})
    _export_rows(build / "heldout_scored.jsonl", heldout, p_held)
    return metrics


def _compare_fp32(out: Path, fp32: Path, dev: Sequence[LabelledRow], p_dev: np.ndarray, meta: dict[str, Any],
                  art: SafetyArtifact, progress: Callable[[str, int], Callable[[int], None]]) -> dict[str, Any]:
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(fp32, Path(tmp) / MODEL_FILE)
        shutil.copyfile(out / TOKENIZER_FILE, Path(tmp) / TOKENIZER_FILE)
        ref = SafetyArtifact(Path(tmp), meta)
        ref.calibration = art.calibration
        p_ref = ref.calibrated(_score(ref, dev, progress, "dev (float32)"), [r.stage() for r in dev])
    y = [r.unsafe for r in dev]
    from evaluators.evaluation.metrics import average_precision

    return {"max_abs_score_diff": float(np.abs(p_ref - p_dev).max()), "mean_abs_score_diff": float(np.abs(p_ref - p_dev).mean()),
            "auprc_int8": average_precision(y, p_dev.tolist()), "auprc_fp32": average_precision(y, p_ref.tolist()),
            "size_int8_bytes": (out / MODEL_FILE).stat().st_size, "size_fp32_bytes": fp32.stat().st_size}


def _category_agreement(art: SafetyArtifact, rows: Sequence[LabelledRow], p: np.ndarray, t: np.ndarray) -> dict[str, Any]:
    """On caught unsafe rows with known categories: share whose top named category is a true one."""
    caught = [i for i, r in enumerate(rows) if r.unsafe and p[i] >= t[i] and any(c in CATEGORIES for c in r.categories)]
    if not caught:
        return {"n": 0}
    named = art.score([judged(rows[i]) for i in caught])
    hits = sum(1 for i, s in zip(caught, named) if s.categories[0] in rows[i].categories)
    return {"n": len(caught), "top_category_correct": hits / len(caught)}


def _split_counts(prepared: Prepared) -> dict[str, Any]:
    out: dict[str, dict[str, int]] = {}
    for row, split in zip(prepared.rows, prepared.splits):
        cell = out.setdefault(row.source or "(none)", {})
        key = f"{split}_{'unsafe' if row.unsafe else 'safe'}"
        cell[key] = cell.get(key, 0) + 1
    return dict(sorted(out.items()))


def _export_rows(path: Path, rows: Sequence[LabelledRow], scores: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row, score in zip(rows, scores):
            record: dict[str, Any] = {"prompt": row.prompt, "label": "unsafe" if row.unsafe else "safe"}
            if row.completion:
                record["completion"] = row.completion
            record.update({"source": row.source, "categories": list(row.categories), "score": round(float(score), 6)})
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def _export_splits(folder: Path, prepared: Prepared, idx: dict[str, np.ndarray], scores: dict[str, np.ndarray]) -> None:
    for name, ids in idx.items():
        rows = [prepared.rows[i] for i in ids]
        _export_rows(folder / f"{name}.jsonl", rows, scores.get(name, np.full(len(rows), np.nan)))
