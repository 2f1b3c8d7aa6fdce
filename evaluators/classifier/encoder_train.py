"""Fine-tune the safety encoder: the training API under `guardstream train` and the default build.

    prepared = prepare(rows)                          # dedupe, near-duplicate groups, grouped split
    result = fit(prepared, backbone, config, cache)   # top layers + heads, calibration, thresholds

`fit` takes an optional `init` (a `SafetyModel` to start from, e.g. the shipped model for
further fine-tuning on reviewers' labels). Everything is seeded: the same rows, backbone and
config give the same weights. The frozen lower layers run once per text (`StateCache`); the
top `trainable_layers` layers and both heads train with AdamW on class- and source-balanced
weights; the unsafe score is Platt-calibrated per stage on the val split.
"""

from __future__ import annotations

import copy
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from evaluators.classifier import splits
from evaluators.classifier.encoder_model import Heads, SafetyModel, TopModel, lower_states, pad_states
from evaluators.classifier.encoding import Encoder, Judged
from evaluators.classifier.fit import platt
from evaluators.classifier.progress import Bar, no_progress
from evaluators.classifier.splits import group_split
from evaluators.classifier.state_cache import StateCache
from evaluators.classifier.taxonomy import CATEGORIES
from evaluators.evaluation.datasets import LabelledRow

if TYPE_CHECKING:  # transformers is imported where a backbone is built (backbone.load_bert), not here
    from transformers import BertModel

_SPACE = re.compile(r"\s+")


@dataclass(slots=True)
class EncoderConfig:
    seed: int = 0
    trainable_layers: int = 2
    epochs: int = 3
    lr: float = 5e-5
    head_lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.01
    source_balance: float = 0.5
    category_weight: float = 0.5
    val_fraction: float = 0.15
    dev_fraction: float = 0.15
    near_dup: float = 0.8


@dataclass(slots=True)
class Prepared:
    rows: list[LabelledRow]
    splits: list[str]
    dedupe: dict[str, int]
    groups: int

    def index(self, name: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.splits) if s == name], dtype=int)


@dataclass(slots=True)
class Fitted:
    model: SafetyModel
    calibration: dict[str, tuple[float, float]]  # stage -> (a, b): P = sigmoid(a * logit + b)
    history: list[dict[str, float]] = field(default_factory=list)


def _key(row: LabelledRow) -> str:
    norm = _SPACE.sub(" ", row.prompt.strip().lower())
    if row.completion:
        return norm[:300] + "\x00" + _SPACE.sub(" ", row.completion.strip().lower())
    return norm


def dedupe(rows: Sequence[LabelledRow]) -> tuple[list[LabelledRow], dict[str, int]]:
    """Drop exact duplicates (same normalised prompt, or prompt + answer); drop texts labelled both ways."""
    return splits.dedupe(rows, key=_key)


def near_duplicate_groups(rows: Sequence[LabelledRow], threshold: float, block: int = 1024) -> list[int]:
    """Connected components of (same `group`) or (character 3-5-gram cosine >= threshold on the judged text)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from evaluators.classifier.splits import _UnionFind

    uf = _UnionFind(len(rows))
    first: dict[str, int] = {}
    for i, row in enumerate(rows):
        if row.group is not None:
            if row.group in first:
                uf.union(first[row.group], i)
            else:
                first[row.group] = i
    if threshold <= 1.0 and len(rows) > 1:
        # character 3-5-grams that occur in at most 2% of the texts: shared boilerplate n-grams ("the ", "how")
        # would make every pair similar and the product dense; near-duplicates share their rare n-grams (in a
        # small set, such as a review export, "rare" is at most two texts)
        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), max_df=max(0.02, 2.0 / len(rows)),
                              sublinear_tf=True, dtype=np.float32)
        try:
            x = vec.fit_transform([r.text[:2000] for r in rows]).tocsr()
        except ValueError:  # no n-gram is rare: no text has a near-duplicate by this measure
            return [uf.find(i) for i in range(len(rows))]
        xt = x.T.tocsc()
        for start in range(0, len(rows), block):
            sims = (x[start:start + block] @ xt).tocsr()
            sims.data[sims.data < threshold] = 0.0
            sims.eliminate_zeros()
            coo = sims.tocoo()
            for i, j in zip(coo.row.tolist(), coo.col.tolist()):
                if start + i < j:
                    uf.union(start + i, j)
    return [uf.find(i) for i in range(len(rows))]


def prepare(rows: Sequence[LabelledRow], config: EncoderConfig) -> Prepared:
    kept, stats = dedupe(rows)
    if sum(r.unsafe for r in kept) < 4 or sum(not r.unsafe for r in kept) < 4:
        raise ValueError("need at least 4 safe and 4 unsafe rows to train")
    groups = near_duplicate_groups(kept, config.near_dup)
    splits = group_split(kept, groups, {"dev": config.dev_fraction, "val": config.val_fraction}, config.seed)
    return Prepared(kept, splits, stats, len(set(groups)))


def judged(row: LabelledRow) -> Judged:
    return Judged(row.prompt, row.completion if row.completion else None)


def sample_weights(rows: Sequence[LabelledRow], source_balance: float) -> np.ndarray:
    """Within each (stage, label) a source of n rows weighs n**source_balance in total; each
    (stage, label) cell weighs in proportion to the stage's rows, safe and unsafe equally."""
    cell = Counter((r.stage(), r.unsafe, r.source or "") for r in rows)
    w = np.array([cell[(r.stage(), r.unsafe, r.source or "")] ** (source_balance - 1.0) for r in rows])
    stage_rows = Counter(r.stage() for r in rows)
    for (stage, unsafe) in {(r.stage(), r.unsafe) for r in rows}:
        idx = [i for i, r in enumerate(rows) if r.stage() == stage and r.unsafe == unsafe]
        w[idx] *= (stage_rows[stage] / 2) / w[idx].sum()
    weights: np.ndarray = w * (len(rows) / w.sum())
    return weights


def category_targets(rows: Sequence[LabelledRow]) -> tuple[np.ndarray, np.ndarray]:
    """(multi-hot targets, mask): a row trains the category head when it is unsafe with a known category."""
    y = np.zeros((len(rows), len(CATEGORIES)), dtype=np.float32)
    known = np.zeros(len(rows), dtype=np.float32)
    for i, r in enumerate(rows):
        codes = [CATEGORIES.index(c) for c in r.categories if c in CATEGORIES]
        if r.unsafe and codes:
            y[i, codes] = 1.0
            known[i] = 1.0
    return y, known


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches in a seeded random order (little padding, no fixed order)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def split_model(bert: BertModel, trainable_layers: int, heads: Heads) -> TopModel:
    return TopModel(list(bert.encoder.layer[len(bert.encoder.layer) - trainable_layers:]), heads)


def _backbone(bert: BertModel | None) -> BertModel:
    if bert is None:
        raise ValueError("texts missing from the state cache need the backbone (bert is None)")
    return bert


def compute_states(bert: BertModel | None, encoder: Encoder, rows: Sequence[LabelledRow], depth: int,
                   cache: StateCache | None, progress: Bar = no_progress) -> list[np.ndarray]:
    """Frozen-layer states of `rows` at `depth`; `bert` may be None when `cache` already holds every text."""
    ids = encoder.ids([judged(r) for r in rows])
    if cache is None:
        return lower_states(_backbone(bert), ids, (depth,), encoder.pad_id,
                            on_batch=progress("frozen layers", len(ids)))[depth]
    todo = cache.missing(ids)
    tick = progress("frozen layers", len(todo))
    cache.fill(ids, lambda chunk: lower_states(_backbone(bert), chunk, cache.depths, encoder.pad_id, on_batch=tick))
    return cache.get(ids, depth)


@torch.inference_mode()
def top_logits(top: TopModel, states: Sequence[np.ndarray], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    top.eval()
    order = sorted(range(len(states)), key=lambda i: states[i].shape[0])
    z = np.zeros(len(states), dtype=np.float32)
    c = np.zeros((len(states), len(CATEGORIES)), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        hidden, mask = pad_states([states[i] for i in chunk])
        zu, zc = top(hidden, mask)
        z[chunk] = zu.numpy()
        c[chunk] = zc.numpy()
    return z, c


def fit(prepared: Prepared, bert: BertModel, encoder: Encoder, config: EncoderConfig,
        cache: StateCache | None = None, init: SafetyModel | None = None, progress: Bar = no_progress,
        log: Callable[[str], None] = print) -> Fitted:
    """Train the top layers and heads on the train split; calibrate per stage on val."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    base = copy.deepcopy(init.bert) if init is not None else copy.deepcopy(bert)
    heads = copy.deepcopy(init.heads) if init is not None else Heads(base.config.hidden_size, len(CATEGORIES))
    n_layers = len(base.encoder.layer)
    depth = n_layers - config.trainable_layers
    rows = prepared.rows
    states = compute_states(base, encoder, rows, depth, cache, progress)
    top = split_model(base, config.trainable_layers, heads)
    for p in base.parameters():
        p.requires_grad_(False)
    for p in top.parameters():
        p.requires_grad_(True)
    train_idx, val_idx = prepared.index("train"), prepared.index("val")
    train_rows = [rows[i] for i in train_idx]
    y = torch.tensor([r.unsafe for r in train_rows], dtype=torch.float32)
    w = torch.tensor(sample_weights(train_rows, config.source_balance), dtype=torch.float32)
    cy, ck = (torch.from_numpy(a) for a in category_targets(train_rows))
    optimizer = torch.optim.AdamW([
        {"params": [p for p in top.layers.parameters()], "lr": config.lr},
        {"params": [p for p in top.heads.parameters()], "lr": config.head_lr},
    ], weight_decay=config.weight_decay)
    batches_per_epoch = (len(train_idx) + config.batch_size - 1) // config.batch_size
    total = batches_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, total // 10)) * max(0.0, (total - step) / total))
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    history = []
    tick = progress("training", total)
    for epoch in range(config.epochs):
        top.train()
        running = 0.0
        for batch in _batches([states[i].shape[0] for i in train_idx], config.batch_size, rng):
            hidden, mask = pad_states([states[train_idx[i]] for i in batch])
            zu, zc = top(hidden, mask)
            loss = (bce(zu, y[batch]) * w[batch]).sum() / w[batch].sum()
            known = ck[batch]
            if known.sum() > 0:
                cat_loss = (bce(zc, cy[batch]).mean(1) * known).sum() / known.sum()
                loss = loss + config.category_weight * cat_loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(top.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            running += loss.item()
            tick(1)
        val_z, _ = top_logits(top, [states[i] for i in val_idx])
        val_y = np.array([rows[i].unsafe for i in val_idx])
        acc = float(((val_z > 0) == val_y).mean()) if len(val_y) else float("nan")
        history.append({"epoch": epoch + 1, "train_loss": running / batches_per_epoch, "val_accuracy": acc})
        log(f"epoch {epoch + 1}: train loss {running / batches_per_epoch:.4f}, val accuracy {acc:.4f}")
    top.eval()
    val_rows = [rows[i] for i in val_idx]
    val_z, _ = top_logits(top, [states[i] for i in val_idx])
    calibration = calibrate(val_rows, val_z, config.source_balance)
    return Fitted(SafetyModel(base, top.heads).eval(), calibration, history)


def calibrate(rows: Sequence[LabelledRow], z: np.ndarray, source_balance: float) -> dict[str, tuple[float, float]]:
    """Platt scaling per stage (balanced classes, tempered sources); a stage without both classes
    keeps the identity."""
    out: dict[str, tuple[float, float]] = {}
    w = sample_weights(rows, source_balance) if len(rows) else np.zeros(0)
    for stage in ("input", "output"):
        idx = [i for i, r in enumerate(rows) if r.stage() == stage]
        y = np.array([rows[i].unsafe for i in idx])
        if len(idx) < 4 or y.all() or not y.any():
            out[stage] = (1.0, 0.0)
            continue
        a, b = platt(z[idx], y, w[idx])
        out[stage] = (float(a), float(b))
    return out


def describe(config: EncoderConfig) -> dict[str, Any]:
    return {k: getattr(config, k) for k in config.__slots__}
