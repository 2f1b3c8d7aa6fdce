"""Settings: one YAML file plus environment overrides, validated at start-up.

The file's mechanics (reading, overrides, one-line errors) live in proxy/schemas/config_file.py, shared with
the consumer commands, whose `consumers:` section (proxy/schemas/consumers.py) is validated here with the rest.
Environment overrides use `GUARDSTREAM__` and `__` between keys, e.g.
`GUARDSTREAM__UPSTREAM__URL=http://vllm:8000` or `GUARDSTREAM__CACHE__REDIS_URL=...`.
Values are parsed as YAML scalars, so `GUARDSTREAM__POLICIES__DEFAULT__MODE=shadow` and
`GUARDSTREAM__UPSTREAM__POOL_SIZE=512` work (tests/test_config_docs.py checks every example).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evaluators import registry
from evaluators.base import QUALITY_CATEGORIES, OptionError
from proxy.elision import MAX_CONTENT_CHARS
from proxy.schemas.config_file import ConfigError as ConfigError  # re-exported: the proxy's commands import it here
from proxy.schemas.config_file import apply_overrides, read_mapping, validation_error
from proxy.schemas.config_file import error_lines as error_lines  # re-exported
from proxy.schemas.config_file import one_line as one_line  # re-exported
from proxy.schemas.consumers import ConsumersConfig
from proxy.schemas.events import DEFAULT_TOPIC

Action = Literal["block", "flag", "redact", "allow"]
OnError = Literal["fail_open", "fail_closed"]
StreamMode = Literal["buffered", "optimistic", "final", "off"]
ContentMode = Literal["full", "redacted", "hash"]
#: what a policy does with a quality category (e.g. `low_quality`) it does not name in `actions`
QUALITY_DEFAULT_ACTION: Action = "flag"


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors, so typos are caught at start-up."""

    model_config = ConfigDict(extra="forbid")


class EvaluatorConfig(Strict):
    """One evaluator instance: its engine type, error policy, deadline and engine options."""

    type: str
    on_error: OnError = "fail_open"
    timeout_ms: int = Field(default=1000, gt=0)
    #: None: the engine decides (`cacheable`): cheap rules skip the cache, since a Redis hit costs more than them
    cache: bool | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class StreamingConfig(Strict):
    """How streamed answers are moderated (see proxy/streaming.py)."""

    mode: StreamMode | None = None  # None: buffered when enforcing, final in shadow mode
    chunk_size: int = Field(default=64, gt=0, description="tokens per evaluated window (window judges: models)")
    first_chunk_size: int = Field(default=4, gt=0, description=(
        "tokens in a stream's first window; each next window doubles, up to chunk_size (time to first token is"
        " about one model call after these)"))
    context_size: int = Field(default=32, ge=0, description="tokens of earlier text each window includes")
    refusal: bool = Field(default=False, description="a cut stream's last chunk carries the policy's refusal_text")
    hold_limit_bytes: int = Field(
        default=64 * 1024, ge=4096,
        description="upstream events held back for judging, per stream, beyond which the proxy stops reading the"
                    " upstream until windows are judged (and ends a window early rather than wait)")


class StageConfig(Strict):
    evaluators: list[str] = Field(default_factory=list)
    #: candidate evaluators judged beside the live ones, never acting on a response: candidate -> the live
    #: evaluator it is compared with (null: the stage's decision). A list compares each with the decision.
    shadow: dict[str, str | None] = Field(default_factory=dict)

    @field_validator("shadow", mode="before")
    @classmethod
    def _list_means_the_decision(cls, v: Any) -> Any:
        return {name: None for name in v} if isinstance(v, list) else v


class OutputStageConfig(StageConfig):
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)


class CandidateConfig(Strict):
    """The candidate model's OpenAI-compatible server (its key from the environment, never from the config)."""

    url: str
    model: str
    api_key_env: str | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=60.0, gt=0, description="the whole answer within this, else the comparison"
                                                           " is dropped (counted as candidate_timeout)")
    max_response_bytes: int = Field(default=8 * 1024 * 1024, gt=0)


class LLMJudgeConfig(Strict):
    """A judge model behind an OpenAI-compatible chat API, asked which of two answers is better."""

    url: str
    model: str
    api_key_env: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    max_tokens: int = Field(default=512, gt=0, description="room for the judge's reasoning before its verdict")


class JudgeConfig(Strict):
    """The pairwise judge: a reward_model evaluator's margin, or an LLM judge asked in both orders."""

    reward_model: str | None = Field(default=None, description="an evaluator of type reward_model")
    llm: LLMJudgeConfig | None = None
    tie_margin: float = Field(default=0.1, ge=0, description=(
        "a margin (candidate minus baseline) within +-tie_margin is a tie: reward units for a reward model, "
        "[-1, 1] for the LLM judge (1: both orders preferred the candidate)"))

    @model_validator(mode="after")
    def _one_judge(self) -> JudgeConfig:
        if (self.reward_model is None) == (self.llm is None):
            raise ValueError("name exactly one judge: reward_model (an evaluator) or llm")
        return self


class CompareConfig(Strict):
    """Pairwise comparison on shadow traffic: a share of the requests also goes to a candidate model, in the
    background, and a judge says whose answer is better (proxy/comparison)."""

    candidate: CandidateConfig
    judge: JudgeConfig
    name: str | None = Field(default=None, description="how events and dashboards name the candidate "
                                                       "(default: its model)")
    sample: float = Field(default=0.1, ge=0.0, le=1.0, description="share of requests also sent to the candidate")
    max_inflight: int = Field(default=4, gt=0, description=(
        "comparisons running at once in this proxy (candidate call and judging); beyond it a sampled request is "
        "not compared (counted as skipped_busy)"))
    pause_after_failures: int = Field(default=5, gt=0, description=(
        "a candidate that failed this many times in a row is not called for pause_s (skipped_paused)"))
    pause_s: float = Field(default=30.0, ge=0)

    @property
    def label(self) -> str:
        return self.name or self.candidate.model


class PolicyConfig(Strict):
    """What is evaluated and what happens to each category."""

    mode: Literal["enforce", "shadow"] = "enforce"
    input: StageConfig = Field(default_factory=StageConfig)
    output: OutputStageConfig = Field(default_factory=OutputStageConfig)
    #: category -> action; "default" covers categories not listed
    actions: dict[str, Action] = Field(default_factory=lambda: dict[str, Action](default="block"))
    #: blocked prompt: OpenAI-shaped 400 error, or a 200 answer carrying the refusal
    blocked_input: Literal["error", "refusal"] = "error"
    refusal_text: str = "I can't help with that."
    cache_ttl_s: int = Field(default=3600, ge=0)
    #: a candidate model compared with the upstream on a share of this policy's traffic (None: no comparison)
    compare: CompareConfig | None = None

    def action_for(self, category: str) -> Action:
        """The category's own action, else `flag` for quality categories (`low_quality`), else `default`."""
        if category in self.actions:
            return self.actions[category]
        if category in QUALITY_CATEGORIES:
            return QUALITY_DEFAULT_ACTION
        return self.actions.get("default", "block")


class ShadowConfig(Strict):
    """Bounds on shadow evaluators (candidates judged beside the live ones, see `StageConfig.shadow`)."""

    max_inflight: int = Field(default=64, gt=0, description=(
        "shadow evaluations running at once in this proxy; beyond it an item is not shadowed (counted)"))
    sample: float = Field(default=1.0, ge=0.0, le=1.0, description="share of judged items the shadows also judge")
    tally_interval_s: float = Field(default=60.0, gt=0, description=(
        "how often the agreement counts go to the audit topic as a shadow tally (for the ops dashboard)"))
    drain_s: float = Field(default=2.0, ge=0, description="at shutdown: time given to running shadow evaluations")
    pause_after_failures: int = Field(default=5, gt=0, description=(
        "a candidate that failed (raised or timed out) this many times in a row is paused for pause_s"))
    pause_s: float = Field(default=30.0, ge=0, description=(
        "how long a failing candidate is left out; then the next item tries it again"))


class QualityConfig(Strict):
    """Reward scores and comparisons: their background work and the score histograms' messages."""

    tally_interval_s: float = Field(default=60.0, gt=0, description=(
        "how often the reward score histograms go to the audit topic as a score tally (for the ops dashboard)"))
    max_inflight: int = Field(default=64, gt=0, description=(
        "streamed answers scored at once after their stream ended (whole-answer evaluators); beyond it an answer "
        "is not scored (counted)"))
    drain_s: float = Field(default=5.0, ge=0, description="at shutdown: time given to running comparisons and "
                                                         "scorings")


class ClientKey(Strict):
    """A client API key, stored as its sha256 hex digest, with its tenant and policy."""

    sha256: str
    tenant: str = "default"
    policy: str = "default"

    @field_validator("sha256")
    @classmethod
    def _hex64(cls, v: str) -> str:
        v = v.strip().lower()
        if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            raise ValueError("must be a 64-character sha256 hex digest (see `guardstream hash-key`)")
        return v


class UpstreamConfig(Strict):
    url: str = "http://127.0.0.1:8000"
    api_key: str | None = Field(default=None, repr=False)
    api_key_env: str | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=120.0, gt=0, description="max wait for the next byte")
    pool_size: int = Field(default=256, gt=0)
    max_response_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="larger non-streamed answers: 502")
    read_bufsize: int = Field(default=64 * 1024, ge=4096,
                              description="bytes of an answer the proxy buffers ahead of what it relays")
    receive_buffer_bytes: int | None = Field(
        default=256 * 1024, ge=4096,
        description="SO_RCVBUF of upstream connections: what the kernel holds of an answer the proxy has not read"
                    " (null: the kernel's autotuning, up to net.ipv4.tcp_rmem's maximum)")
    tenant_max_concurrent: int | None = Field(
        default=None, gt=0,
        description="upstream requests and streams one tenant may have open at once; more get a 429 (null: half of"
                    " pool_size when the client keys name several tenants, else pool_size); `tenants` overrides it")

    def resolved_api_key(self) -> str | None:
        if self.api_key_env:
            return os.environ.get(self.api_key_env) or self.api_key
        return self.api_key


class TenantConfig(Strict):
    """Limits of one tenant (the `tenant` of its client keys)."""

    max_concurrent: int | None = Field(default=None, gt=0, description=(
        "upstream requests and streams this tenant may have open at once (null: upstream.tenant_max_concurrent)"))


class ServerConfig(Strict):
    """The listening side: limits on what a client may send, and how long it may take."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    max_messages: int = Field(default=2048, gt=0)
    max_n: int = Field(default=8, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0, description="SIGTERM: in-flight streams get this long")
    keepalive_timeout_s: float = Field(default=75.0, gt=0, description=(
        "idle connection closed after this; also bounds a request's headers (slowloris)"))
    body_timeout_s: float = Field(default=30.0, gt=0, description="the whole request body within this, else 408")
    write_timeout_s: float = Field(default=60.0, gt=0, description=(
        "a streaming client that accepts no bytes for this long is disconnected"))
    max_header_bytes: int = Field(default=8190, ge=1024, description="longest request line / header field")
    read_bufsize: int = Field(default=64 * 1024, ge=1024, description="per-connection read buffer (back-pressure)")
    stream_buffer_bytes: int = Field(default=64 * 1024, ge=0, description=(
        "kernel send buffer per stream (SO_SNDBUF, doubled by Linux; 0: autotuned): bounds read-ahead"))


class CacheConfig(Strict):
    redis_url: str | None = None
    max_entries: int = Field(default=100_000, gt=0, description="in-memory LRU size")
    op_timeout_ms: int = Field(default=50, gt=0)
    lock_ttl_ms: int = Field(default=5000, gt=0)
    ssl_ca_certs: str | None = None
    #: prepended to every Redis key (several deployments, or tests, can share one Redis)
    key_prefix: str = ""


class AuditConfig(Strict):
    kafka_bootstrap: str | None = None
    topic: str = DEFAULT_TOPIC
    jsonl_path: str = "var/audit/events.jsonl"
    spool_dir: str = "var/spool"
    spool_fsync: Literal["always", "batch", "never"] = "batch"
    sample_allowed: float = Field(default=0.0, ge=0.0, le=1.0)
    content: ContentMode = "redacted"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_cafile: str | None = None
    compression: Literal["gzip", "lz4", "snappy", "zstd", "none"] = "gzip"  # gzip needs no extra package
    delivery_timeout_ms: int = Field(default=5000, ge=500, description="unacked this long: broker down, spool")
    flush_timeout_s: float = Field(default=5.0, ge=0, description="shutdown: flush deadline, then spool the rest")
    spool_max_mb: int = Field(default=1024, gt=0, description="beyond this the spool drops new events")
    max_content_chars: int = Field(
        default=MAX_CONTENT_CHARS, ge=1000,
        description="characters of prompt and answer text one event keeps (the longest texts lose their middle):"
                    " an event stays under Kafka's 1 MB message limit")


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    log_content: bool = False
    json_logs: bool = True


class Settings(Strict):
    """The whole configuration. `policies` maps names to policies; keys pick one."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    client_keys: list[ClientKey] = Field(default_factory=list)
    #: per-tenant limits by tenant name
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    evaluators: dict[str, EvaluatorConfig] = Field(default_factory=dict)
    policies: dict[str, PolicyConfig] = Field(default_factory=dict)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    #: the review, metrics and export commands' settings (read by them alone; validated here with the rest)
    consumers: ConsumersConfig = Field(default_factory=ConsumersConfig)

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        if "default" not in self.policies:
            self.policies["default"] = PolicyConfig()
        for pname, policy in self.policies.items():
            for stage in ("input", "output"):
                cfg = getattr(policy, stage)
                for ev in cfg.evaluators:
                    if ev not in self.evaluators:
                        raise ValueError(f"policies.{pname}.{stage}.evaluators: unknown evaluator {ev!r}")
                _check_shadow(f"policies.{pname}.{stage}.shadow", cfg, self.evaluators)
            if policy.compare is not None:
                _check_judge(f"policies.{pname}.compare.judge.reward_model", policy.compare.judge, self.evaluators)
        for i, key in enumerate(self.client_keys):
            if key.policy not in self.policies:
                raise ValueError(f"client_keys.{i}.policy: unknown policy {key.policy!r}")
        return self

    def tenant_limits(self) -> tuple[int, dict[str, int]]:
        """(the default limit of concurrent upstream requests per tenant, the limits of tenants that override it)."""
        pool = self.upstream.pool_size
        several = len({key.tenant for key in self.client_keys}) > 1
        default = self.upstream.tenant_max_concurrent or (max(1, pool // 2) if several else pool)
        return default, {name: t.max_concurrent for name, t in self.tenants.items() if t.max_concurrent}

    def policy_hash(self, policy_name: str) -> str:
        """A digest of a policy and the evaluators it uses: part of every cache key. Shadows and comparisons are
        left out: adding or promoting a candidate changes no live verdict, so it must not empty the live cache."""
        policy = self.policies[policy_name]
        used = sorted(set(policy.input.evaluators) | set(policy.output.evaluators))
        blob = {
            "policy": policy.model_dump(mode="json", exclude={"input": {"shadow"}, "output": {"shadow"},
                                                              "compare": True}),
            "evaluators": {n: self.evaluators[n].model_dump(mode="json") for n in used},
        }
        return _digest(blob)

    def evaluator_hash(self, name: str) -> str:
        """A digest of one evaluator's configuration: a shadow's verdicts are cached under it."""
        return _digest({"shadow_evaluator": self.evaluators[name].model_dump(mode="json")})


def _digest(blob: Any) -> str:
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _check_shadow(where: str, stage: StageConfig, evaluators: Mapping[str, EvaluatorConfig]) -> None:
    for candidate, live in stage.shadow.items():
        if candidate not in evaluators:
            raise ValueError(f"{where}: unknown evaluator {candidate!r}")
        if candidate in stage.evaluators:
            raise ValueError(f"{where}: {candidate!r} is live in this stage; a shadow runs beside the live ones")
        if live is not None and live not in stage.evaluators:
            raise ValueError(f"{where}.{candidate}: {live!r} is not a live evaluator of this stage "
                             f"(live: {', '.join(stage.evaluators) or 'none'}; null compares with the decision)")


def _check_judge(where: str, judge: JudgeConfig, evaluators: Mapping[str, EvaluatorConfig]) -> None:
    name = judge.reward_model
    if name is None:
        return
    if name not in evaluators:
        raise ValueError(f"{where}: unknown evaluator {name!r}")
    if evaluators[name].type != "reward_model":
        raise ValueError(f"{where}: {name!r} is a {evaluators[name].type} evaluator; the judge needs a reward_model")


DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_policy.yaml")


def load_settings(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Load the built-in default policy or a YAML file, apply env and CLI overrides, validate."""
    source = Path(path) if path else DEFAULT_CONFIG_PATH
    raw = read_mapping(source)
    apply_overrides(raw, os.environ if env is None else env, overrides)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(source, exc) from None
    check_evaluator_options(settings)
    return settings


def check_evaluator_options(settings: Settings) -> None:
    """Every evaluator's options against its engine's options model (evaluators/registry.py), before any engine
    is built: a ConfigError of one line naming the key, e.g. `evaluators.lg.options.threshold: ...`."""
    for name, cfg in settings.evaluators.items():
        try:
            registry.check_options(cfg.type, cfg.options)
        except OptionError as exc:
            raise ConfigError(f"evaluators.{name}.options.{exc.option}: {one_line(exc.reason)}") from None
        except registry.UnknownEvaluatorType as exc:
            raise ConfigError(f"evaluators.{name}.type: {exc}") from None
        except ImportError as exc:  # a plugin `package.module:factory` that does not import
            raise ConfigError(f"evaluators.{name}.type: cannot import {cfg.type!r}: {one_line(str(exc))}") from None
