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


_DEFINED = re.compile(r'\b(Counter|Gauge|Histogram|Summary)\(\s*"(guardstream_[a-z0-9_]+)"')


def defined_families(*paths: Path) -> dict[str, str]:
    """metric family name -> type, as the source files define them (independent of what is imported)."""
    found: dict[str, str] = {}
    for path in paths:
        for kind, name in _DEFINED.findall(path.read_text()):
            found[re.sub(r"_total$", "", name)] = kind.lower()
    return found


def series_of(families: dict[str, str]) -> set[str]:
    names: set[str] = set()
    for name, kind in families.items():
        if kind == "counter":
            names.add(name + "_total")
        elif kind in ("histogram", "summary"):
            names |= {name + s for s in ("_bucket", "_count", "_sum")}
        else:
            names.add(name)
    return names


PROXY_FAMILIES = defined_families(ROOT / "proxy/metrics.py")
#: everything that registers into the proxy's registry (evaluators may add their own metrics.py)
ALL_FAMILIES = defined_families(ROOT / "proxy/metrics.py", *sorted((ROOT / "evaluators").rglob("metrics.py")))


def test_source_scan_matches_the_registry() -> None:
    registered = {f.name: f.type for f in REGISTRY.collect()}
    assert {k: v for k, v in registered.items() if k in PROXY_FAMILIES} == PROXY_FAMILIES


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
    assert used and used <= series_of(ALL_FAMILIES), used - series_of(ALL_FAMILIES)
    # the dashboard covers every metric family proxy/metrics.py defines
    covered = {re.sub(r"_(total|bucket|count|sum)$", "", m) for m in used}
    assert set(PROXY_FAMILIES) <= covered, set(PROXY_FAMILIES) - covered
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
