"""A disk cache of frozen lower-layer states, keyed by token ids (training only).

The frozen layers see the same ids every epoch and every experiment; computing them once is
what makes fine-tuning the top layers affordable on a CPU. Keys are digests of the id
sequence, so a changed data set only computes its new texts. Several depths can be cached in
one pass (`depths`); values are float16.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def key_of(ids: Sequence[int]) -> str:
    return hashlib.blake2b(np.asarray(ids, dtype=np.int32).tobytes(), digest_size=12).hexdigest()


class StateCache:
    """`get(ids_list, depth)` -> list of [len, hidden] float16 arrays; computes what is missing."""

    def __init__(self, folder: Path, depths: Sequence[int], tag: str) -> None:
        self.folder = Path(folder)
        self.depths = tuple(sorted(depths))
        self.tag = tag
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store: dict[int, dict[str, np.ndarray]] = {d: {} for d in self.depths}
        for d in self.depths:
            for shard in sorted(self.folder.glob(f"{tag}-d{d}-*.npz")):
                with np.load(shard) as z:
                    keys = [str(k) for k in z["keys"]]
                    offsets, flat = z["offsets"], z["flat"]
                    for i, k in enumerate(keys):
                        self.store[d][k] = flat[offsets[i]:offsets[i + 1]]

    def missing(self, ids_list: Sequence[Sequence[int]]) -> list[int]:
        last = self.store[self.depths[-1]]
        seen: set[str] = set()
        out = []
        for i, ids in enumerate(ids_list):
            k = key_of(ids)
            if k not in last and k not in seen:
                seen.add(k)
                out.append(i)
        return out

    def fill(self, ids_list: Sequence[Sequence[int]],
             compute: Callable[[list[Sequence[int]]], dict[int, list[np.ndarray]]], shard_size: int = 2000) -> int:
        """Compute the missing texts (`compute(ids) -> {depth: states}`) in shards saved as they finish."""
        todo = [ids_list[i] for i in self.missing(ids_list)]
        existing = len(list(self.folder.glob(f"{self.tag}-d{self.depths[-1]}-*.npz")))
        for n, start in enumerate(range(0, len(todo), shard_size)):
            chunk = todo[start:start + shard_size]
            states = compute(chunk)
            keys = [key_of(ids) for ids in chunk]
            for d in self.depths:
                offsets = np.cumsum([0] + [s.shape[0] for s in states[d]])
                np.savez(self.folder / f"{self.tag}-d{d}-{existing + n:04d}.npz", keys=np.array(keys),
                         offsets=offsets, flat=np.concatenate(states[d]).astype(np.float16))
                for k, s in zip(keys, states[d]):
                    self.store[d][k] = s.astype(np.float16)
        return len(todo)

    def get(self, ids_list: Sequence[Sequence[int]], depth: int) -> list[np.ndarray]:
        return [self.store[depth][key_of(ids)] for ids in ids_list]
