"""The encoder training pipeline end to end on a tiny BERT built offline: fit -> prune -> ONNX int8 -> load -> judge.

The tiny model starts from random weights, so what it gets right it learned here: prompts and
answers (a compliant answer is unsafe, a refusal safe) on requests it never saw verbatim.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("sklearn")

from evaluators import registry  # noqa: E402
from evaluators.base import EvalItem, Turn  # noqa: E402
from evaluators.classifier.encoder_train import EncoderConfig, describe, fit, prepare  # noqa: E402
from evaluators.classifier.encoding import Encoder  # noqa: E402
from evaluators.classifier.finalize import package  # noqa: E402
from evaluators.classifier.runtime import load  # noqa: E402
from evaluators.evaluation.datasets import row_from_mapping  # noqa: E402
from tests.classifier_data import BENIGN_ACTS, HARMFUL_ACTS, HELD_OUT, SUFFIXES, VERBS  # noqa: E402

#: the module's artifact (train, export, int8, finalize) is built in the first test's setup: about 10 s on a quiet
#: machine, minutes on a loaded one
pytestmark = pytest.mark.timeout(360)

REFUSAL = "I can't help with that, it could hurt people."
COMPLY = "Sure, here is how to {act}: step 1"
HELP = "Happy to help! To {act}, start by"


def _rows(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    harmful, benign = HARMFUL_ACTS[:-HELD_OUT], BENIGN_ACTS[:-HELD_OUT]
    rows = []
    for _ in range(n):
        unsafe = rng.random() < 0.45
        act = rng.choice(harmful if unsafe else benign)
        prompt = f"{rng.choice(VERBS)} {act}{rng.choice(SUFFIXES)}"
        roll = rng.random()
        if roll < 0.5:
            rows.append({"prompt": prompt, "label": "unsafe" if unsafe else "safe",
                         "source": "harm" if unsafe else "benign", "categories": ["S1"] if unsafe else []})
        elif unsafe and roll < 0.75:
            rows.append({"prompt": prompt, "completion": COMPLY.format(act=act), "label": "unsafe",
                         "source": "comply", "categories": ["S2"]})
        else:
            answer = REFUSAL if unsafe else HELP.format(act=act)
            rows.append({"prompt": prompt, "completion": answer, "label": "safe", "source": "answers"})
    return rows


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {w.strip("?.,!:").lower() for r in _rows(0, 400) for t in (r["prompt"], r.get("completion", ""))
             for w in t.split()} | {"query", "passage", "sure", "happy"}
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *sorted(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    from tokenizers import normalizers

    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("enc")
    tok = _tokenizer()
    bert = BertModel(BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=160),
                     add_pooling_layer=False).eval()
    rows = [row_from_mapping(r) for r in _rows(1, 500)]
    heldout = [row_from_mapping({**r, "source": "pool"}) for r in _rows(2, 120) if r["label"] == "safe"
               and "completion" not in r]
    config = EncoderConfig(epochs=20, trainable_layers=1, lr=3e-3, head_lr=3e-2, batch_size=16, category_weight=0.2)
    prepared = prepare(rows, config)
    fitted = fit(prepared, bert, Encoder(tok), config, log=lambda _m: None)
    assert fitted.history[-1]["train_loss"] < fitted.history[0]["train_loss"]
    out = tmp / "model"
    package(out, tmp / "build", fitted.model, json.loads(tok.to_str()), None, prepared, heldout, describe(config),
            {"sources": {}}, pools=("pool",), name="tiny", log=lambda _m: None)
    (tmp / "bert.pt").write_bytes(b"")
    torch.save(bert.state_dict(), tmp / "bert.pt")
    return out


def test_warm_start_reads_the_shipped_weights_back(artifact: Path) -> None:
    """The finetune path: a torch model rebuilt from the ONNX artifact scores like the artifact."""
    from transformers import BertConfig, BertModel

    from evaluators.classifier.encoding import Judged
    from evaluators.classifier.warm_start import load_for_training

    tok = _tokenizer()
    bert = BertModel(BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=160),
                     add_pooling_layer=False).eval()
    bert.load_state_dict(torch.load(artifact.parent / "bert.pt"))
    model, trainable = load_for_training(artifact, bert)
    assert trainable == 1
    served = load(artifact)
    items = [Judged(r["prompt"], r.get("completion")) for r in _rows(9, 40)]
    z_onnx, _ = served.logits(items)
    x, m = served.encoder.pad(served.encoder.ids(items))
    with torch.no_grad():
        z_torch, _ = model(torch.from_numpy(x), torch.from_numpy(m))
    assert float(abs(z_torch.numpy() - z_onnx).max()) < 0.5 + 0.05 * float(abs(z_onnx).max())


def test_artifact_files_and_digests(artifact: Path) -> None:
    meta = json.loads((artifact / "artifact.json").read_text())
    assert meta["format"] == "guardstream.classifier.v2" and len(meta["version"]) == 12
    assert set(meta["files"]) == {"model.onnx", "tokenizer.json"} and all(len(d) == 64 for d in meta["files"].values())
    assert set(meta["thresholds"]) == {"input", "output"}
    assert all(0 <= t["strict"] <= t["default"] <= 1 for t in meta["thresholds"].values())
    metrics = json.loads((artifact / "metrics.json").read_text())
    assert metrics["version"] == meta["version"] and metrics["int8_vs_fp32"]["size_int8_bytes"] > 0


def test_learned_prompts_and_answers(artifact: Path) -> None:
    ev = registry.create("classifier", "tiny", {"path": str(artifact), "max_wait_ms": 1})
    test = _rows(7, 200)
    items = [EvalItem(turns=(Turn("user", r["prompt"]), Turn("assistant", r["completion"])), stage="output")
             if "completion" in r else EvalItem.of_text(r["prompt"]) for r in test]
    verdicts = asyncio.run(ev.evaluate(items))
    asyncio.run(ev.aclose())
    correct = sum(v.safe == (r["label"] == "safe") for v, r in zip(verdicts, test))
    majority = max(sum(r["label"] == "safe" for r in test), sum(r["label"] == "unsafe" for r in test))
    assert correct / len(test) > 0.8 > majority / len(test), (correct, majority)
    assert all(c in ("S1", "S2") for v in verdicts for c in v.categories[:1])


def test_digest_mismatch_is_one_clear_line(artifact: Path, tmp_path: Path) -> None:
    import shutil

    from evaluators.classifier.artifact import ArtifactError

    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    with (copy / "tokenizer.json").open("a") as fh:
        fh.write(" ")
    with pytest.raises(ArtifactError) as err:
        load(copy)
    assert "\n" not in str(err.value) and "tokenizer.json" in str(err.value) and "sha256" in str(err.value)
