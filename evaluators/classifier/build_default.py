"""Rebuild the shipped default classifier from the public datasets, end to end.

    python -m evaluators.classifier.build_default --datasets ../shared/datasets

1. collect the permissively licensed sources (`default_data.py`) into one KTO JSONL;
2. `guardstream train` on it (seed 0, grouped train / val / dev split);
3. copy the artifact (head weights, threshold, manifest, metrics) to
   evaluators/classifier/models/default/;
4. `guardstream eval` the copied model on the dev split: docs/classifier_dev_report.json
   and docs/img/classifier_dev_pr.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from evaluators.classifier import DEFAULT_MODEL_DIR
from evaluators.classifier.artifact import META_FILE, MANIFEST_FILE, METRICS_FILE, WEIGHTS_FILE
from evaluators.classifier.default_data import EXCLUDED, collect

REPO = Path(__file__).resolve().parents[2]
DATASETS_CANDIDATES = (REPO.parent / "shared" / "datasets", REPO.parent.parent / "shared" / "datasets")
COMMAND = "python -m evaluators.classifier.build_default --datasets ../shared/datasets"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path,
                        default=next((p for p in DATASETS_CANDIDATES if p.is_dir()), DATASETS_CANDIDATES[0]),
                        help="the shared datasets folder (default: ../shared/datasets beside the checkout)")
    parser.add_argument("--build-dir", type=Path, default=REPO / "build" / "classifier",
                        help="scratch folder for the training JSONL, splits and full artifact")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="where the shipped artifact goes")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where the dev report and plot go")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from proxy.cli import main as cli

    os.chdir(REPO)  # paths recorded in the manifest and the report stay relative to the checkout
    args.datasets, args.build_dir, args.out, args.docs = (
        Path(os.path.relpath(p.resolve(), REPO)) for p in (args.datasets, args.build_dir, args.out, args.docs))
    build = args.build_dir
    build.mkdir(parents=True, exist_ok=True)
    rows, provenance = collect(args.datasets, seed=args.seed)
    for info in provenance.values():
        info["sha256"] = {f: _sha256(args.datasets / f) for f in info["files"]}  # type: ignore[union-attr]
    data = build / "default_train.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    extra = {"build_command": COMMAND, "datasets": provenance, "excluded": EXCLUDED}
    (build / "manifest_extra.json").write_text(json.dumps(extra, indent=2) + "\n", encoding="utf-8")

    artifact_dir = build / "artifact"
    rc = cli(["train", "--data", str(data), "--out", str(artifact_dir), "--name", "guardstream-default",
              "--seed", str(args.seed), "--export-splits", "--manifest-extra", str(build / "manifest_extra.json")])
    if rc:
        return rc
    args.out.mkdir(parents=True, exist_ok=True)
    for name in (META_FILE, WEIGHTS_FILE, MANIFEST_FILE, METRICS_FILE):
        shutil.copyfile(artifact_dir / name, args.out / name)

    (args.docs / "img").mkdir(parents=True, exist_ok=True)
    return cli(["eval", str(artifact_dir / "splits" / "dev.jsonl"), "--evaluator", f"classifier:{args.out}",
                "--report", str(args.docs / "classifier_dev_report.json"),
                "--plot", str(args.docs / "img" / "classifier_dev_pr.png")])


if __name__ == "__main__":
    sys.exit(main())
