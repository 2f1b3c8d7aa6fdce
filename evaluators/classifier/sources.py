"""Readers for the public datasets the shipped default model is trained and measured on.

Each reader yields rows (`prompt`, `completion`, `label` "safe"/"unsafe", `categories` as S-codes,
`group`, `lang`); `default_data.py` names the files, licences and caps. A row with a `completion`
is an answer row (stage output: the answer judged in the context of its prompt), else a prompt row.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

from evaluators.classifier.taxonomy import AART_CRIMES, INJECTION, map_label

csv.field_size_limit(sys.maxsize)



class Row(TypedDict):
    """One row as the readers and `synthetic.py` yield it and the build writes it (JSONL, `row_from_mapping`)."""

    prompt: str
    label: Literal["safe", "unsafe"]
    lang: str
    categories: list[str]  # S-codes (or prompt_injection)
    completion: NotRequired[str]  # an answer row (stage output)
    group: NotRequired[str]  # rows of a group stay in one split
    # set by `default_data` once a row is sampled
    source: NotRequired[str]
    license: NotRequired[str]
    id: NotRequired[str]


def _csv(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def _jsonl(path: Path) -> Iterator[object]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _row(prompt: str, unsafe: bool, *, group: str | None = None, category: str | None = None,
         completion: str = "", lang: str = "en") -> Row:
    row: Row = {"prompt": prompt.strip(), "label": "unsafe" if unsafe else "safe", "lang": lang,
                "categories": [category] if (unsafe and category) else []}
    if completion.strip():
        row["completion"] = completion.strip()
    if group:
        row["group"] = group
    return row


# ---------------------------------------------------------------- unsafe sources

def read_harmbench_val(root: Path) -> Iterator[Row]:
    for r in _csv(root / "harmbench/harmbench_behaviors_text_val.csv"):
        text = r["Behavior"]
        if r.get("ContextString"):
            text = f"{r['ContextString']}\n\n---\n\n{text}"  # HarmBench's own rendering of contextual behaviours
        yield _row(text, True, group=f"harmbench:{r['BehaviorID']}",
                   category=map_label("harmbench", r["SemanticCategory"]))


def read_advbench(root: Path) -> Iterator[Row]:
    for r in _csv(root / "advbench/harmful_behaviors.csv"):
        yield _row(r["goal"], True)


def read_strongreject(root: Path) -> Iterator[Row]:
    for r in _csv(root / "strongreject/strongreject_dataset.csv"):
        yield _row(r["forbidden_prompt"], True, category=map_label("strongreject", r["category"]))


def read_jbb_harmful(root: Path) -> Iterator[Row]:
    for i, r in enumerate(_csv(root / "jailbreakbench-behaviors/harmful-behaviors.csv")):
        yield _row(r["Goal"], True, group=f"jbb:{i}", category=map_label("jbb", r["Category"]))


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
        yield _row(prompt, True, group=f"jbb:{r['index']}", category=map_label("jbb", r.get("category")))


def read_coconot_unsafe(root: Path) -> Iterator[Row]:
    for r in _jsonl(root / "coconot/coconot_eval.jsonl"):
        assert isinstance(r, dict)
        if r["category"] == "Requests with safety concerns":
            yield _row(r["prompt"], True, category=map_label("coconot", r["subcategory"]))


_ACT_AS = re.compile(r"^\s*i want you to act as", re.I)


def read_deepset_injections(root: Path) -> Iterator[Row]:
    for r in _jsonl(root / "deepset-prompt-injections/train.jsonl"):
        assert isinstance(r, dict)
        # three rows are plain awesome-chatgpt-prompts role prompts labelled as injections: label noise, dropped
        if r["label"] == 1 and not _ACT_AS.match(r["text"]):
            yield _row(r["text"], True, category=INJECTION)


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




def read_gsm8k_test(root: Path) -> Iterator[Row]:
    """Measuring only (a benchmark test split): never trained on, never used for a threshold."""
    for r in _jsonl(root / "benign/gsm8k/test.jsonl"):
        assert isinstance(r, dict)
        yield _row(str(r["question"]), False)


# ---------------------------------------------------------------- hazard-labelled prompts (S-codes)

_AILUMINATE_UNSAFE = {"vcr", "ncr", "src", "cse", "dfm", "prv", "ipv", "iwp", "hte", "ssh", "sxc_prn"}


def _ailuminate(path: Path, lang: str) -> Iterator[Row]:
    """Prompts written to elicit a hazard; the specialised-advice and election hazards (mostly
    legitimate questions where only an unqualified answer is a violation) are left out."""
    for r in _csv(path):
        if r["hazard"] in _AILUMINATE_UNSAFE:
            yield _row(r["prompt_text"], True, category=map_label("ailuminate", r["hazard"]), lang=lang)


def read_ailuminate_en(root: Path) -> Iterator[Row]:
    yield from _ailuminate(root / "ailuminate-demo/airr_official_1.0_demo_en_us_prompt_set_release.csv", "en")


def read_ailuminate_fr(root: Path) -> Iterator[Row]:
    yield from _ailuminate(root / "ailuminate-demo/airr_official_1.0_demo_fr_fr_prompt_set_release.csv", "fr")


def read_aart(root: Path) -> Iterator[Row]:
    """Adversarial prompts whose crime concept names a real hazard (see taxonomy.AART_CRIMES)."""
    for r in _csv(root / "aart/aart-v1-20231117.csv"):
        code = AART_CRIMES.get(r["crime"].strip().lower())
        if code:
            yield _row(r["prompt"], True, category=code)


_TAG = re.compile(r"'([^']+)'")


def _multijail(root: Path, lang: str) -> Iterator[Row]:
    for r in _csv_bom(root / "multijail/MultiJail.csv"):
        codes = [c for c in (map_label("redteam", t) for t in _TAG.findall(r["tags"])) if c]
        yield _row(r[lang], True, group=f"multijail:{r['id']}", category=codes[0] if codes else None, lang=lang)


def read_multijail_en(root: Path) -> Iterator[Row]:
    yield from _multijail(root, "en")


def read_multijail_zh(root: Path) -> Iterator[Row]:
    yield from _multijail(root, "zh")


def _csv_bom(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        yield from csv.DictReader(fh)


# ---------------------------------------------------------------- toxic and hateful text (content labels)

_ENTITY = re.compile(r"&#?\w+;")


def _tweet(text: str) -> str:
    return _ENTITY.sub(" ", text).replace("RT ", "", 1).strip()


def read_davidson_hate(root: Path) -> Iterator[Row]:
    """Hate speech (majority vote): S10."""
    for r in _csv(root / "davidson-hate-offensive/labeled_data.csv"):
        if r["class"] == "0":
            yield _row(_tweet(r["tweet"]), True, category="S10")


def read_davidson_offensive(root: Path) -> Iterator[Row]:
    """Offensive language that every coder called offensive (abuse, slurs): unsafe, no S-code."""
    for r in _csv(root / "davidson-hate-offensive/labeled_data.csv"):
        if r["class"] == "1" and r["offensive_language"] == r["count"]:
            yield _row(_tweet(r["tweet"]), True)


def read_davidson_neither(root: Path) -> Iterator[Row]:
    for r in _csv(root / "davidson-hate-offensive/labeled_data.csv"):
        if r["class"] == "2":
            yield _row(_tweet(r["tweet"]), False)


def _toxigen(root: Path, label: str) -> Iterator[Row]:
    for r in _jsonl(root / "toxigen-seeds/toxigen_seed_sentences.jsonl"):
        assert isinstance(r, dict)
        if r["label"] == label:
            yield _row(str(r["text"]), label == "hate", category="S10")


def read_toxigen_hate(root: Path) -> Iterator[Row]:
    yield from _toxigen(root, "hate")


def read_toxigen_neutral(root: Path) -> Iterator[Row]:
    yield from _toxigen(root, "neutral")


def _cold(path: Path, offensive: bool) -> Iterator[Row]:
    for r in _csv_bom(path):
        if (r["label"] == "1") == offensive:
            yield _row(r["TEXT"], offensive, category="S10", lang="zh")


def read_cold_offensive(root: Path) -> Iterator[Row]:
    yield from _cold(root / "cold-zh/train.csv", True)


def read_cold_safe(root: Path) -> Iterator[Row]:
    yield from _cold(root / "cold-zh/train.csv", False)


def read_cold_dev(root: Path) -> Iterator[Row]:
    """Held out: COLD's dev split, both labels."""
    yield from _cold(root / "cold-zh/dev.csv", True)
    yield from _cold(root / "cold-zh/dev.csv", False)


def _crosswoz(root: Path, split: str) -> Iterator[Row]:
    for r in _jsonl(root / "benign/crosswoz-zh-user-turns/crosswoz_user_turns.jsonl"):
        assert isinstance(r, dict)
        if r["split"] == split:
            yield _row(str(r["text"]), False, lang="zh", group=f"crosswoz:{r['dialogue_id']}")


def read_crosswoz_val(root: Path) -> Iterator[Row]:
    yield from _crosswoz(root, "val")


def read_crosswoz_test(root: Path) -> Iterator[Row]:
    yield from _crosswoz(root, "test")


# ---------------------------------------------------------------- held-out benign pools (never trained on)

def read_dolly(root: Path) -> Iterator[Row]:
    """Human-written instructions (CC-BY-SA: measured and used for the threshold, never trained on)."""
    for r in _jsonl(root / "benign/dolly-15k-partial/instructions.jsonl"):
        assert isinstance(r, dict)
        yield _row(str(r["instruction"]), False)


def read_flan_cot(root: Path) -> Iterator[Row]:
    """Commonsense and science questions (CREAK, ECQA, QASC, StrategyQA, Sense-Making train files)."""
    for name in ("creak", "ecqa", "qasc", "strategyqa", "sensemaking"):
        with (root / f"benign/flan-cot/{name}_train.tsv").open(encoding="utf-8") as fh:
            for line in fh:
                question = line.split("\t", 1)[0].strip()
                if question:
                    yield _row(question, False)


# ---------------------------------------------------------------- answers (stage output)

def _gptfuzz(root: Path, file: str) -> Iterator[Row]:
    base = root / "gptfuzz-labeled-responses"
    questions = {r["index"]: r["text"] for r in _csv(base / "questions__question_list.csv")}
    for r in _csv(base / file):
        unsafe = r["label"] == "1"
        yield _row(questions[r["question"]], unsafe, completion=r["Response"], group=f"gptfuzz:{r['question']}")


def read_gptfuzz_train(root: Path) -> Iterator[Row]:
    yield from _gptfuzz(root, "responses_labeled__train.csv")


def read_gptfuzz_evaluate(root: Path) -> Iterator[Row]:
    """Held out: the authors' question-disjoint evaluation split."""
    yield from _gptfuzz(root, "responses_labeled__evaluate.csv")


def read_jbb_responses(root: Path) -> Iterator[Row]:
    """Model answers to JBB attack prompts; unsafe when the JBB judge called it jailbroken."""
    for r in _jsonl(root / "jbb-artifacts/jbb_artifacts_flat.jsonl"):
        assert isinstance(r, dict)
        if r.get("response") and r.get("prompt"):
            unsafe = bool(r["jailbroken"])
            yield _row(str(r["goal"]), unsafe, completion=str(r["response"]), group=f"jbb:{r['index']}",
                       category=map_label("jbb", r.get("category")) if unsafe else None)


def read_advbench_targets(root: Path) -> Iterator[Row]:
    """The compliant opening each AdvBench goal was written with ("Sure, here is a script that ..."):
    the first words of a harmful streamed answer."""
    for r in _csv(root / "advbench/harmful_behaviors.csv"):
        yield _row(r["goal"], True, completion=r["target"])


def read_gsm8k_answers(root: Path) -> Iterator[Row]:
    for r in _jsonl(root / "benign/gsm8k/train.jsonl"):
        assert isinstance(r, dict)
        yield _row(str(r["question"]), False, completion=re.sub(r"<<[^>]*>>", "", str(r["answer"])))


def _gpteacher_answers(path: Path) -> Iterator[Row]:
    for r in json.loads(path.read_text(encoding="utf-8")):
        yield _row(f"{r['instruction']}\n{r.get('input', '')}".strip(), False, completion=str(r.get("response", "")))


def read_gpteacher_answers(root: Path) -> Iterator[Row]:
    yield from _gpteacher_answers(root / "benign/gpteacher/codegen-instruct.json")
    yield from _gpteacher_answers(root / "benign/gpteacher/roleplay-simple-deduped-roleplay-instruct.json")
