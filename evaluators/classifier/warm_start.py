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
from typing import Any

import numpy as np
import torch

from evaluators.classifier.encoder_model import Heads, SafetyModel
from evaluators.classifier.runtime import MODEL_FILE, read_meta, verify

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


def load_for_training(path: str | Path, bert: torch.nn.Module | None = None) -> tuple[SafetyModel, int]:
    """(model, trainable_layers) from an artifact directory; `bert` defaults to the shipped backbone."""
    import onnx
    from onnx import numpy_helper

    root = Path(path)
    meta = read_meta(root)
    verify(root, meta)
    trainable = int(meta.get("training", {}).get("trainable_layers", 2))
    if bert is None:
        from evaluators.classifier import backbone

        bert = backbone.load_bert()
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
