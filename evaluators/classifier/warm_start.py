"""Rebuild a trainable torch `SafetyModel` from a shipped encoder artifact (training side).

The artifact stores int8 weights in ONNX; the frozen lower layers are the backbone's own
(`backbone.load_bert`, bit for bit what training saw). The fine-tuned top layers and both heads
are read back from the ONNX graph: each quantised MatMul's int8 weight, scale and zero point are
dequantised and transposed into the matching `nn.Linear`; biases and LayerNorms are float
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

_MATMUL = re.compile(r"^/(?:bert/encoder/)?layer\.(\d+)/(.+)/MatMul_quant$")
_HEAD = re.compile(r"^/heads/(unsafe|category)/Gemm_MatMul_quant$")


def _dequantize(inits: dict[str, Any], weight_input: str) -> np.ndarray:
    from onnx import numpy_helper

    base = weight_input[: -len("_quantized")]
    q = numpy_helper.to_array(inits[weight_input]).astype(np.float32)
    scale = numpy_helper.to_array(inits[base + "_scale"]).astype(np.float32)
    zero = numpy_helper.to_array(inits[base + "_zero_point"]).astype(np.float32)
    return (q - zero) * scale


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
        if node.op_type != "MatMulInteger":
            continue
        m, h = _MATMUL.match(node.name), _HEAD.match(node.name)
        if m and int(m.group(1)) >= first:
            key = f"bert.encoder.layer.{m.group(1)}.{m.group(2).replace('/', '.')}.weight"
        elif h:
            key = f"heads.{h.group(1)}.weight"
        else:
            continue
        state[key] = torch.from_numpy(_dequantize(inits, node.input[1]).T.copy())
        loaded += 1
    for name, init in inits.items():
        layer = re.match(r"^bert\.encoder\.layer\.(\d+)\.", name)
        if (layer and int(layer.group(1)) >= first) or name.startswith("heads."):
            if name in state:
                state[name] = torch.from_numpy(numpy_helper.to_array(init).astype(np.float32).copy())
    expected = 6 * trainable + 2
    if loaded != expected:
        raise ValueError(f"{root / MODEL_FILE}: found {loaded} quantised weights for the top {trainable} layers and "
                         f"heads, expected {expected}")
    model = SafetyModel(bert, heads)
    model.load_state_dict(state)
    return model.eval(), trainable


def describe(path: str | Path) -> dict[str, Any]:
    meta = json.loads((Path(path) / "artifact.json").read_text(encoding="utf-8"))
    return {"version": meta["version"], "trainable_layers": meta.get("training", {}).get("trainable_layers")}
