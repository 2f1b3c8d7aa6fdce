"""The shipped default model's data: which public sources, how many rows, what is held out.

`TRAIN_SOURCES` are trained on (grouped train / val / dev split); `HELDOUT_SOURCES` are never
trained on: independent benign pools that set the default threshold (<= 2% false alarms), and
out-of-source sets that measure transfer (another language, another split). Each `Source` names
its files under the shared datasets folder, its licence (read from the folder's LICENSE /
LICENSE_NOTE.md / SOURCE.md), a cap on rows (large sets are sampled so no single style
dominates) and its stage (prompt rows, or answer rows judged with their prompt). The readers
are in `sources.py`; the synthetic rows (refusals, crisis-line replies, benign technical
prompts) in `synthetic.py`. `EXCLUDED` says why every other folder or split is left out.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

from evaluators.classifier import sources as s
from evaluators.classifier import synthetic
from evaluators.classifier.sources import Row

if TYPE_CHECKING:  # the rows the build trains on; the evaluation package is not needed to collect them
    from evaluators.evaluation.datasets import LabelledRow
MIT_CC = "MIT (repo LICENSE); ODC-BY (HF card)"


class Provenance(TypedDict):
    """A source's entry in the manifest's `datasets`."""

    license: str
    files: list[str]  # under the shared datasets folder
    available: int
    sampled: int
    dropped_as_harmbench_test_copies: NotRequired[int]  # training sources
    rows: int
    note: str
    role: str
    sha256: NotRequired[dict[str, str]]  # file -> digest, added by the build


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    license: str
    files: tuple[str, ...]
    read: Callable[[Path], Iterable[Row]]
    cap: int | None = None
    note: str = ""


def _src(name: str, lic: str, files: str | tuple[str, ...], read: Callable[[Path], Iterable[Row]],
         cap: int | None = None, note: str = "") -> Source:
    return Source(name, lic, (files,) if isinstance(files, str) else files, read, cap, note)


_OASST = tuple(f"benign/oasst-eval-prompts/{f}" for f in (
    "prompt_lottery_en_250_text.jsonl", "en_100_text.jsonl", "multilingual-60.jsonl", "oasst_sft_1k_prompts_en.jsonl"))
_GPTEACHER = ("benign/gpteacher/codegen-instruct.json", "benign/gpteacher/roleplay-simple-deduped-roleplay-instruct.json")

TRAIN_SOURCES: tuple[Source, ...] = (
    # unsafe prompts
    _src("harmbench_val", "MIT", "harmbench/harmbench_behaviors_text_val.csv", s.read_harmbench_val,
         note="validation split only; the test split is held out and used only to decontaminate"),
    _src("advbench", "MIT", "advbench/harmful_behaviors.csv", s.read_advbench),
    _src("strongreject", "MIT", "strongreject/strongreject_dataset.csv", s.read_strongreject),
    _src("jbb_harmful", "MIT", "jailbreakbench-behaviors/harmful-behaviors.csv", s.read_jbb_harmful),
    _src("jbb_attacks", "MIT", "jbb-artifacts/jbb_artifacts_flat.jsonl", s.read_jbb_attacks, cap=600,
         note="attack prompts; sampled"),
    _src("coconot_unsafe", MIT_CC, "coconot/coconot_eval.jsonl", s.read_coconot_unsafe,
         note="category 'Requests with safety concerns'"),
    _src("deepset_injection", "Apache-2.0", "deepset-prompt-injections/train.jsonl", s.read_deepset_injections,
         note="label 1 = prompt_injection; 3 role-play rows dropped as label noise"),
    _src("ailuminate_en", "CC-BY-4.0 (MLCommons)", "ailuminate-demo/airr_official_1.0_demo_en_us_prompt_set_release.csv",
         s.read_ailuminate_en, note="hazard -> S-code per SOURCE.md; specialised-advice and election prompts left out"),
    _src("aart", "CC-BY-4.0 (Google)", "aart/aart-v1-20231117.csv", s.read_aart, cap=700,
         note="only crime concepts that name a hazard (taxonomy.AART_CRIMES); sampled"),
    _src("multijail_en", "MIT", "multijail/MultiJail.csv", s.read_multijail_en, note="red-team tags -> S-codes"),
    _src("multijail_zh", "MIT", "multijail/MultiJail.csv", s.read_multijail_zh,
         note="native Chinese translations, grouped with their English rows"),
    _src("davidson_hate", "MIT", "davidson-hate-offensive/labeled_data.csv", s.read_davidson_hate, cap=1000,
         note="class 0 (hate) -> S10; sampled"),
    _src("davidson_offensive", "MIT", "davidson-hate-offensive/labeled_data.csv", s.read_davidson_offensive, cap=700,
         note="class 1 with every coder agreeing: abusive, unsafe without an S-code; sampled"),
    _src("toxigen_hate", "CDLA-Permissive-2.0", "toxigen-seeds/toxigen_seed_sentences.jsonl", s.read_toxigen_hate,
         note="implicit hate -> S10"),
    _src("cold_offensive", "Apache-2.0", "cold-zh/train.csv", s.read_cold_offensive, cap=1500,
         note="Chinese offensive comments -> S10; train split; sampled"),
    # safe prompts
    _src("jbb_benign", "MIT", "jailbreakbench-behaviors/benign-behaviors.csv", s.read_jbb_benign,
         note="topic-matched twins of the harmful behaviours"),
    _src("coconot_contrast", MIT_CC, "coconot/coconot_contrast_eval.jsonl", s.read_coconot_contrast,
         note="should-comply prompts that look unsafe"),
    _src("coconot_noncompliance", MIT_CC, "coconot/coconot_eval.jsonl", s.read_coconot_noncompliance,
         note="declined for non-safety reasons; safe"),
    _src("deepset_benign", "Apache-2.0", "deepset-prompt-injections/train.jsonl", s.read_deepset_benign),
    _src("oasst_prompts", "Apache-2.0", _OASST, s.read_oasst, note="review_flags.csv unsafe and borderline rows removed"),
    _src("awesome_chatgpt_prompts", "CC0-1.0", "benign/awesome-chatgpt-prompts/prompts.csv", s.read_awesome_prompts,
         cap=600, note="flagged, CC BY-NC-marked and image rows removed; sampled"),
    _src("self_instruct_seed", "Apache-2.0", "benign/self-instruct/seed_tasks.jsonl", s.read_self_instruct),
    _src("gpteacher_codegen", "MIT", _GPTEACHER[0], s.read_gpteacher_codegen, cap=600),
    _src("gpteacher_roleplay", "MIT", _GPTEACHER[1], s.read_gpteacher_roleplay, cap=400),
    _src("gsm8k_train", "MIT", "benign/gsm8k/train.jsonl", s.read_gsm8k_train, cap=300),
    _src("banking77_train", "CC-BY-4.0 (PolyAI)", "benign/banking77/train.csv", s.read_banking77_train, cap=200),
    _src("clinc150_train", "CC-BY-3.0 (Clinc)", "benign/clinc150/data_full.json", s.read_clinc150, cap=300,
         note="train, val and oos train/val; test splits unused"),
    _src("hwu64", "CC-BY-4.0 (Liu et al.)", "benign/hwu64/hwu64_cv_testsets_combined.csv", s.read_hwu64, cap=200),
    _src("toxigen_neutral", "CDLA-Permissive-2.0", "toxigen-seeds/toxigen_seed_sentences.jsonl", s.read_toxigen_neutral,
         note="neutral statements about protected groups (hard negatives)"),
    _src("davidson_neither", "MIT", "davidson-hate-offensive/labeled_data.csv", s.read_davidson_neither, cap=800),
    _src("cold_safe", "Apache-2.0", "cold-zh/train.csv", s.read_cold_safe, cap=1500,
         note="Chinese comments on race, region, gender that do not offend; sampled"),
    _src("crosswoz_val", "Apache-2.0", "benign/crosswoz-zh-user-turns/crosswoz_user_turns.jsonl", s.read_crosswoz_val,
         cap=1000, note="Chinese task-oriented user turns, val dialogues; sampled"),
    # answers (stage output)
    _src("gptfuzz_answers", "MIT", ("gptfuzz-labeled-responses/responses_labeled__train.csv",
                                    "gptfuzz-labeled-responses/questions__question_list.csv"),
         s.read_gptfuzz_train, cap=3000, note="human-labelled answers to jailbreak-wrapped questions 0-79; sampled"),
    _src("jbb_answers", "MIT", "jbb-artifacts/jbb_artifacts_flat.jsonl", s.read_jbb_responses,
         note="answers to JBB attacks; unsafe = the JBB judge's 'jailbroken'"),
    _src("advbench_openings", "MIT", "advbench/harmful_behaviors.csv", s.read_advbench_targets,
         note="the compliant opening of each goal ('Sure, here is ...'): unsafe answer"),
    _src("gsm8k_answers", "MIT", "benign/gsm8k/train.jsonl", s.read_gsm8k_answers, cap=500),
    _src("gpteacher_answers", "MIT", _GPTEACHER, s.read_gpteacher_answers, cap=800),
)

HELDOUT_SOURCES: tuple[Source, ...] = (
    # independent benign pools: the default threshold keeps false alarms <= 2% on each
    _src("dolly_instructions", "CC-BY-SA-3.0 (never trained on)", "benign/dolly-15k-partial/instructions.jsonl",
         s.read_dolly, cap=1500, note="human-written instructions; benign pool for the threshold"),
    _src("flan_cot_questions", "Apache-2.0 wrapper (never trained on)",
         tuple(f"benign/flan-cot/{n}_train.tsv" for n in ("creak", "ecqa", "qasc", "strategyqa", "sensemaking")),
         s.read_flan_cot, cap=1500, note="commonsense and science questions; benign pool for the threshold"),
    _src("crosswoz_test", "Apache-2.0", "benign/crosswoz-zh-user-turns/crosswoz_user_turns.jsonl",
         s.read_crosswoz_test, cap=1500, note="Chinese user turns, test dialogues; benign pool for the threshold"),
    # out-of-source measurement only
    _src("cold_dev", "Apache-2.0", "cold-zh/dev.csv", s.read_cold_dev, cap=2000, note="Chinese, both labels"),
    _src("ailuminate_fr", "CC-BY-4.0 (MLCommons)",
         "ailuminate-demo/airr_official_1.0_demo_fr_fr_prompt_set_release.csv", s.read_ailuminate_fr,
         note="French hazard prompts"),
    _src("gptfuzz_eval_answers", "MIT", ("gptfuzz-labeled-responses/responses_labeled__evaluate.csv",
                                         "gptfuzz-labeled-responses/questions__question_list.csv"),
         s.read_gptfuzz_evaluate, note="answers to questions 80-99 (question-disjoint from training)"),
)

#: pools the default threshold is chosen on (stage input, all safe)
THRESHOLD_POOLS = ("dolly_instructions", "flan_cot_questions", "crosswoz_test")

SYNTHETIC_NOTE = "written for guardstream (evaluators/classifier/synthetic.py); Apache-2.0 like the project"

EXCLUDED: dict[str, str] = {
    "harmbench test split": "benchmark test split (used only to drop near-verbatim copies from training)",
    "benign/dolly-15k-partial": "CC-BY-SA-3.0: never trained on; used only as a held-out benign pool",
    "benign/nq-open": "CC-BY-SA-3.0, and its files are dev/test splits of a benchmark",
    "benign/ifeval": "a public benchmark's evaluation set",
    "benign/truthfulqa": "a public benchmark's evaluation set",
    "benign/flan-cot": "Apache-2.0 wrapper over datasets with their own terms: never trained on; held-out benign pool",
    "benign/t0-train-50k-templates": "templates over datasets with their own terms, some not permissive (e.g. Yelp)",
    "benign/self-instruct user_oriented_instructions": "the Self-Instruct paper's human evaluation set",
    "benign/gsm8k test, banking77 test, clinc150 test, cold-zh test": "benchmark test splits",
    "hh-rlhf-harmless-base": "preference pairs: 'chosen' means less harmful, not safe; no per-answer label",
    "flames-zh": "no safe/unsafe label: the harm is in a wrong answer, many prompts are benign-looking traps",
    "cvalues-responsibility-zh": "no safe/unsafe label: mostly legitimate but loaded questions",
    "ailuminate-demo spc_* hazards": "specialised advice and elections: mostly legitimate questions as prompts",
    "aart rows with mild crime concepts": "landfills, circuses, horse racing, smoking...: not hazards",
    "multijail other languages": "only English and Chinese are used (the product's languages)",
}

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def harmbench_test_behaviours(root: Path) -> list[set[str]]:
    return [_words(r["Behavior"]) for r in s._csv(root / "harmbench/harmbench_behaviors_text_test.csv")]


def near_copy_of(text: str, blocked: list[set[str]], threshold: float = 0.8) -> bool:
    """Word-set Jaccard similarity >= threshold with any blocked text (near-verbatim copies)."""
    words = _words(text)
    if not words:
        return False
    return any(len(words & b) / len(words | b) >= threshold for b in blocked)


def _sample(source: Source, root: Path, rng: random.Random) -> tuple[int, list[Row]]:
    found = list(source.read(root))
    total = len(found)
    if source.cap is not None and len(found) > source.cap:
        found = rng.sample(found, source.cap)
    return total, found


def _synthetic(rows: list[Row], seed: int) -> dict[str, list[Row]]:
    """Synthetic rows, some built on the sampled real rows (refusals answer real harmful prompts)."""
    rng = random.Random(seed)
    harmful = [r for r in rows if r["label"] == "unsafe" and "completion" not in r
               and r["source"] not in ("deepset_injection", "jbb_attacks", "davidson_offensive", "davidson_hate",
                                       "cold_offensive", "toxigen_hate")]
    self_harm = list(synthetic.self_harm_prompts(160, seed))
    self_harm_real = [r for r in harmful if "S11" in (r.get("categories") or [])]
    toxic = [r for r in rows if r["source"] in ("toxigen_hate", "davidson_hate", "cold_offensive")]
    return {
        "synthetic_refusals": list(synthetic.refusals(rng.sample(harmful, min(900, len(harmful))), seed)),
        "synthetic_self_harm_prompts": self_harm,
        "synthetic_crisis_replies": list(synthetic.crisis_replies(self_harm + self_harm_real, seed)),
        "synthetic_benign_tech": list(synthetic.benign_tech_prompts(900, seed)),
        "synthetic_toxic_answers": list(synthetic.toxic_answers(rng.sample(toxic, min(600, len(toxic))), seed)),
    }


def _finish(source: str, lic: str, found: list[Row]) -> None:
    for i, r in enumerate(found):
        r.update({"source": source, "license": lic, "id": f"{source}:{i}"})


def collect(root: Path, seed: int = 0) -> tuple[list[Row], list[Row], dict[str, Provenance]]:
    """(training rows, held-out rows, per-source provenance for the manifest).

    Training rows are capped, decontaminated (a row that copies a HarmBench test behaviour is
    dropped together with its whole group: a JBB behaviour, its attack prompts, answers and
    benign twin) and joined by the synthetic rows. Held-out rows are never trained on.
    """
    blocked = harmbench_test_behaviours(root)
    rng = random.Random(seed)
    sampled: list[tuple[Source, int, list[Row]]] = []
    for source in TRAIN_SOURCES:
        total, found = _sample(source, root, rng)
        _finish(source.name, source.license, found)
        sampled.append((source, total, found))
    copies = {id(r) for _, _, found in sampled for r in found if near_copy_of(str(r["prompt"]), blocked)}
    bad_groups = {r.get("group") for _, _, found in sampled for r in found if id(r) in copies} - {None}
    rows: list[Row] = []
    provenance: dict[str, Provenance] = {}
    for source, total, found in sampled:
        kept = [r for r in found if id(r) not in copies and r.get("group") not in bad_groups]
        rows.extend(kept)
        provenance[source.name] = {"license": source.license, "files": list(source.files), "available": total,
                                   "sampled": len(found), "dropped_as_harmbench_test_copies": len(found) - len(kept),
                                   "rows": len(kept), "note": source.note, "role": "train"}
    for name, found in _synthetic(rows, seed).items():
        _finish(name, "Apache-2.0 (synthetic)", found)
        rows.extend(found)
        provenance[name] = {"license": "Apache-2.0 (synthetic)", "files": [], "available": len(found),
                            "sampled": len(found), "rows": len(found), "note": SYNTHETIC_NOTE, "role": "train"}
    heldout: list[Row] = []
    for source in HELDOUT_SOURCES:
        total, found = _sample(source, root, rng)
        _finish(source.name, source.license, found)
        heldout.extend(found)
        provenance[source.name] = {"license": source.license, "files": list(source.files), "available": total,
                                   "sampled": len(found), "rows": len(found), "note": source.note,
                                   "role": "threshold pool" if source.name in THRESHOLD_POOLS else "held out"}
    return rows, heldout, provenance


def vocabulary_corpus(root: Path, rows: Iterable[LabelledRow]) -> Iterator[str]:
    """Text whose SentencePiece pieces the shipped tokenizer keeps: the training rows, the benign
    pools, and more English and Chinese (dialogues, instructions, comments) from the shared folder.
    Held-out measurement sets (COLD dev, AILuminate fr, GPTFuzz evaluate) are left out, so their
    numbers include what pruning costs on unseen text."""
    for row in rows:
        yield row.prompt
        if row.completion:
            yield row.completion
    for source in HELDOUT_SOURCES:
        if source.name in THRESHOLD_POOLS:
            for pooled in source.read(root):
                yield pooled["prompt"]
    for line in (root / "hh-rlhf-harmless-base/harmless-base_test.jsonl").open(encoding="utf-8"):
        record = json.loads(line)
        yield record["chosen"]
        yield record["rejected"]
    for line in (root / "benign/dolly-15k-partial/instructions.jsonl").open(encoding="utf-8"):
        record = json.loads(line)
        yield record["instruction"]
        yield record["response"]
    for line in (root / "benign/crosswoz-zh-user-turns/crosswoz_user_turns.jsonl").open(encoding="utf-8"):
        yield json.loads(line)["text"]
    for line in (root / "flames-zh/Flames_1k_Chinese.jsonl").open(encoding="utf-8"):
        yield json.loads(line)["prompt"]
    for line in (root / "cvalues-responsibility-zh/cvalues_responsibility_prompts.jsonl").open(encoding="utf-8"):
        yield json.loads(line)["prompt"]
    for r in s._csv_bom(root / "cold-zh/train.csv"):
        yield r["TEXT"]
    for r in s._csv(root / "davidson-hate-offensive/labeled_data.csv"):
        yield r["tweet"]
