"""Rebuild a trainable torch `SafetyModel` from a shipped encoder artifact (training side).

The artifact stores int8 weights in ONNX; the frozen lower layers are the backbone's own
(`backbone.load_bert`, bit for bit what training saw). The fine-tuned top layers are read back
from the ONNX graph: each `MatMulNBits` node's blocks (uint8, zero point 128, one scale per block
of 32) are dequantised into the matching `nn.Linear`; biases, LayerNorms and both heads are float
initialisers named after their torch parameters. What comes back scores like the ONNX model
(int8 rounding aside) and can be fine-tuned further with `encoder_train.fit(..., init=model)`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from evaluators.classifier.encoder_model import Heads, SafetyModel
from evaluators.classifier.runtime import MODEL_FILE, read_meta, verify

if TYPE_CHECKING:  # transformers is imported where a backbone is built (backbone.load_bert), not here
    from transformers import BertModel

_MATMUL = re.compile(r"^/(?:bert/encoder/)?layer\.(\d+)/(.+)/MatMul_Q\d+$")


def _dequantize(inits: dict[str, Any], node: Any) -> np.ndarray:
    """[N, K] float weights of a MatMulNBits node (symmetric, no zero-point input)."""
    import onnx
    from onnx import numpy_helper

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    q = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)  # [N, blocks, block_size]
    scale = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32).reshape(q.shape[0], q.shape[1], 1)
    zero = float(2 ** (int(attrs["bits"]) - 1))
    return ((q - zero) * scale).reshape(q.shape[0], -1)[:, : int(attrs["K"])]


def kept_ids(artifact_tokenizer: dict[str, Any], base_tokenizer: dict[str, Any]) -> list[int]:
    """The backbone ids a pruned artifact's vocabulary kept (`export.prune_vocabulary` keeps pieces in id order)."""
    index = {piece[0]: i for i, piece in enumerate(base_tokenizer["model"]["vocab"])}
    pieces = [piece[0] for piece in artifact_tokenizer["model"]["vocab"]]
    missing = [p for p in pieces if p not in index]
    if missing:
        raise ValueError(f"the artifact's vocabulary is not the backbone's: {len(missing)} pieces unknown "
                         f"(first {missing[0]!r})")
    return [index[p] for p in pieces]


def load_for_training(path: str | Path, bert: BertModel | None = None,
                      base_tokenizer: dict[str, Any] | None = None) -> tuple[SafetyModel, int]:
    """(model, trainable_layers) from an artifact directory.

    `bert` defaults to the shipped backbone (and `base_tokenizer` to its tokenizer). An artifact whose
    vocabulary was pruned gets `bert`'s word embeddings sliced to the kept rows (`bert` is changed in place),
    found through `base_tokenizer`.
    """
    import onnx
    from onnx import numpy_helper

    from evaluators.classifier.export import prune_embeddings
    from evaluators.classifier.runtime import TOKENIZER_FILE

    root = Path(path)
    meta = read_meta(root)
    verify(root, meta)
    trainable = int(meta.get("training", {}).get("trainable_layers", 2))
    if bert is None:
        from evaluators.classifier import backbone

        bert = backbone.load_bert()
        if base_tokenizer is None:
            base_tokenizer = json.loads(backbone.tokenizer_file().read_text(encoding="utf-8"))
    artifact_tokenizer = json.loads((root / TOKENIZER_FILE).read_text(encoding="utf-8"))
    if len(artifact_tokenizer["model"]["vocab"]) != int(bert.embeddings.word_embeddings.weight.shape[0]):
        if base_tokenizer is None:
            raise ValueError(f"{root}: its vocabulary was pruned; the backbone's tokenizer is needed to map it")
        prune_embeddings(SafetyModel(bert, Heads(bert.config.hidden_size, 1)),
                         kept_ids(artifact_tokenizer, base_tokenizer))
    graph = onnx.load(str(root / MODEL_FILE)).graph
    inits = {i.name: i for i in graph.initializer}
    n_layers = len(bert.encoder.layer)
    first = n_layers - trainable
    heads = Heads(bert.config.hidden_size, len(meta["categories"]))
    state = {**{f"bert.{k}": v for k, v in bert.state_dict().items()}, **{f"heads.{k}": v for k, v in heads.state_dict().items()}}
    loaded = 0
    for node in graph.node:
        m = _MATMUL.match(node.name) if node.op_type == "MatMulNBits" else None
        if m and int(m.group(1)) >= first:
            key = f"bert.encoder.layer.{m.group(1)}.{m.group(2).replace('/', '.')}.weight"
            state[key] = torch.from_numpy(_dequantize(inits, node).copy())
            loaded += 1
    for name, init in inits.items():
        layer = re.match(r"^bert\.encoder\.layer\.(\d+)\.", name)
        if (layer and int(layer.group(1)) >= first) or name.startswith("heads."):
            value = numpy_helper.to_array(init).astype(np.float32)
            if name.endswith("_Transposed"):  # a Gemm the quantiser rewrote as MatMul + Add
                name, value = name[: -len("_Transposed")], value.T
            if name in state:
                state[name] = torch.from_numpy(value.copy())
    if loaded != 6 * trainable:
        raise ValueError(f"{root / MODEL_FILE}: found {loaded} quantised weights for the top {trainable} layers, "
                         f"expected {6 * trainable}")
    model = SafetyModel(bert, heads)
    model.load_state_dict(state)
    return model.eval(), trainable


def describe(path: str | Path) -> dict[str, Any]:
    meta = json.loads((Path(path) / "artifact.json").read_text(encoding="utf-8"))
    return {"version": meta["version"], "trainable_layers": meta.get("training", {}).get("trainable_layers")}
