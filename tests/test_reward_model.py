"""The reward_model evaluator: a tiny trained reward model in process, and a vLLM-shaped pooling server."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from evaluators.base import EvalItem, Turn
from evaluators.registry import create
from evaluators.reward_model.artifact import ArtifactError, resolve
from evaluators.reward_model.backends import RewardBackendError
from evaluators.reward_model.render import conversation_text, plain_text
from tests.fake_vllm_pooling import FakeVLLMPooling
from tests.tiny_reward import bad_answer, build_reward_model, good_answer

pytestmark = pytest.mark.slow


def item(prompt: str, answer: str) -> EvalItem:
    return EvalItem(turns=(Turn("user", prompt), Turn("assistant", answer)), stage="output")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(2)
    return build_reward_model(tmp_path_factory.mktemp("reward"))


async def test_prefers_the_answer_with_the_asked_for_number(model_dir: Path) -> None:
    ev = create("reward_model", "rm", {"path": str(model_dir), "threshold": 0.0})
    try:
        prompts = [(f"Please give me the number {n}.", n) for n in (5, 42, 317, 808)]
        good = await ev.evaluate([item(p, good_answer(n)) for p, n in prompts])
        bad = await ev.evaluate([item(p, bad_answer()) for p, _ in prompts])
        for g, b in zip(good, bad):
            assert g.score is not None and b.score is not None and g.score > b.score
        assert all(v.safe and not v.categories for v in good)
        assert all(not v.safe and v.categories == ["low_quality"] for v in bad)
        assert ev.stages == frozenset({"output"}) and ev.version.endswith("-plain-t0")
        # the cache reads what the model reads: the whole conversation, rendered
        assert ev.cache_context(item("Please give me the number 5.", "5")) == "User: Please give me the number 5." \
            "\n\nAssistant: 5"
    finally:
        await ev.aclose()


async def test_concurrent_calls_share_forward_passes(model_dir: Path) -> None:
    import asyncio

    ev = create("reward_model", "rm", {"path": str(model_dir), "max_wait_ms": 20})
    try:
        alone = (await ev.evaluate([item("Please give me the number 9.", "9")]))[0].score
        together = await asyncio.gather(*(ev.evaluate([item("Please give me the number 9.", "9")]) for _ in range(8)))
        assert max(ev.backend._batcher.batch_sizes) > 1  # type: ignore[attr-defined]
        assert all(math.isclose(v[0].score or 0, alone or 0, abs_tol=1e-4) for v in together)
    finally:
        await ev.aclose()


def test_rendering_plain_and_chat_template() -> None:
    turns = [Turn("system", "Be brief."), Turn("user", "Hi"), Turn("assistant", "Hello")]
    assert plain_text(turns) == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello"

    class Templated:
        chat_template = "x"

        def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool) -> str:
            assert tokenize is False
            return "|".join(f"<{m['role']}>{m['content']}" for m in messages)

    assert conversation_text(turns, Templated(), "chat_template") == "<system>Be brief.|<user>Hi|<assistant>Hello"


def test_options_are_checked(tmp_path: Path) -> None:
    from evaluators.base import OptionError

    def error(options: dict[str, Any]) -> tuple[str, str]:
        with pytest.raises(OptionError) as caught:
            create("reward_model", "rm", options)
        return caught.value.option, caught.value.reason

    assert error({}) == ("path", "the transformers backend needs a model directory")
    assert error({"backend": "vllm"}) == ("model", "the vllm backend needs the served model name")
    assert error({"path": "x", "thresold": 1})[0] == "thresold"
    assert error({"path": str(tmp_path)})[0] == "path" and "no config.json" in error({"path": str(tmp_path)})[1]
    assert error({"backend": "vllm", "model": "m", "endpoint": "pooling", "input_format": "chat_template"})[0] == \
        "input_format"


def test_finetune_artifacts_are_recognised(tmp_path: Path, model_dir: Path) -> None:
    art = tmp_path / "art"
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({"schema": "guardstream.finetune.v1", "kind": "judge"}))
    with pytest.raises(ArtifactError, match="judge artifact, not a reward model"):
        resolve(art)
    (art / "manifest.json").write_text(json.dumps({"schema": "guardstream.finetune.v1", "kind": "reward",
                                                   "base_model": {"path": str(tmp_path / "gone")}}))
    with pytest.raises(ArtifactError, match="base_model.path"):
        resolve(art)
    (art / "manifest.json").write_text(json.dumps({"schema": "guardstream.finetune.v1", "kind": "reward",
                                                   "input_format": "plain", "base_model": {"path": str(model_dir)}}))
    source = resolve(art)
    assert source.base == model_dir and source.adapter == art / "adapter" and source.input_format == "plain"
    assert source.tokenizer == art / "tokenizer"


@pytest.fixture
async def pooling_server() -> Any:
    fake = FakeVLLMPooling()
    server = TestServer(fake.app())
    await server.start_server()
    yield fake, str(server.make_url("/v1"))
    await server.close()


async def test_vllm_classify_endpoint(pooling_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = pooling_server
    monkeypatch.setenv("RM_KEY", "sk-reward-secret")
    ev = create("reward_model", "rm", {"backend": "vllm", "url": url, "model": "rm-1", "threshold": 0,
                                       "api_key_env": "RM_KEY", "request_batch_size": 2})
    try:
        verdicts = await ev.evaluate([item("number 3?", "3"), item("number 4?", "no idea"), item("n 5?", "5")])
        assert [v.score for v in verdicts] == [2.0, -2.0, 2.0]
        assert [v.categories for v in verdicts] == [[], ["low_quality"], []]
        path, body = fake.requests[0]
        assert path == "/classify" and body["use_activation"] is False and body["model"] == "rm-1"
        assert body["input"][0] == "User: number 3?\n\nAssistant: 3"
        assert len(fake.requests) == 2  # batches of request_batch_size
        assert fake.headers[0]["Authorization"] == "Bearer sk-reward-secret"
    finally:
        await ev.aclose()


async def test_vllm_sigmoid_scale_chat_messages_and_pooling(pooling_server: Any) -> None:
    fake, url = pooling_server
    sig = create("reward_model", "rm", {"backend": "vllm", "url": url, "model": "m", "server_scale": "sigmoid",
                                        "input_format": "chat_template"})
    pool = create("reward_model", "rm", {"backend": "vllm", "url": url, "model": "m", "endpoint": "pooling"})
    try:
        fake.requests.clear()
        # server_scale sigmoid: the server's probability, turned back into the logit
        assert (await sig.evaluate([item("n?", "7")]))[0].score == pytest.approx(2.0)
        assert "use_activation" not in fake.requests[0][1]
        assert fake.requests[0][1]["messages"][-1] == {"role": "assistant", "content": "7"}
        assert [v.score for v in await pool.evaluate([item("n?", "7"), item("n?", "none")])] == [2.0, -2.0]
        assert fake.requests[-1][0] == "/pooling"
    finally:
        await sig.aclose()
        await pool.aclose()


async def test_vllm_failures_raise_backend_errors(pooling_server: Any) -> None:
    fake, url = pooling_server
    ev = create("reward_model", "rm", {"backend": "vllm", "url": url, "model": "m", "retries": 1,
                                       "timeout_s": 0.5})
    try:
        fake.script = ["503", "503"]
        with pytest.raises(RewardBackendError, match="after 2 attempts.*HTTP 503"):
            await ev.evaluate([item("n?", "1")])
        fake.script = ["400"]
        with pytest.raises(RewardBackendError, match="HTTP 400"):
            await ev.evaluate([item("n?", "1")])
        fake.script = ["garbage"]
        with pytest.raises(RewardBackendError, match="malformed"):
            await ev.evaluate([item("n?", "1")])
        fake.script = ["slow", "slow"]
        with pytest.raises(RewardBackendError, match="TimeoutError"):
            await ev.evaluate([item("n?", "1")])
    finally:
        await ev.aclose()


def test_a_classifier_with_two_labels_is_not_a_reward_model(tmp_path: Path, model_dir: Path) -> None:
    import shutil

    from evaluators.base import OptionError

    two = tmp_path / "two"
    shutil.copytree(model_dir, two)
    config = json.loads((two / "config.json").read_text())
    (two / "config.json").write_text(json.dumps({**config, "num_labels": 2,
                                                 "id2label": {"0": "a", "1": "b"}, "label2id": {"a": 0, "b": 1}}))
    with pytest.raises((OptionError, ValueError, RuntimeError), match="labels|size"):
        create("reward_model", "rm", {"path": str(two)})
