"""Generates grafana/dashboards/guardstream-proxy.json from the proxy's Prometheus metrics (proxy/metrics.py).

    python deploy/grafana/make_dashboard.py > deploy/grafana/dashboards/guardstream-proxy.json

tests/test_dashboard_grafana.py checks the checked-in JSON is what this prints and that every
expression names a metric the proxy really exports.
"""

from __future__ import annotations

import json
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
SHADOW = "guardstream_shadow_comparisons_total"


def panel(title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int, w: int = 12, h: int = 8,
          kind: str = "timeseries", description: str = "", stack: bool = False) -> dict[str, Any]:
    custom: dict[str, Any] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    defaults: dict[str, Any] = {"unit": unit}
    if kind == "timeseries":
        defaults["custom"] = custom
    if kind == "stat":
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                                {"color": "green", "value": 1}]}
    return {
        "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(exprs)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
        if kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
    }


def row(title: str, y: int) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            "panels": []}


def quantiles(metric: str, by: str, legend: str) -> list[tuple[str, str]]:
    return [(f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket[{RATE}])))", f"p{int(q * 100)} {legend}")
            for q in (0.5, 0.95, 0.99)]


def dashboard() -> dict[str, Any]:
    panels = [
        row("Traffic", 0),
        panel("Requests by status", [(f"sum by (status) (rate(guardstream_requests_total[{RATE}]))", "{{status}}")],
              "reqps", 0, 1, stack=True),
        panel("Blocks by stage and category",
              [(f"sum by (stage, category) (rate(guardstream_blocks_total[{RATE}]))", "{{stage}} {{category}}")],
              "ops", 12, 1, stack=True),
        panel("Flags, and blocks not enforced (shadow mode)",
              [(f"sum by (category) (rate(guardstream_flags_total[{RATE}]))", "flag {{category}}"),
               (f"sum by (stage) (rate(guardstream_shadow_would_block_total[{RATE}]))", "shadow would block {{stage}}")],
              "ops", 0, 9),
        panel("In-flight requests", [("sum(guardstream_inflight_requests)", "in flight")], "short", 12, 9),
        row("Latency", 17),
        panel("Proxy overhead (non-streaming)", quantiles("guardstream_proxy_overhead_seconds", "route", "{{route}}"),
              "s", 0, 18, description="Time spent in the proxy outside the upstream call"),
        panel("Upstream latency (to headers)", quantiles("guardstream_upstream_latency_seconds", "route", "{{route}}"),
              "s", 12, 18),
        panel("Upstream errors", [(f"sum by (kind) (rate(guardstream_upstream_errors_total[{RATE}]))", "{{kind}}")],
              "ops", 0, 26),
        panel("Slow clients disconnected", [(f"rate(guardstream_slow_client_disconnects_total[{RATE}])", "stalled")],
              "ops", 12, 26, description="Streaming clients that accepted no bytes for server.write_timeout_s"),
        panel("Requests refused: tenant at its upstream limit",
              [(f"sum by (tenant) (rate(guardstream_tenant_rejections_total[{RATE}]))", "{{tenant}}")], "ops", 0, 34,
              description="429s for tenants holding upstream.tenant_max_concurrent (or tenants.NAME.max_concurrent)"
                          " upstream requests already"),
        row("Evaluators", 42),
        panel("Evaluator latency p95 (cache misses)",
              [(f"histogram_quantile(0.95, sum by (le, evaluator, stage) "
                f"(rate(guardstream_evaluator_latency_seconds_bucket[{RATE}])))", "{{evaluator}} {{stage}}")],
              "s", 0, 43),
        panel("Evaluator errors and timeouts",
              [(f"sum by (evaluator, kind, on_error) (rate(guardstream_evaluator_errors_total[{RATE}]))",
                "{{evaluator}} {{kind}} ({{on_error}})")], "ops", 12, 43),
        panel("Streaming windows evaluated and streams cut",
              [(f"sum by (mode) (rate(guardstream_stream_windows_evaluated_total[{RATE}]))", "windows {{mode}}"),
               (f"sum by (mode) (rate(guardstream_stream_cuts_total[{RATE}]))", "cuts {{mode}}")], "ops", 0, 51),
        row("Cache", 59),
        panel("Verdict cache hit ratio",
              [(f'sum by (backend) (rate(guardstream_cache_lookups_total{{result=~"hit|coalesced"}}[{RATE}])) / '
                f"sum by (backend) (rate(guardstream_cache_lookups_total[{RATE}]))", "{{backend}}")],
              "percentunit", 0, 60),
        panel("Cache errors (served without cache)",
              [(f"sum by (backend, kind) (rate(guardstream_cache_errors_total[{RATE}]))", "{{backend}} {{kind}}")],
              "ops", 12, 60),
        panel("Cache backend up", [("min by (backend) (guardstream_cache_backend_up)", "{{backend}}")],
              "short", 0, 68, w=6, h=5, kind="stat"),
        row("Audit stream", 73),
        panel("Audit events by outcome",
              [(f"sum by (outcome) (rate(guardstream_audit_events_total[{RATE}]))", "{{outcome}}")], "ops", 0, 74),
        panel("Audit spool depth", [("sum(guardstream_audit_spool_depth)", "events spooled")], "short", 12, 74,
              description="Events waiting for the broker; replayed in order on recovery"),
        panel("Kafka broker up", [("min(guardstream_audit_broker_up)", "broker")], "short", 0, 82, w=6, h=5,
              kind="stat"),
        row("Llama Guard", 87),
        panel("Llama Guard unparseable answers",
              [(f"sum by (evaluator) (rate(guardstream_llama_guard_parse_errors_total[{RATE}]))", "{{evaluator}}")],
              "ops", 0, 88, description="Answers that were not 'safe' / 'unsafe' + codes (handled per on_error)"),
        panel("Llama Guard category decodes",
              [(f"sum by (evaluator) (rate(guardstream_llama_guard_category_decodes_total[{RATE}]))",
                "{{evaluator}}")],
              "ops", 12, 88, description="Extra decodes to read the categories of an unsafe verdict"),
        row("Shadow candidates", 96),
        panel("Shadow agreement with live, overall",
              [(f'sum by (shadow, live, stage) (rate({SHADOW}{{category="any",outcome=~"both|neither"}}[{RATE}])) / '
                f'sum by (shadow, live, stage) (rate({SHADOW}{{category="any"}}[{RATE}]))',
                "{{shadow}} vs {{live}} ({{stage}})")], "percentunit", 0, 97,
              description="Share of items where the candidate and its live counterpart both called it unsafe or "
                          "both safe (policies' `shadow:`)"),
        panel("Shadow agreement per category",
              [(f'sum by (shadow, category) (rate({SHADOW}{{category!="any",outcome="both"}}[{RATE}])) / '
                f'sum by (shadow, category) (rate({SHADOW}{{category!="any"}}[{RATE}]))',
                "{{shadow}} {{category}}")], "percentunit", 12, 97,
              description="Of the items where the candidate or the live evaluator named a category, the share "
                          "where both did"),
        panel("Shadow disagreements (to the review queue)",
              [(f'sum by (shadow, category, outcome) (rate({SHADOW}{{outcome=~"shadow_only|live_only"}}[{RATE}]))',
                "{{shadow}} {{category}} {{outcome}}")], "ops", 0, 105, stack=True),
        panel("Shadow evaluations by result",
              [(f"sum by (shadow, result) (rate(guardstream_shadow_runs_total[{RATE}]))", "{{shadow}} {{result}}")],
              "ops", 12, 105, description="error/timeout: the candidate failed (nothing changed); skipped_busy: "
                                         "shadow.max_inflight reached"),
    ]
    return {
        "uid": "guardstream-proxy", "title": "guardstream proxy", "tags": ["guardstream"], "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
        "timezone": "utc", "graphTooltip": 1,
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {"text": "Prometheus", "value": "prometheus"}}]},
        "annotations": {"list": []}, "panels": panels,
    }


if __name__ == "__main__":
    print(json.dumps(dashboard(), indent=2))
