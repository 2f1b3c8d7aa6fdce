"""docker-compose.yml for the production stack: parsed and checked service by service (no engine needed).

`docker compose config` also runs when a compose-capable Docker client is on the PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from evaluators.llama_guard.options import LlamaGuardOptions
from proxy.cli import build_parser
from proxy.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

SERVICES = {"kafka", "redis", "postgres", "vllm", "proxy", "review", "metrics", "prometheus", "grafana"}
#: container ports each service publishes to the host
PUBLISHED = {"kafka": {29092}, "proxy": {8080}, "review": {8090}, "metrics": {8091}, "prometheus": {9090},
             "grafana": {3000}}
#: container ports only the compose network reaches
INTERNAL = {"redis": {6379}, "postgres": {5432}, "vllm": {8000}}
DEPENDS = {"proxy": {"redis", "kafka", "vllm"}, "review": {"kafka", "postgres"}, "metrics": {"kafka", "postgres"},
           "prometheus": {"proxy"}, "grafana": {"prometheus"}}
#: services configured by environment rather than a command line
ENV_CONFIGURED = {"kafka": {"KAFKA_PROCESS_ROLES", "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_ADVERTISED_LISTENERS"},
                  "postgres": {"POSTGRES_PASSWORD", "POSTGRES_DB"},
                  "grafana": {"GF_SECURITY_ADMIN_PASSWORD"}}


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?error} over strings in nested structures."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        got = env.get(name)
        if op and op.endswith("?") and not got:
            raise AssertionError(f"${{{name}}} is required: {arg}")
        if op and op.endswith("-") and not got:
            return arg
        return got or ""

    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(raw: dict[str, Any]) -> dict[str, Any]:
    return interpolate(raw["services"], env_example())


def test_every_service_is_there_with_an_image_or_a_build(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES
    for name, svc in services.items():
        assert svc.get("image") or svc.get("build"), name
        if "build" in svc:
            assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file(), name
    assert services["kafka"]["image"].startswith("apache/kafka:")  # the official image, KRaft mode
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert {services[s]["image"] for s in ("proxy", "review", "metrics")} == {"guardstream:latest"}


def test_commands_parse_with_the_real_cli(services: dict[str, Any]) -> None:
    for name in ("review", "metrics"):
        args = build_parser().parse_args(services[name]["command"])
        assert args.bootstrap == "kafka:9092" and args.host == "0.0.0.0"
        assert args.topic is None, "the topic comes from the config file's audit.topic, as the proxy's does"
        assert args.port in PUBLISHED[name]
    proxy = services["proxy"]["command"]
    assert proxy[0] == "serve" and proxy[proxy.index("--port") + 1] == "8080"
    assert proxy[proxy.index("--kafka-bootstrap") + 1] == "kafka:9092"
    assert proxy[proxy.index("--redis-url") + 1] == "redis://redis:6379/0"
    build_parser().parse_args(proxy)
    for name in ("redis", "vllm", "prometheus"):
        assert isinstance(services[name]["command"], list) and services[name]["command"], name
    for name, keys in ENV_CONFIGURED.items():
        assert keys <= set(services[name]["environment"]), name


def test_the_consumers_read_the_proxys_config_file(services: dict[str, Any]) -> None:
    from proxy.schemas.consumers import load_consumers_settings

    proxy = services["proxy"]["command"]
    config = proxy[proxy.index("--config") + 1]
    for name in ("review", "metrics"):
        args = build_parser().parse_args(services[name]["command"])
        assert args.config == config, name
        assert "./deploy/config:/etc/guardstream:ro" in services[name]["volumes"], name
    for path in ("deploy/config/guardstream.yaml", "deploy/config/rules.yaml"):
        settings = load_consumers_settings(ROOT / path, env={})
        assert settings.kafka.topic == load_settings(ROOT / path, env={}).audit.topic, path


def test_ports(services: dict[str, Any]) -> None:
    host_ports: list[str] = []
    for name, svc in services.items():
        published = {int(p.rsplit(":", 1)[1]) for p in svc.get("ports", [])}
        assert published == PUBLISHED.get(name, set()), name
        host_ports += [p.rsplit(":", 1)[0] for p in svc.get("ports", [])]
        if name in INTERNAL:
            assert {int(p) for p in svc["expose"]} == INTERNAL[name], name
    assert len(host_ports) == len(set(host_ports))


def test_healthchecks_and_restart_policies(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        check = svc.get("healthcheck")
        assert check and isinstance(check["test"], list) and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check.get("interval") and check.get("retries"), name
        assert svc.get("restart") in ("unless-stopped", "always"), name
    for name in ("proxy", "review", "metrics"):
        url = services[name]["healthcheck"]["test"][-1]
        assert f"127.0.0.1:{min(PUBLISHED[name])}/healthz" in url


def test_dependencies(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert set(deps) == DEPENDS.get(name, set()), name
        for target, spec in deps.items():
            assert target in services
            assert spec["condition"] in ("service_healthy", "service_started", "service_completed_successfully")
    assert services["proxy"]["depends_on"]["vllm"]["required"] is False  # the gpu profile is optional
    assert all(spec["condition"] == "service_healthy" for spec in services["proxy"]["depends_on"].values())


def test_named_volumes_and_bind_mounts(raw: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(raw["volumes"])
    used = set()
    for name, svc in services.items():
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                used.add(source)
    assert used == declared
    for stateful, path in (("kafka", "/var/lib/kafka/data"), ("postgres", "/var/lib/postgresql/data"),
                           ("redis", "/data"), ("grafana", "/var/lib/grafana"), ("prometheus", "/prometheus")):
        assert any(m.split(":")[1] == path and not m.startswith(".") for m in services[stateful]["volumes"])


def test_no_secrets_in_the_file(raw: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    referenced = {m.group("name") for m in _VAR.finditer(text)}
    assert referenced <= set(env_example()), referenced - set(env_example())
    for name, svc in raw["services"].items():
        env = svc.get("environment", {})
        for key, value in (env.items() if isinstance(env, dict) else []):
            if key == "<<":
                continue
            if re.search(r"PASSWORD|TOKEN|SECRET|API_KEY", key) or "postgresql://" in str(value):
                assert "${" in str(value), f"{name}.{key} must come from the environment"
    assert not re.search(r"(?i)(password|secret|token)\s*[:=]\s*[\"']?[A-Za-z0-9]{8,}", text)


def test_gpu_profile_serves_the_llama_guard_the_proxy_calls(services: dict[str, Any]) -> None:
    vllm = services["vllm"]
    assert vllm["profiles"] == ["gpu"]
    assert vllm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    cmd = vllm["command"]
    assert cmd[cmd.index("--model") + 1] == env_example()["LLAMA_GUARD_MODEL"]
    raw_cmd = yaml.safe_load(COMPOSE.read_text())["services"]["vllm"]["command"]
    assert "${LLAMA_GUARD_MODEL" in raw_cmd[raw_cmd.index("--model") + 1]  # configurable
    settings = load_settings(ROOT / "deploy/config/guardstream.yaml", env={})
    options = settings.evaluators["llama_guard"].options
    assert options["url"] == f"http://vllm:{min(INTERNAL['vllm'])}"
    assert options["model"] == cmd[cmd.index("--served-model-name") + 1]
    LlamaGuardOptions.model_validate(options)
    rules = load_settings(ROOT / "deploy/config/rules.yaml", env={})
    assert "llama_guard" not in rules.evaluators and settings.audit.topic == rules.audit.topic == "guardstream.events"


def test_prometheus_scrapes_the_proxy(services: dict[str, Any]) -> None:
    prom = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert "proxy:8080" in targets
    job = next(j for j in prom["scrape_configs"] if "proxy:8080" in j["static_configs"][0]["targets"])
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_dockerfile() -> None:
    text = (ROOT / "deploy/Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert 'ENTRYPOINT ["guardstream"]' in text
    for src in re.findall(r"^COPY (?!--)(\S+)", text, re.M):
        assert (ROOT / src).exists(), src
    assert "[postgres]" in text and "postgres" in (ROOT / "pyproject.toml").read_text()


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.skipif(_compose_cli() is None, reason="no `docker compose` plugin or docker-compose on PATH "
                                                    "(the file is checked by the parsing tests above)")
def test_docker_compose_config_validates() -> None:
    cli = _compose_cli()
    assert cli
    env = {**os.environ, **env_example()}
    for profile in ([], ["--profile", "gpu"]):
        done = subprocess.run([*cli, "-f", str(COMPOSE), *profile, "config", "--quiet"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


def test_the_commented_lora_serving_recipe_is_consistent() -> None:
    """The commented vLLM-with-adapter recipe: the server's --lora-modules name is what the evaluator requests,
    the adapter path is inside the mounted runs, and the evaluator options validate."""
    from evaluators.llama_guard.options import LlamaGuardOptions

    lines = [ln.strip().lstrip("#").strip() for ln in COMPOSE.read_text().splitlines() if ln.strip().startswith("#")]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("options: {backend: openai_http"))
    block = " ".join(lines[start:start + 2]).removeprefix("options:").strip()
    options = LlamaGuardOptions.model_validate(yaml.safe_load(block))
    module = next(ln for ln in lines if "--lora-modules" in ln)
    name, path = re.search(r'"--lora-modules", "([^=]+)=([^"]+)"', module).groups()  # type: ignore[union-attr]
    assert options.adapter_name == name and options.adapter == path and path.startswith("/adapters/")
    assert any('"./runs:/adapters:ro"' in ln for ln in lines) and "--enable-lora" in module
