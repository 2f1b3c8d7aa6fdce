"""The systems under test (rows) and how each is started: processes, workers, CPUs, config files."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.procs import Proc, ProcGroup, free_port, wait_ready

REPO = Path(__file__).resolve().parent.parent
BENCH_KEY = "sk-bench-0123456789abcdef"
LITELLM_VENV = Path(os.environ.get("BENCH_LITELLM_VENV", "/work/bench-venvs/litellm"))
STREAM_MODES_ALWAYS = ("off", "final")


@dataclass(frozen=True)
class Placement:
    """Where processes run. With 2+ CPUs: the proxy alone on the last CPU, upstream and load on the others."""

    client: str | None
    proxy: str | None
    every: str | None

    @classmethod
    def detect(cls) -> Placement:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            return cls(None, None, None)
        return cls(",".join(map(str, cpus[:-1])), str(cpus[-1]), ",".join(map(str, cpus)))

    @property
    def ncpus(self) -> int:
        return len(self.every.split(",")) if self.every else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Row:
    """One system under test, at one worker count, for streamed or non-streamed requests."""

    key: str
    system: str  # direct | nginx | passthrough | guardstream | litellm
    label: str
    workers: int | str = 1  # a number, or "auto" / "nproc" (resolved at start)
    spread: bool = False  # False: pinned to the proxy CPU; True: all CPUs (shares them with upstream + load)
    guard: str = "none"  # guardstream only: none | rules | cache | cache-redis
    stream_mode: str | None = None  # guardstream streamed rows: off | final | buffered | optimistic
    stream: bool = False

    @property
    def unique(self) -> bool:
        """Distinct prompts per request, except where cache hits are the point."""
        return not self.guard.startswith("cache")


def rows(stream_modes: tuple[str, ...]) -> list[Row]:
    """Every row of the full suite, in run order."""
    plain = [
        Row("direct", "direct", "direct to the upstream (floor)"),
        Row("nginx-1", "nginx", "nginx reverse proxy, 1 worker"),
        Row("nginx-auto", "nginx", "nginx reverse proxy, worker_processes auto", workers="auto", spread=True),
        Row("passthrough", "passthrough", "minimal aiohttp pass-through"),
        Row("passthrough-x2", "passthrough", "minimal aiohttp pass-through, 1 process per CPU", workers="nproc",
            spread=True),
        Row("guardstream-none", "guardstream", "guardstream, no evaluators"),
        Row("guardstream-rules", "guardstream", "guardstream, default rule evaluators in+out", guard="rules"),
        Row("guardstream-cache", "guardstream", "guardstream, rules, in-memory cache hits", guard="cache"),
        Row("guardstream-cache-redis", "guardstream", "guardstream, rules, Redis cache hits", guard="cache-redis"),
        Row("guardstream-rules-x2", "guardstream", "guardstream, rules, 1 process per CPU", workers="nproc",
            spread=True, guard="rules"),
        Row("litellm-1", "litellm", "LiteLLM proxy, 1 worker"),
        Row("litellm-nproc", "litellm", "LiteLLM proxy, num_workers = CPUs (its docs' advice)", workers="nproc",
            spread=True),
    ]
    streamed = [
        Row("stream-direct", "direct", "direct to the upstream (floor)", stream=True),
        Row("stream-nginx-1", "nginx", "nginx reverse proxy, 1 worker", stream=True),
        Row("stream-passthrough", "passthrough", "minimal aiohttp pass-through", stream=True),
        *[Row(f"stream-guardstream-{m}", "guardstream", f"guardstream, rules, stream mode {m}", guard="rules",
              stream_mode=m, stream=True) for m in stream_modes],
        Row("stream-litellm-1", "litellm", "LiteLLM proxy, 1 worker", stream=True),
    ]
    return plain + streamed


def available_stream_modes() -> tuple[str, ...]:
    """off and final always; buffered and optimistic once proxy/streaming implements them."""
    spec = importlib.util.find_spec("proxy.streaming")
    origin = Path(spec.origin) if spec and spec.origin else None
    files = [origin] if origin and origin.name != "__init__.py" else (sorted(origin.parent.glob("*.py")) if origin
                                                                       else [])
    source = "".join(f.read_text() for f in files)
    extra = tuple(m for m in ("buffered", "optimistic") if f'"{m}"' in source or f"'{m}'" in source)
    return STREAM_MODES_ALWAYS + extra


@dataclass
class Env:
    """What every row's launcher needs: the shared upstream, the run folder, placement, options."""

    workdir: Path
    upstream_url: str
    placement: Placement
    log_level: str = "warning"
    redis_url: str | None = None
    ready_timeout_s: float = 90.0


@dataclass
class Running:
    """A started row: where to send load, with which headers, and the processes to account CPU for."""

    url: str
    api_key: str | None
    group: ProcGroup
    processes: str
    commands: list[str]
    notes: list[str] = field(default_factory=list)
    config: str | None = None  # the generated config file, for the report's appendix


class Skip(Exception):
    """The row cannot run here (tool not installed, component not built yet); the reason goes in the report."""


def resolve_workers(workers: int | str, placement: Placement) -> int:
    if isinstance(workers, int):
        return workers
    return placement.ncpus


def _cmd(proc: Proc) -> str:
    return shlex.join(proc.argv)


def launch(row: Row, env: Env) -> Running:
    starter: dict[str, Callable[[Row, Env], Running]] = {
        "direct": _direct, "nginx": _nginx, "passthrough": _passthrough, "guardstream": _guardstream,
        "litellm": _litellm,
    }
    running = starter[row.system](row, env)
    body = {"model": "demo-model", "messages": [{"role": "user", "content": "ready?"}]}
    headers = {"authorization": f"Bearer {running.api_key}"} if running.api_key else {}
    try:
        wait_ready(running.url, body, headers, running.group.procs, env.ready_timeout_s)
    except Exception:
        running.group.stop()
        raise
    return running


def _cpus(row: Row, env: Env) -> str | None:
    return env.placement.every if row.spread else env.placement.proxy


def _where(row: Row, env: Env) -> str:
    cpus = _cpus(row, env)
    return f"CPUs {cpus}" if cpus and "," in cpus else (f"CPU {cpus}" if cpus else "unpinned")


def _direct(row: Row, env: Env) -> Running:
    return Running(env.upstream_url + "/v1/chat/completions", None, ProcGroup(),
                   f"no proxy: the load generator talks to the upstream (CPU {env.placement.client})", [])


def _passthrough(row: Row, env: Env) -> Running:
    port, group = free_port(), ProcGroup()
    n = resolve_workers(row.workers, env.placement)
    for i in range(n):
        argv = [sys.executable, "-m", "bench.passthrough", "--port", str(port), "--upstream", env.upstream_url]
        if n > 1:
            argv.append("--reuse-port")
        group.start(f"{row.key}-{i}", argv, env.workdir, cpus=_cpus(row, env), cwd=REPO)
    what = "1 process" if n == 1 else f"{n} processes (SO_REUSEPORT)"
    return Running(f"http://127.0.0.1:{port}/v1/chat/completions", None, group, f"{what}, {_where(row, env)}",
                   [_cmd(group.procs[0])], [PASSTHROUGH_NOTE])


PASSTHROUGH_NOTE = "bench/passthrough.py: ~40 lines of aiohttp, one pooled ClientSession, no checks"
NGINX_NOTE = "proxy_buffering off, proxy_request_buffering off, keepalive 256 to the upstream, access_log off"
LITELLM_NOTE = ("settings per docs.litellm.ai/docs/proxy/prod: master_key, set_verbose false, json_logs, "
                "LITELLM_LOG=ERROR, uvicorn workers = CPU count for the multi-worker row; no database (so no "
                "spend logs); the cost map read locally (no network here)")

NGINX_CONF = """\
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream bench_upstream {{
        server {upstream};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""


def _nginx(row: Row, env: Env) -> Running:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        raise Skip("nginx is not installed (apt-get install -y nginx)")
    port = free_port()
    folder = env.workdir / row.key
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    workers = "auto" if row.workers == "auto" else str(row.workers)
    text = NGINX_CONF.format(workers=workers, dir=folder, port=port, upstream=env.upstream_url.removeprefix("http://"))
    conf.write_text(text)
    group = ProcGroup()
    proc = group.start(row.key, [binary, "-c", str(conf), "-p", str(folder), "-e", str(folder / "nginx-error.log")],
                       env.workdir, cpus=_cpus(row, env))
    n = resolve_workers(row.workers, env.placement) if row.workers == "auto" else int(row.workers)
    return Running(f"http://127.0.0.1:{port}/v1/chat/completions", None, group,
                   f"1 master + {n} worker{'s' if n > 1 else ''} (worker_processes {workers}), {_where(row, env)}",
                   [_cmd(proc)], [NGINX_NOTE], config=text)


def rule_evaluators() -> tuple[dict[str, Any], list[str], list[str], dict[str, str], str]:
    """The built-in default policy's evaluators and stages; a keyword stand-in for engines not built yet."""
    from evaluators.registry import UnknownEvaluatorType, factory_for
    from proxy.config import load_settings

    settings = load_settings(None, env={})
    policy = settings.policies["default"]
    evaluators: dict[str, Any] = {}
    stand_ins = []
    for name, cfg in settings.evaluators.items():
        entry = cfg.model_dump(mode="json")
        try:
            factory_for(cfg.type)
        except (ImportError, AttributeError, UnknownEvaluatorType):
            stand_ins.append(name)
            entry = {"type": "tests.keyword_evaluator:create", "on_error": cfg.on_error, "timeout_ms": cfg.timeout_ms,
                     "options": STAND_IN_OPTIONS.get(name, {"words": ["forbidden"], "category": name})}
        evaluators[name] = entry
    source = ("the built-in default policy's rule evaluators" if not stand_ins else
              f"the built-in default policy's layout with a keyword stand-in for {', '.join(stand_ins)} "
              "(rule engines not merged yet)")
    return (evaluators, list(policy.input.evaluators), list(policy.output.evaluators), dict(policy.actions), source)


STAND_IN_OPTIONS = {
    "secrets": {"words": ["-----begin", "sk-live-", "akia", "ghp_"], "category": "secret"},
    "pii": {"words": ["@example.com", "555 01"], "category": "pii"},
    "injection": {"words": ["ignore previous instructions", "reveal your system prompt"],
                  "category": "prompt_injection"},
    "unicode": {"words": ["\u202e", "\u200b"], "category": "unicode"},
}


def guardstream_config(row: Row, env: Env, port: int) -> tuple[dict[str, Any], str | None]:
    """The YAML config of a guardstream row: bench key, upstream, evaluators per `row.guard`, stream mode."""
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "upstream": {"url": env.upstream_url},
        "client_keys": [{"sha256": hashlib.sha256(BENCH_KEY.encode()).hexdigest()}],
        "audit": {"jsonl_path": str(env.workdir / f"{row.key}-audit.jsonl")},
        "logging": {"level": env.log_level},
    }
    policy: dict[str, Any] = {"mode": "enforce", "output": {"streaming": {"mode": row.stream_mode or "final"}}}
    source = None
    if row.guard != "none":
        evaluators, inputs, outputs, actions, source = rule_evaluators()
        cached = row.guard.startswith("cache")
        for entry in evaluators.values():
            entry["cache"] = cached  # rules: evaluated every time; cache rows: every verdict from the cache
        cfg["evaluators"] = evaluators
        policy["input"] = {"evaluators": inputs}
        policy["output"]["evaluators"] = outputs
        policy["actions"] = actions
    if row.guard == "cache-redis":
        if importlib.util.find_spec("proxy.cache_redis") is None:
            raise Skip("the Redis verdict cache is not built yet (proxy/cache_redis.py)")
        if not env.redis_url:
            raise Skip("no redis-server to start (apt-get install -y redis-server)")
        cfg["cache"] = {"redis_url": env.redis_url, "key_prefix": f"bench:{os.getpid()}:{row.key}:"}
    cfg["policies"] = {"default": policy}
    return cfg, source


def _guardstream(row: Row, env: Env) -> Running:
    port, group = free_port(), ProcGroup()
    cfg, source = guardstream_config(row, env, port)
    path = env.workdir / f"{row.key}.yaml"
    text = yaml.safe_dump(cfg, sort_keys=False)
    path.write_text(text)
    n = resolve_workers(row.workers, env.placement)
    if n == 1:
        argv = [sys.executable, "-m", "proxy.cli", "serve", "--config", str(path)]
    else:
        argv = [sys.executable, "-m", "bench.reuseport", "--config", str(path)]
    for i in range(n):
        group.start(f"{row.key}-{i}", argv, env.workdir, cpus=_cpus(row, env), cwd=REPO)
    what = "1 process (`guardstream serve`)" if n == 1 else f"{n} processes (SO_REUSEPORT)"
    notes = [f"evaluators: {source}"] if source else []
    if row.guard == "none":
        notes.append("no evaluators")
    elif row.guard.startswith("cache"):
        notes.append("every evaluator behind the verdict cache (`cache: true`), identical requests: all hits")
    else:
        notes.append("evaluators run on every request (`cache: false`), a distinct prompt per request")
    return Running(f"http://127.0.0.1:{port}/v1/chat/completions", BENCH_KEY, group, f"{what}, {_where(row, env)}",
                   [_cmd(group.procs[0])], notes, config=text)


def _litellm(row: Row, env: Env) -> Running:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        raise Skip(f"LiteLLM is not installed at {LITELLM_VENV} "
                   f"(python3 -m venv {LITELLM_VENV} && {LITELLM_VENV}/bin/pip install 'litellm[proxy]')")
    port = free_port()
    n = resolve_workers(row.workers, env.placement)
    cfg = {
        "model_list": [{"model_name": "demo-model", "litellm_params": {
            "model": "openai/demo-model", "api_base": env.upstream_url + "/v1", "api_key": "bench-upstream-key"}}],
        "general_settings": {"master_key": BENCH_KEY},
        "litellm_settings": {"set_verbose": False, "json_logs": True, "request_timeout": 600},
    }
    path = env.workdir / f"{row.key}.yaml"
    text = yaml.safe_dump(cfg, sort_keys=False)
    path.write_text(text)
    group = ProcGroup()
    argv = [str(binary), "--config", str(path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", str(n)]
    folder = env.workdir / row.key
    folder.mkdir(exist_ok=True)
    proc = group.start(row.key, argv, env.workdir, cpus=_cpus(row, env), cwd=folder,
                       env={"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    what = f"uvicorn, {n} worker{'s' if n > 1 else ''}" + (" (+ the supervising parent)" if n > 1 else "")
    return Running(f"http://127.0.0.1:{port}/v1/chat/completions", BENCH_KEY, group, f"{what}, {_where(row, env)}",
                   ["LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True " + _cmd(proc)], [LITELLM_NOTE], config=text)
