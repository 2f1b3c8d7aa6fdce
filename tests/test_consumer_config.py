"""The consumer commands' settings come from the proxy's config file (`consumers:`), under the environment and
their flags (flag > environment > file > default, as for the proxy); one config file drives `review` and
`metrics` against the real broker. Bad keys are one line before anything listens: tests/test_config_errors.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import load_settings
from proxy.schemas.consumers import DEFAULT_DB, load_consumers_settings
from proxy.schemas.events import DEFAULT_TOPIC
from tests.review_support import event_message, make_event, produce
from tests.services import free_port

ROOT = Path(__file__).parents[1]


def write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "guardstream.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_defaults_without_a_file() -> None:
    settings = load_consumers_settings(env={})
    assert settings.db == DEFAULT_DB and settings.db_schema is None
    assert settings.kafka.bootstrap is None and settings.kafka.topic == DEFAULT_TOPIC
    assert (settings.review.group, settings.review.port) == ("guardstream-review", 8090)
    assert (settings.metrics.group, settings.metrics.port) == ("guardstream-metrics", 8091)
    assert settings.kafka.stall_limit_s == 60.0 and settings.kafka.max_stalls == 3


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    config = write(tmp_path, {"consumers": {"db": "file.db", "review": {"port": 1111, "host": "0.0.0.0"},
                                            "kafka": {"batch_size": 10, "stall_limit_s": 5}}})
    env = {"GUARDSTREAM__CONSUMERS__REVIEW__PORT": "2222", "GUARDSTREAM__CONSUMERS__KAFKA__BATCH_SIZE": "20"}
    flags = {"consumers.review.port": 3333, "consumers.kafka.batch_size": None}  # None: the flag was not given
    settings = load_consumers_settings(config, env=env, overrides=flags)
    assert settings.review.port == 3333  # flag
    assert settings.kafka.batch_size == 20  # environment (no flag)
    assert settings.review.host == "0.0.0.0" and settings.kafka.stall_limit_s == 5  # file
    assert settings.kafka.max_stalls == 3 and settings.metrics.port == 8091  # defaults
    assert load_consumers_settings(config, env={}).review.port == 1111


def test_the_review_db_variable_still_works_below_the_flag_and_the_new_form(tmp_path: Path) -> None:
    config = write(tmp_path, {"consumers": {"db": "file.db"}})
    assert load_consumers_settings(config, env={"GUARDSTREAM_REVIEW_DB": "env.db"}).db == "env.db"
    assert load_consumers_settings(env={"GUARDSTREAM_REVIEW_DB": "env.db"}).db == "env.db"
    both = {"GUARDSTREAM_REVIEW_DB": "env.db", "GUARDSTREAM__CONSUMERS__DB": "new.db"}
    assert load_consumers_settings(config, env=both).db == "new.db"
    assert load_consumers_settings(config, env=both, overrides={"consumers.db": "flag.db"}).db == "flag.db"


def test_kafka_defaults_to_the_proxys_audit_section(tmp_path: Path) -> None:
    config = write(tmp_path, {"audit": {"kafka_bootstrap": "kafka:9092", "topic": "audit.events"}})
    kafka = load_consumers_settings(config, env={}).kafka
    assert (kafka.bootstrap, kafka.topic) == ("kafka:9092", "audit.events")
    own = write(tmp_path, {"audit": {"kafka_bootstrap": "kafka:9092", "topic": "audit.events"},
                           "consumers": {"kafka": {"bootstrap": "other:9092", "topic": "mine"}}})
    kafka = load_consumers_settings(own, env={}).kafka
    assert (kafka.bootstrap, kafka.topic) == ("other:9092", "mine")


def test_the_proxy_validates_the_consumers_section_with_the_rest(tmp_path: Path) -> None:
    from proxy.config import ConfigError

    good = write(tmp_path, {"consumers": {"review": {"port": 9000}}})
    assert load_settings(good, env={}).consumers.review.port == 9000
    bad = write(tmp_path, {"consumers": {"kafka": {"max_stalls": 0}}})
    with pytest.raises(ConfigError, match=r"consumers\.kafka\.max_stalls: Input should be greater than 0"):
        load_settings(bad, env={})


# -- one file drives the commands against the real broker ---------------------------------------------

def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDSTREAM")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            body: dict[str, Any] = json.load(resp)
            return body
    except OSError:
        return None


def wait_until(server: subprocess.Popen[bytes], port: int, done: Any, what: str, timeout: float = 45) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"{what}: exited {server.returncode}"
        body = health(port)
        if body is not None and done(body):
            return body
        time.sleep(0.2)
    raise AssertionError(f"{what}: not done on :{port} within {timeout}s")


def stop(server: subprocess.Popen[bytes]) -> str:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        out, _ = server.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        out, _ = server.communicate()
    return out.decode(errors="replace")


def test_one_config_file_drives_review_and_metrics(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    from consumers.store import open_store

    db = tmp_path / "review.db"
    file_review_port, flag_review_port = free_port(), free_port()
    file_metrics_port, env_metrics_port = free_port(), free_port()
    config = write(tmp_path, {
        "audit": {"kafka_bootstrap": kafka_bootstrap, "topic": topic},  # the consumers read what the proxy writes
        "consumers": {"db": str(db),
                      "kafka": {"session_timeout_ms": 2000, "max_poll_interval_ms": 2500, "stall_limit_s": 5},
                      "review": {"group": f"{topic}-review", "port": file_review_port},
                      "metrics": {"group": f"{topic}-metrics", "port": file_metrics_port}}})
    load_settings(config, env={})  # the same file is a valid proxy config
    events = [make_event(categories=("S1",)), make_event(stage="output", categories=("S2",)),
              make_event(tenant="globex", categories=("pii",))]
    produce(kafka_bootstrap, topic, [event_message(e) for e in events])

    # review: everything from the file but the port, which its flag overrides
    review = subprocess.Popen([sys.executable, "-m", "proxy.cli", "review", "--config", str(config),
                               "--port", str(flag_review_port)],
                              cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(review, flag_review_port, lambda b: b["store"]["events"] >= len(events), "review")
        assert health(file_review_port) is None
    finally:
        out = stop(review)
    assert f"UI on http://127.0.0.1:{flag_review_port}/ (consuming {topic})" in out, out[-2000:]

    # metrics: everything from the file but the port, which the environment overrides
    metrics = subprocess.Popen([sys.executable, "-m", "proxy.cli", "metrics", "--config", str(config)],
                               cwd=ROOT, env=clean_env(GUARDSTREAM__CONSUMERS__METRICS__PORT=str(env_metrics_port)),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body = wait_until(metrics, env_metrics_port, lambda b: b["consumer"]["counted"] >= len(events), "metrics")
        assert body["consumer"]["invalid"] == 0
        assert health(file_metrics_port) is None
    finally:
        out = stop(metrics)
    assert f"dashboard on http://127.0.0.1:{env_metrics_port}/" in out, out[-2000:]

    store = open_store(str(db))  # the file's db is the one both commands used
    try:
        from consumers.store import queries

        with store.read() as conn:
            assert queries.counts(conn)["unreviewed"] == len(events)
    finally:
        store.dispose()
