"""Steady mixed traffic for the fault scenarios (bench/faults.py): streaming and non-streaming chat requests
from two tenants, each outcome classified by what the client saw.

Prompt kinds: `clean` and `pii` (flagged, audited) and `secret` (blocked at input, audited) are unique per
request (never a cache hit), `repeat` is one of a few fixed prompts (cache hits once warm).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

KINDS = ("clean", "pii", "secret", "repeat", "clean", "repeat")


def prompt(kind: str, i: int, tag: str = "") -> str:
    if kind == "pii":
        return f"please write to person{i}@example.com about order {tag}-{i}"
    if kind == "secret":
        return f"my password is hunter2, request {tag}-{i}"
    if kind == "repeat":
        return f"what is the capital of country number {i % 5}?"
    return f"a clean question number {tag}-{i}"


@dataclass
class Outcome:
    phase: str
    tenant: str
    kind: str
    stream: bool
    outcome: str
    seconds: float


@dataclass
class Load:
    """`concurrency` workers sending requests back to back until `stop()`; `phase` tags each request
    (a request in flight while the phase changed is tagged "before->after")."""

    base_url: str
    keys: dict[str, str]  # tenant -> client key
    concurrency: int = 8
    tag: str = ""  # in every unique prompt: no cache hit from an earlier run
    timeout_s: float = 15.0
    phase: str = "warm"
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: bool = False
    _counter: Any = field(default_factory=itertools.count)

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        connector = aiohttp.TCPConnector(limit=self.concurrency * 2)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await asyncio.gather(*(self._worker(session) for _ in range(self.concurrency)))

    def stop(self) -> None:
        self._stop = True

    async def _worker(self, session: aiohttp.ClientSession) -> None:
        tenants = list(self.keys)
        while not self._stop:
            i = next(self._counter)
            tenant = tenants[i % len(tenants)]
            kind = KINDS[(i // len(tenants)) % len(KINDS)]
            stream = (i // (len(tenants) * len(KINDS))) % 2 == 1
            phase, started = self.phase, time.perf_counter()
            outcome = await self._one(session, tenant, kind, stream, i)
            if self.phase != phase:  # in flight across a switch: neither before nor after
                phase = f"{phase}->{self.phase}"
            self.outcomes.append(Outcome(phase, tenant, kind, stream, outcome, time.perf_counter() - started))

    async def _one(self, session: aiohttp.ClientSession, tenant: str, kind: str, stream: bool, i: int) -> str:
        body = {"model": "demo-model", "stream": stream, "messages": [{"role": "user", "content": prompt(kind, i, self.tag)}]}
        headers = {"authorization": f"Bearer {self.keys[tenant]}", "x-request-id": f"load-{i}"}
        try:
            async with session.post(self.base_url + "/v1/chat/completions", json=body, headers=headers) as r:
                raw = await r.read()
                return classify(r.status, raw, stream)
        except TimeoutError:
            return "client_timeout"
        except aiohttp.ClientError as exc:
            return f"client_error:{type(exc).__name__}"


def classify(status: int, raw: bytes, stream: bool) -> str:
    """What the client got, in one word."""
    if status == 200 and stream:
        text = raw.decode("utf-8", "replace")
        if "upstream_stream_interrupted" in text:
            return "stream_interrupted"
        if '"content_filter"' in text:
            return "answer_filtered"
        return "ok" if "data: [DONE]" in text else "stream_unterminated"
    try:
        payload = json.loads(raw)
    except ValueError:
        return f"http_{status}_not_json"
    if status == 200:
        choices = payload.get("choices") or [{}]
        return "answer_filtered" if choices[0].get("finish_reason") == "content_filter" else "ok"
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return f"http_{status}_not_openai"
    code = error.get("code")
    if code == "content_filter":
        categories = (error.get("guardrail") or {}).get("categories") or []
        return "blocked_evaluator_error" if "evaluator_error" in categories else "blocked"
    if code and str(code).startswith("upstream_") and status not in (502, 504):
        return f"upstream_{status}"  # relayed from the upstream as it sent it
    return str(code or f"http_{status}")


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    """Counts per phase and outcome, per phase/tenant/outcome, and latency percentiles per phase."""
    by_phase: dict[str, Counter[str]] = defaultdict(Counter)
    by_tenant: dict[str, Counter[str]] = defaultdict(Counter)
    latency: dict[str, list[float]] = defaultdict(list)
    for o in outcomes:
        by_phase[o.phase][o.outcome] += 1
        by_tenant[f"{o.phase}/{o.tenant}"][o.outcome] += 1
        latency[o.phase].append(o.seconds)
        if o.phase not in ("warm", "recovery"):
            latency["during_fault"].append(o.seconds)
    return {
        "requests": len(outcomes),
        "by_phase": {k: dict(v) for k, v in by_phase.items()},
        "by_phase_tenant": {k: dict(v) for k, v in sorted(by_tenant.items())},
        "latency_ms": {phase: {"p50": _pct(v, 0.5), "p99": _pct(v, 0.99)} for phase, v in latency.items()},
    }


def during_fault(by_phase: dict[str, dict[str, int]]) -> dict[str, int]:
    """Outcomes of every request that saw the fault: started in it, or in flight when it began or ended."""
    total: Counter[str] = Counter()
    for phase, counts in by_phase.items():
        if phase not in ("warm", "recovery"):
            total.update(counts)
    return dict(total)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1) if ordered else 0.0
