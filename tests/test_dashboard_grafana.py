"""The Grafana dashboard for the proxy's Prometheus metrics, and its provisioning."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import yaml

from proxy.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy/grafana/dashboards/guardstream-proxy.json"


def exported_series() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_count", "_sum")}
        else:
            names.add(family.name)
    return names


def test_checked_in_json_is_what_the_generator_prints() -> None:
    spec = importlib.util.spec_from_file_location("make_dashboard", ROOT / "deploy/grafana/make_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads(DASHBOARD.read_text()) == module.dashboard()


def test_every_expression_uses_a_metric_the_proxy_exports() -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bguardstream_[a-z_]+", e)}
    assert used and used <= exported_series(), used - exported_series()
    # the dashboard covers every metric family the proxy defines
    families = {f.name for f in REGISTRY.collect()}
    covered = {re.sub(r"_(total|bucket|count|sum)$", "", m) for m in used}
    assert families <= covered, families - covered
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
    assert len({p["title"] for p in panels}) == len(panels)
    assert all(e.count("(") == e.count(")") for e in exprs)


def test_provisioning_matches_the_compose_mounts() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(m.split(":")[:2] for m in compose["services"]["grafana"]["volumes"] if m.startswith("."))
    dashboards = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/guardstream.yml").read_text())
    path = dashboards["providers"][0]["options"]["path"]
    assert mounts["./deploy/grafana/dashboards"] == path
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    sources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    [prom] = sources["datasources"]
    assert prom["type"] == "prometheus" and prom["url"] == "http://prometheus:9090" and prom["isDefault"]
