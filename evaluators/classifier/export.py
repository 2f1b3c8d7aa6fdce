"""Export a trained `SafetyModel` for torch-free serving: pruned vocabulary, ONNX, int8 (training side).

1. `prune_vocabulary`: keep the SentencePiece pieces a corpus uses plus every single-character
   piece (unseen text then splits into smaller pieces rather than `<unk>`), remap the ids and
   slice the embedding matrix; the tokenizer file and the model shrink together.
2. `export_onnx`: `torch.onnx.export` of the whole stack (ids, mask -> unsafe logit, category
   logits), dynamic batch and sequence axes.
3. `quantize_int8`: ONNX Runtime dynamic quantisation (int8 weights for MatMul and Gather).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import torch


def kept_pieces(tokenizer_json: dict, corpus: Iterable[str], min_count: int = 1, batch: int = 4096) -> list[int]:
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


def prune_vocabulary(tokenizer_json: dict, keep: list[int]) -> tuple[dict, dict[int, int]]:
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


def prune_embeddings(model: torch.nn.Module, keep: list[int]) -> None:
    """Slice the word embeddings of `model.bert` to the kept rows, in place."""
    emb = model.bert.embeddings.word_embeddings
    weight = emb.weight.data[torch.tensor(sorted(keep))].clone()
    new = torch.nn.Embedding(weight.shape[0], weight.shape[1], padding_idx=None)
    new.weight.data = weight
    model.bert.embeddings.word_embeddings = new
    model.bert.config.vocab_size = weight.shape[0]


def export_onnx(model: torch.nn.Module, path: Path, opset: int = 17) -> None:
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
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"],
                     per_channel=False, extra_options={"EnableSubgraph": False})
