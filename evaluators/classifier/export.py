"""Export a trained `SafetyModel` for torch-free serving: pruned vocabulary, ONNX, int8 (training side).

1. `prune_vocabulary`: keep the SentencePiece pieces a corpus uses plus every single-character
   piece (unseen text then splits into smaller pieces rather than `<unk>`), remap the ids and
   slice the embedding matrix; the tokenizer file and the model shrink together.
2. `export_onnx`: `torch.onnx.export` of the whole stack (ids, mask -> unsafe logit, category
   logits), dynamic batch and sequence axes.
3. `quantize_int8`: int8 *weights only*: MatMuls become ONNX Runtime `MatMulNBits` (8 bits, blocks of 32,
   symmetric) and the embedding Gather an int8 table. Activations stay float, so an item's score does not depend
   on what else is in its batch (dynamic activation quantisation, tried first, scaled each batch as a whole and
   moved logits by up to 0.76 with the batch; it was also 10x further from float32).
4. `refit_categories`: the category head refitted on the model's own pooled features (balanced one-vs-rest
   logistic regressions), so the 14 hazards and injection are named evenly, not by their row counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # numpy and the training modules are imported inside the functions that use them
    import numpy as np

    from evaluators.classifier.encoder_model import SafetyModel
    from evaluators.classifier.encoding import Encoder, Judged
    from evaluators.evaluation.datasets import LabelledRow


def kept_pieces(tokenizer_json: dict[str, Any], corpus: Iterable[str], min_count: int = 1, batch: int = 4096) -> list[int]:
    """Old ids to keep: specials, single characters (with or without the word-start mark), corpus pieces."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.dumps(tokenizer_json))
    vocab = tokenizer_json["model"]["vocab"]
    counts: dict[int, int] = {}
    texts = list(corpus)
    for start in range(0, len(texts), batch):
        for enc in tok.encode_batch(texts[start:start + batch], add_special_tokens=False):
            for i in enc.ids:
                counts[i] = counts.get(i, 0) + 1
    specials = {t["id"] for t in tokenizer_json.get("added_tokens", [])}
    keep = []
    for i, (piece, _score) in enumerate(vocab):
        bare = piece[1:] if piece.startswith("\u2581") else piece
        if i in specials or len(bare) <= 1 or counts.get(i, 0) >= min_count:
            keep.append(i)
    return keep


def prune_vocabulary(tokenizer_json: dict[str, Any], keep: list[int]) -> tuple[dict[str, Any], dict[int, int]]:
    """A tokenizer.json with only `keep` (old ids, ascending) and the old -> new id map."""
    keep = sorted(keep)
    remap = {old: new for new, old in enumerate(keep)}
    out = json.loads(json.dumps(tokenizer_json))
    out["model"]["vocab"] = [tokenizer_json["model"]["vocab"][i] for i in keep]
    out["model"]["unk_id"] = remap[tokenizer_json["model"]["unk_id"]]
    for token in out.get("added_tokens", []):
        token["id"] = remap[token["id"]]
    post = out.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [remap[i] for i in special["ids"]]
    return out, remap


def prune_embeddings(model: SafetyModel, keep: list[int]) -> None:
    """Slice the word embeddings of `model.bert` to the kept rows, in place."""
    emb = model.bert.embeddings.word_embeddings
    weight = emb.weight.data[torch.tensor(sorted(keep))].clone()
    new = torch.nn.Embedding(weight.shape[0], weight.shape[1], padding_idx=None)
    new.weight.data = weight
    model.bert.embeddings.word_embeddings = new
    model.bert.config.vocab_size = weight.shape[0]


def export_onnx(model: SafetyModel, path: Path, opset: int = 17) -> None:
    model.eval()
    top = int(model.bert.embeddings.word_embeddings.weight.shape[0]) - 1
    ids = torch.tensor([[0, min(5, top), min(6, top), 2], [0, min(7, top), 2, 1]], dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.long)
    torch.onnx.export(model, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["unsafe_logit", "category_logits"], opset_version=opset,
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                    "attention_mask": {0: "batch", 1: "sequence"},
                                    "unsafe_logit": {0: "batch"}, "category_logits": {0: "batch"}},
                      dynamo=False)


def quantize_int8(src: Path, dst: Path) -> None:
    import logging
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=8, block_size=32, is_symmetric=True, accuracy_level=4,
                                     op_types_to_quantize=("MatMul",))
    quantizer.process()
    with tempfile.TemporaryDirectory() as tmp:
        mid = Path(tmp) / "matmul8.onnx"
        quantizer.model.save_model_to_file(str(mid), use_external_data_format=False)
        quantize_dynamic(str(mid), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"])


POOLED = "/Div_output_0"  # the mean-pooled sentence vector, the heads' input, as torch.onnx names it


def pooled_features(onnx_path: Path, encoder: Encoder, items: Sequence[Judged], batch: int = 64) -> np.ndarray:
    """Mean-pooled vectors of `items` from an exported float32 model (the graph's pooled value as an output)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    model.graph.output.append(onnx.helper.make_tensor_value_info(POOLED, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = encoder.ids(items)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    chunks = []
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        input_ids, mask = encoder.pad([ids[i] for i in chunk])
        pooled = session.run([POOLED], {"input_ids": input_ids, "attention_mask": mask})[0]
        chunks.append((chunk, pooled))
    out = np.zeros((len(ids), chunks[0][1].shape[1] if chunks else 0), dtype=np.float32)
    for chunk, pooled in chunks:
        out[chunk] = pooled
    return out


def refit_categories(onnx_path: Path, encoder: Encoder, rows: Sequence[LabelledRow], categories: Sequence[str], seed: int = 0,
                     keep_unfitted: bool = False) -> dict[str, object]:
    """Refit the category head of a float32 export in place on unsafe rows with known categories.

    A category without both positive and negative rows is switched off (weight 0, bias -10), or with
    `keep_unfitted` (fine-tuning a trained model on rows that name few categories) keeps the head it had.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from sklearn.linear_model import LogisticRegression

    from evaluators.classifier.encoder_train import judged

    model = onnx.load(str(onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    weights = numpy_helper.to_array(inits["heads.category.weight"]).astype(np.float32).copy()
    bias = numpy_helper.to_array(inits["heads.category.bias"]).astype(np.float32).copy()
    known = [r for r in rows if r.unsafe and any(c in categories for c in r.categories)]
    x = pooled_features(onnx_path, encoder, [judged(r) for r in known]) if known else None
    counts = {}
    for k, name in enumerate(categories):
        y = np.array([name in r.categories for r in known])
        counts[name] = int(y.sum())
        if x is not None and 0 < y.sum() < len(y):
            clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=seed).fit(x, y)
            weights[k], bias[k] = clf.coef_[0], clf.intercept_[0]
        elif not keep_unfitted:
            weights[k], bias[k] = 0.0, -10.0
    for init in model.graph.initializer:
        if init.name == "heads.category.weight":
            init.CopyFrom(numpy_helper.from_array(weights, init.name))
        elif init.name == "heads.category.bias":
            init.CopyFrom(numpy_helper.from_array(bias, init.name))
    onnx.save(model, str(onnx_path))
    return {"rows": len(known), "per_category": counts, "method": "balanced one-vs-rest logistic regression, C=1"}
