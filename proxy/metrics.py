"""Prometheus metrics for the proxy, all defined in one place (served at GET /metrics)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from proxy import loop_metrics  # updated on the event loop only: no lock per update (see proxy/loop_metrics.py)
from proxy.schemas.events import SCORE_BUCKETS  # the score tallies count in the same buckets

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# -- requests -----------------------------------------------------------------
REQUESTS = loop_metrics.Counter("guardstream_requests_total", "Requests by route and HTTP status",
                                ["route", "status"], registry=REGISTRY)
BLOCKS = loop_metrics.Counter("guardstream_blocks_total",
                              "Blocked prompts/answers by stage and the category that blocked",
                              ["stage", "category"], registry=REGISTRY)
FLAGS = loop_metrics.Counter("guardstream_flags_total",
                             "Flagged (allowed, audited) prompts/answers by stage and category",
                             ["stage", "category"], registry=REGISTRY)
SHADOW_WOULD_BLOCK = Counter("guardstream_shadow_would_block_total", "Blocks not enforced because of shadow mode",
                             ["stage"], registry=REGISTRY)
UPSTREAM_LATENCY = loop_metrics.Histogram("guardstream_upstream_latency_seconds", "Upstream time to response headers",
                                          ["route"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
PROXY_OVERHEAD = loop_metrics.Histogram("guardstream_proxy_overhead_seconds",
                                        "Time spent in the proxy outside the upstream call (non-streaming requests)",
                                        ["route"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
UPSTREAM_ERRORS = Counter("guardstream_upstream_errors_total", "Upstream failures by kind", ["kind"],
                          registry=REGISTRY)
TENANT_REJECTIONS = Counter("guardstream_tenant_rejections_total",
                            "Requests refused with 429: the tenant already had its limit of upstream requests open",
                            ["tenant"], registry=REGISTRY)
INFLIGHT = loop_metrics.Gauge("guardstream_inflight_requests", "Requests being served", registry=REGISTRY)
SLOW_CLIENT_DISCONNECTS = Counter("guardstream_slow_client_disconnects_total",
                                  "Streaming clients disconnected for accepting no bytes for write_timeout_s",
                                  registry=REGISTRY)

# -- evaluators ---------------------------------------------------------------
EVALUATOR_LATENCY = loop_metrics.Histogram("guardstream_evaluator_latency_seconds", "Evaluator latency (cache misses)",
                                           ["evaluator", "stage"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
EVALUATOR_ERRORS = Counter("guardstream_evaluator_errors_total", "Evaluator errors and timeouts by policy outcome",
                           ["evaluator", "kind", "on_error"], registry=REGISTRY)
SHADOW_COMPARISONS = Counter(
    "guardstream_shadow_comparisons_total",
    "Shadow (candidate) evaluator verdicts compared with the live one, per category (`any`: the overall verdict):"
    " outcome both, shadow_only, live_only, neither (`any` only)",
    ["stage", "shadow", "live", "category", "outcome"], registry=REGISTRY)
SHADOW_RUNS = Counter("guardstream_shadow_runs_total", "Shadow evaluations by result: compared, error, timeout, "
                      "skipped_busy (max_inflight reached), skipped_paused (failing, paused), skipped_live_error",
                      ["stage", "shadow", "result"], registry=REGISTRY)
# -- quality: reward scores and comparisons -------------------------------------------
REWARD_SCORES = Histogram("guardstream_reward_score", "Reward model scores of answers, per evaluator and the model that "
                          "answered (a candidate's under its comparison name)", ["evaluator", "model"],
                          buckets=SCORE_BUCKETS, registry=REGISTRY)
QUALITY_RUNS = Counter("guardstream_quality_runs_total", "Streamed answers scored after their stream by whole-answer"
                       " evaluators: scored, skipped_busy (quality.max_inflight reached), error", ["result"],
                       registry=REGISTRY)
COMPARISON_RUNS = Counter(
    "guardstream_comparison_runs_total",
    "Requests considered for comparison with a candidate model, by result: compared, skipped_busy (max_inflight"
    " reached), skipped_paused (candidate failing), candidate_error, candidate_timeout, judge_error,"
    " baseline_missing (no baseline answer: the request failed or was not judged)", ["candidate", "result"],
    registry=REGISTRY)
COMPARISONS = Counter("guardstream_comparisons_total", "Comparisons of a candidate's answer with the baseline's, by"
                      " outcome for the candidate: win, tie, loss", ["baseline", "candidate", "tenant", "outcome"],
                      registry=REGISTRY)
CANDIDATE_LATENCY = Histogram("guardstream_candidate_latency_seconds", "Candidate model's whole answer (background)",
                              ["candidate"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
STREAM_WINDOWS = Counter("guardstream_stream_windows_evaluated_total", "Streaming windows evaluated", ["mode"],
                         registry=REGISTRY)
STREAM_CUTS = Counter("guardstream_stream_cuts_total", "Streams cut for unsafe output", ["mode"], registry=REGISTRY)

# -- cache --------------------------------------------------------------------
CACHE_LOOKUPS = Counter("guardstream_cache_lookups_total", "Verdict cache lookups by result (hit, miss, coalesced, "
                        "coalesced_remote: another instance computed it, bypass: backend down, evaluated uncached)",
                        ["backend", "result"], registry=REGISTRY)
CACHE_ERRORS = Counter("guardstream_cache_errors_total", "Cache backend errors (request served without cache)",
                       ["backend", "kind"], registry=REGISTRY)
CACHE_UP = Gauge("guardstream_cache_backend_up", "1 when the cache backend is reachable (circuit closed)",
                 ["backend"], registry=REGISTRY)

# -- audit --------------------------------------------------------------------
AUDIT_EVENTS = Counter("guardstream_audit_events_total", "Audit events by outcome (emitted, sent, spooled, replayed, "
                       "written, dropped)", ["outcome"], registry=REGISTRY)
AUDIT_SPOOL_DEPTH = Gauge("guardstream_audit_spool_depth", "Events waiting in the local spool", registry=REGISTRY)
AUDIT_BROKER_UP = Gauge("guardstream_audit_broker_up", "1 when the Kafka broker is reachable", registry=REGISTRY)


@lru_cache(maxsize=4096)
def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, remembered: labels() takes a lock and builds tuples on every call.

    For the per-request hot path; label values there are few (routes, statuses, evaluators, stages).
    """
    return metric.labels(*labels)
