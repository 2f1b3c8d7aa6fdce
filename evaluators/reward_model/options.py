"""Options of the `reward_model` evaluator type (the `options:` mapping in the YAML config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from evaluators.base import OptionError
from evaluators.options import EngineOptions


class RewardModelOptions(EngineOptions):
    backend: Literal["transformers", "vllm"] = "transformers"
    #: transformers: a model directory (`AutoModelForSequenceClassification`, one label) or the artifact
    #: directory `guardstream finetune reward` writes (manifest.json, adapter/, tokenizer/)
    path: str | None = None
    #: what the model reads: the tokenizer's chat template or the plain `Role: content` rendering
    #: (evaluators/reward_model/render.py); auto: the artifact's own format, else the chat template when the
    #: tokenizer has one, else plain (vllm: plain unless chat_template is named, which sends `messages`)
    input_format: Literal["auto", "plain", "chat_template"] = "auto"
    #: below this score an answer is `low_quality`; None: never (the score is only recorded)
    threshold: float | None = None
    #: tokens the model reads at most; longer texts lose their start (the answer, at the end, is kept)
    max_length: int = Field(default=2048, gt=16)
    # transformers
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_batch_size: int = Field(default=16, gt=0)
    max_wait_ms: float = Field(default=2.0, ge=0)
    torch_threads: int | None = Field(default=None, gt=0)
    # vllm (a server started with `vllm serve MODEL --runner pooling`)
    url: str = "http://127.0.0.1:8000"
    model: str | None = Field(default=None, description="served model name (vllm)")
    api_key_env: str | None = None
    endpoint: Literal["classify", "pooling"] = "classify"
    #: how the server reports the score: the raw logit (`use_activation: false` is sent), or a sigmoid
    #: probability (servers without use_activation; nothing is sent), turned back into a logit here
    server_scale: Literal["logit", "sigmoid"] = "logit"
    timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    retries: int = Field(default=1, ge=0, le=10)
    pool_size: int = Field(default=16, gt=0)
    request_batch_size: int = Field(default=16, gt=0)

    @model_validator(mode="after")
    def _backend_has_its_model(self) -> RewardModelOptions:
        if self.backend == "transformers" and not self.path:
            raise OptionError("path", "the transformers backend needs a model directory")
        if self.backend == "vllm" and not self.model:
            raise OptionError("model", "the vllm backend needs the served model name")
        if self.backend == "vllm" and self.input_format == "chat_template" and self.endpoint != "classify":
            raise OptionError("input_format", "chat_template needs endpoint classify (it sends messages)")
        return self
