"""Readers for the public datasets the shipped default model is trained on.

Each `Source` names its files under the shared datasets folder, its licence (read
from the folder's LICENSE / LICENSE_NOTE.md / SOURCE.md), its label and a cap on
rows (large benign sets are sampled so no single style dominates). `EXCLUDED`
says why every other folder or split is left out. Rows come out as KTO rows
(`prompt`, `completion`, `label`: true = safe) with `source`, `license`,
`category` and `group` fields for the training manifest and the grouped split.
"""

from __future__ import annotations

import csv
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

csv.field_size_limit(sys.maxsize)

Row = dict[str, object]


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    license: str
    files: tuple[str, ...]
    read: Callable[[Path], Iterable[Row]]
    cap: int | None = None
    note: str = ""


def _csv(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def _jsonl(path: Path) -> Iterator[object]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _row(prompt: str, unsafe: bool, *, group: str | None = None, category: str | None = None,
         completion: str = "") -> Row:
    row: Row = {"prompt": prompt.strip(), "completion": completion, "label": not unsafe}
    if unsafe:
        row["category"] = category or "unsafe"
    if group:
        row["group"] = group
    return row


# ---------------------------------------------------------------- unsafe sources

def read_harmbench_val(root: Path) -> Iterator[Row]:
    for r in _csv(root / "harmbench/harmbench_behaviors_text_val.csv"):
        text = r["Behavior"]
        if r.get("ContextString"):
            text = f"{r['ContextString']}\n\n---\n\n{text}"  # HarmBench's own rendering of contextual behaviours
        yield _row(text, True, group=f"harmbench:{r['BehaviorID']}")


def read_advbench(root: Path) -> Iterator[Row]:
    for r in _csv(root / "advbench/harmful_behaviors.csv"):
        yield _row(r["goal"], True)


def read_strongreject(root: Path) -> Iterator[Row]:
    for r in _csv(root / "strongreject/strongreject_dataset.csv"):
        yield _row(r["forbidden_prompt"], True)


def read_jbb_harmful(root: Path) -> Iterator[Row]:
    for i, r in enumerate(_csv(root / "jailbreakbench-behaviors/harmful-behaviors.csv")):
        yield _row(r["Goal"], True, group=f"jbb:{i}")


def read_jbb_attacks(root: Path) -> Iterator[Row]:
    """Attack prompts (PAIR, GCG, JailbreakChat, random search, DSN) wrapping the JBB harmful goals.

    Every attack prompt asks for a harmful behaviour, so it is unsafe whether or not the
    attacked model complied; grouped with its behaviour so one goal never straddles splits.
    """
    seen: set[str] = set()
    for r in _jsonl(root / "jbb-artifacts/jbb_artifacts_flat.jsonl"):
        assert isinstance(r, dict)
        prompt = r.get("prompt")
        if not prompt or prompt in seen:
            continue
        seen.add(prompt)
        yield _row(prompt, True, group=f"jbb:{r['index']}")


def read_coconot_unsafe(root: Path) -> Iterator[Row]:
    for r in _jsonl(root / "coconot/coconot_eval.jsonl"):
        assert isinstance(r, dict)
        if r["category"] == "Requests with safety concerns":
            yield _row(r["prompt"], True)


_ACT_AS = re.compile(r"^\s*i want you to act as", re.I)


def read_deepset_injections(root: Path) -> Iterator[Row]:
    for r in _jsonl(root / "deepset-prompt-injections/train.jsonl"):
        assert isinstance(r, dict)
        # three rows are plain awesome-chatgpt-prompts role prompts labelled as injections: label noise, dropped
        if r["label"] == 1 and not _ACT_AS.match(r["text"]):
            yield _row(r["text"], True, category="prompt_injection")


# ---------------------------------------------------------------- safe sources

def read_jbb_benign(root: Path) -> Iterator[Row]:
    for i, r in enumerate(_csv(root / "jailbreakbench-behaviors/benign-behaviors.csv")):
        yield _row(r["goal"], False, group=f"jbb:{i}")  # the topic-matched twin of harmful behaviour i


def read_coconot_contrast(root: Path) -> Iterator[Row]:
    for r in _jsonl(root / "coconot/coconot_contrast_eval.jsonl"):
        assert isinstance(r, dict)
        yield _row(r["prompt"], False)


def read_coconot_noncompliance(root: Path) -> Iterator[Row]:
    """CoCoNot requests a model should decline for reasons other than safety (incomplete, unsupported,
    indeterminate, humanising): not unsafe, and from the same distribution as its unsafe half."""
    for r in _jsonl(root / "coconot/coconot_eval.jsonl"):
        assert isinstance(r, dict)
        if r["category"] != "Requests with safety concerns":
            yield _row(r["prompt"], False)


def read_deepset_benign(root: Path) -> Iterator[Row]:
    for r in _jsonl(root / "deepset-prompt-injections/train.jsonl"):
        assert isinstance(r, dict)
        if r["label"] == 0:
            yield _row(r["text"], False)


def _oasst_flagged() -> tuple[set[int], set[int], set[tuple[str, int]]]:
    # review_flags.csv: unsafe and borderline rows are left out of the safe class
    lottery = {59, 262, 261, 256}
    multilingual = {0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55}
    sft = {("result_03", 0), ("result_09", 66), ("result_03", 93), ("result_05", 8)}
    return lottery, multilingual, sft


def read_oasst(root: Path) -> Iterator[Row]:
    base = root / "benign/oasst-eval-prompts"
    lottery_bad, multi_bad, sft_bad = _oasst_flagged()
    for i, text in enumerate(_jsonl(base / "prompt_lottery_en_250_text.jsonl")):
        if i not in lottery_bad:
            yield _row(str(text), False)
    for text in _jsonl(base / "en_100_text.jsonl"):
        yield _row(str(text), False)
    for i, text in enumerate(_jsonl(base / "multilingual-60.jsonl")):
        if i not in multi_bad:
            yield _row(str(text), False)
    for r in _jsonl(base / "oasst_sft_1k_prompts_en.jsonl"):
        assert isinstance(r, dict)
        result = re.search(r"result_\d\d", str(r["source_file"]))
        if (result.group(0) if result else "", int(r["index"])) not in sft_bad:
            yield _row(str(r["prompt"]), False)


def read_awesome_prompts(root: Path) -> Iterator[Row]:
    base = root / "benign/awesome-chatgpt-prompts"
    flagged = {r["act"] for r in _csv(base / "review_flags.csv")}
    for r in _csv(base / "prompts.csv"):
        # flagged rows include the DAN jailbreak; rows carrying a CC BY-NC line conflict with the CC0 licence
        if r["act"] in flagged or "CC BY-NC" in r["prompt"] or r["type"] == "IMAGE":
            continue
        yield _row(r["prompt"], False)


def read_self_instruct(root: Path) -> Iterator[Row]:
    for r in _jsonl(root / "benign/self-instruct/seed_tasks.jsonl"):
        assert isinstance(r, dict)
        inp = (r.get("instances") or [{}])[0].get("input", "")
        yield _row(f"{r['instruction']}\n{inp}".strip(), False)


def _gpteacher(path: Path) -> Iterator[Row]:
    for r in json.loads(path.read_text(encoding="utf-8")):
        yield _row(f"{r['instruction']}\n{r.get('input', '')}".strip(), False)


def read_gpteacher_codegen(root: Path) -> Iterator[Row]:
    yield from _gpteacher(root / "benign/gpteacher/codegen-instruct.json")


def read_gpteacher_roleplay(root: Path) -> Iterator[Row]:
    yield from _gpteacher(root / "benign/gpteacher/roleplay-simple-deduped-roleplay-instruct.json")


def read_gsm8k_train(root: Path) -> Iterator[Row]:
    for r in _jsonl(root / "benign/gsm8k/train.jsonl"):
        assert isinstance(r, dict)
        yield _row(str(r["question"]), False)


def read_banking77_train(root: Path) -> Iterator[Row]:
    for r in _csv(root / "benign/banking77/train.csv"):
        yield _row(r["text"], False)


def read_clinc150(root: Path) -> Iterator[Row]:
    data = json.loads((root / "benign/clinc150/data_full.json").read_text(encoding="utf-8"))
    for split in ("train", "val", "oos_train", "oos_val"):
        for text, _intent in data[split]:
            yield _row(text, False)


def read_hwu64(root: Path) -> Iterator[Row]:
    for r in _csv(root / "benign/hwu64/hwu64_cv_testsets_combined.csv"):
        yield _row(r["answer_from_anno"], False)


UNSAFE_SOURCES: tuple[Source, ...] = (
    Source("harmbench_val", "MIT", ("harmbench/harmbench_behaviors_text_val.csv",), read_harmbench_val,
           note="validation split only; the test split is held out and used only to decontaminate"),
    Source("advbench", "MIT", ("advbench/harmful_behaviors.csv",), read_advbench),
    Source("strongreject", "MIT", ("strongreject/strongreject_dataset.csv",), read_strongreject),
    Source("jbb_harmful", "MIT", ("jailbreakbench-behaviors/harmful-behaviors.csv",), read_jbb_harmful),
    Source("jbb_attacks", "MIT", ("jbb-artifacts/jbb_artifacts_flat.jsonl",), read_jbb_attacks, cap=600,
           note="attack prompts only (responses unused); sampled"),
    Source("coconot_unsafe", "MIT (repo LICENSE); ODC-BY (HF card)", ("coconot/coconot_eval.jsonl",),
           read_coconot_unsafe, note="category 'Requests with safety concerns'"),
    Source("deepset_injection", "Apache-2.0", ("deepset-prompt-injections/train.jsonl",), read_deepset_injections,
           note="label 1, category prompt_injection; 3 role-play rows dropped as label noise"),
)

SAFE_SOURCES: tuple[Source, ...] = (
    Source("jbb_benign", "MIT", ("jailbreakbench-behaviors/benign-behaviors.csv",), read_jbb_benign,
           note="topic-matched twins of the harmful behaviours"),
    Source("coconot_contrast", "MIT (repo LICENSE); ODC-BY (HF card)", ("coconot/coconot_contrast_eval.jsonl",),
           read_coconot_contrast, note="should-comply prompts that look unsafe"),
    Source("coconot_noncompliance", "MIT (repo LICENSE); ODC-BY (HF card)", ("coconot/coconot_eval.jsonl",),
           read_coconot_noncompliance, note="declined for non-safety reasons; safe"),
    Source("deepset_benign", "Apache-2.0", ("deepset-prompt-injections/train.jsonl",), read_deepset_benign),
    Source("oasst_prompts", "Apache-2.0", ("benign/oasst-eval-prompts/prompt_lottery_en_250_text.jsonl",
                                           "benign/oasst-eval-prompts/en_100_text.jsonl",
                                           "benign/oasst-eval-prompts/multilingual-60.jsonl",
                                           "benign/oasst-eval-prompts/oasst_sft_1k_prompts_en.jsonl"),
           read_oasst, note="review_flags.csv unsafe and borderline rows removed"),
    Source("awesome_chatgpt_prompts", "CC0-1.0", ("benign/awesome-chatgpt-prompts/prompts.csv",),
           read_awesome_prompts, cap=600, note="flagged, CC BY-NC-marked and image rows removed; sampled"),
    Source("self_instruct_seed", "Apache-2.0", ("benign/self-instruct/seed_tasks.jsonl",), read_self_instruct),
    Source("gpteacher_codegen", "MIT", ("benign/gpteacher/codegen-instruct.json",), read_gpteacher_codegen, cap=300),
    Source("gpteacher_roleplay", "MIT", ("benign/gpteacher/roleplay-simple-deduped-roleplay-instruct.json",),
           read_gpteacher_roleplay, cap=400),
    Source("gsm8k_train", "MIT", ("benign/gsm8k/train.jsonl",), read_gsm8k_train, cap=200),
    Source("banking77_train", "CC-BY-4.0 (PolyAI)", ("benign/banking77/train.csv",), read_banking77_train, cap=200),
    Source("clinc150_train", "CC-BY-3.0 (Clinc)", ("benign/clinc150/data_full.json",), read_clinc150, cap=300,
           note="train, val and oos train/val; test splits unused"),
    Source("hwu64", "CC-BY-4.0 (Liu et al.)", ("benign/hwu64/hwu64_cv_testsets_combined.csv",), read_hwu64, cap=200),
)

EXCLUDED: dict[str, str] = {
    "harmbench test split": "benchmark test split (used only to drop near-verbatim copies from training)",
    "benign/dolly-15k-partial": "CC-BY-SA-3.0: share-alike terms would bind the shipped model",
    "benign/nq-open": "CC-BY-SA-3.0, and its files are dev/test splits of a benchmark",
    "benign/ifeval": "a public benchmark's evaluation set",
    "benign/truthfulqa": "a public benchmark's evaluation set",
    "benign/flan-cot": "Apache-2.0 wrapper over datasets with their own, unrecorded licences",
    "benign/t0-train-50k-templates": "templates over datasets with their own terms, some not permissive (e.g. Yelp)",
    "benign/self-instruct user_oriented_instructions": "the Self-Instruct paper's human evaluation set",
    "benign/gsm8k test, banking77 test, clinc150 test": "benchmark test splits",
    "hh-rlhf-harmless-base": "preference pairs without safe/unsafe labels",
    "jbb-artifacts responses": "automated-judge labels on model answers; the default model judges prompts",
}

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def harmbench_test_behaviours(root: Path) -> list[set[str]]:
    return [_words(r["Behavior"]) for r in _csv(root / "harmbench/harmbench_behaviors_text_test.csv")]


def near_copy_of(text: str, blocked: list[set[str]], threshold: float = 0.8) -> bool:
    """Word-set Jaccard similarity >= threshold with any blocked text (near-verbatim copies)."""
    words = _words(text)
    if not words:
        return False
    return any(len(words & b) / len(words | b) >= threshold for b in blocked)


def collect(root: Path, seed: int = 0) -> tuple[list[Row], dict[str, dict[str, object]]]:
    """All rows of all sources (capped, decontaminated), and per-source provenance for the manifest.

    A row that copies a HarmBench test behaviour is dropped together with its whole
    group (a JBB behaviour, its attack prompts and its benign twin).
    """
    blocked = harmbench_test_behaviours(root)
    rng = random.Random(seed)
    sampled: list[tuple[Source, int, list[Row]]] = []
    for source in (*UNSAFE_SOURCES, *SAFE_SOURCES):
        found = list(source.read(root))
        total = len(found)
        if source.cap is not None and len(found) > source.cap:
            found = rng.sample(found, source.cap)
        sampled.append((source, total, found))
    copies = {id(r) for _, _, found in sampled for r in found if near_copy_of(str(r["prompt"]), blocked)}
    bad_groups = {r.get("group") for _, _, found in sampled for r in found if id(r) in copies} - {None}
    rows: list[Row] = []
    provenance: dict[str, dict[str, object]] = {}
    for source, total, found in sampled:
        kept = [r for r in found if id(r) not in copies and r.get("group") not in bad_groups]
        for i, r in enumerate(kept):
            r.update({"source": source.name, "license": source.license, "id": f"{source.name}:{i}"})
        rows.extend(kept)
        provenance[source.name] = {"license": source.license, "files": list(source.files), "available": total,
                                   "sampled": len(found), "dropped_as_harmbench_test_copies": len(found) - len(kept),
                                   "rows": len(kept), "note": source.note}
    return rows, provenance
