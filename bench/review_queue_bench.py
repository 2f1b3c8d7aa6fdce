"""How the value-ordered review queue's queries scale with the number of stored events.

    python -m bench.review_queue_bench [--events 2000,20000] [--postgres URL]

Seeds a fresh store (SQLite file, and PostgreSQL in a throwaway schema when a URL is given) with events of
mixed scores, categories, shadow disagreements and look-alike groups, labels a tenth of them, then times the
review UI's queries: the first queue page (most valuable first, and newest first), a page filtered by
category, an event's neighbours in value order, its look-alikes, and one label. Median of 5 runs, in ms.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consumers.decode import decode
from consumers.store import IncomingEvent, Position, QueueFilter, Store, open_store, queries
from proxy.schemas.events import content_digest, new_event

CATEGORIES = ["S1", "S2", "S9", "S10", "pii", "secret", "prompt_injection"]


def synthetic_event(i: int, rng: random.Random, start: datetime) -> dict[str, Any]:
    category = rng.choice(CATEGORIES)
    score = rng.random()
    text = f"prompt number {i % 500} about {category}" if rng.random() < 0.3 else f"unique prompt {uuid.uuid4()}"
    messages = [{"role": "user", "content": text}]
    verdict = {"evaluator": "llama_guard", "version": "1", "safe": score < 0.5,
               "categories": [] if score < 0.5 else [category], "score": score, "threshold": 0.5,
               "latency_ms": 10.0, "cached": False, "error": None}
    event = new_event(request_id=f"req-{i}", tenant=f"t{i % 7}", policy="default", stage="input",
                      action="block" if score >= 0.5 else "allow", mode="enforce", route="/v1/chat/completions",
                      verdicts=[verdict], categories=[category] if score >= 0.5 else [], model="m",
                      upstream="http://upstream", latency_ms=12.0,
                      content={"mode": "full", "messages": messages, "completion": None,
                               "sha256": content_digest(messages, None)})
    event["ts"] = (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
    if rng.random() < 0.05:
        event["shadow"] = {"disagreement": True, "categories": ["any"], "verdicts": [
            {**verdict, "evaluator": "candidate", "safe": not verdict["safe"], "compared_with": "llama_guard",
             "compared": True, "differs": ["any"]}]}
    return event


def seed(store: Store, n: int) -> list[str]:
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=3)
    ids: list[str] = []
    batch: list[IncomingEvent] = []
    for i in range(n):
        event = synthetic_event(i, rng, start)
        decoded = decode(json.dumps(event).encode())
        assert decoded.event is not None and decoded.ts is not None, decoded.reason
        batch.append(IncomingEvent(decoded.event, decoded.ts, Position("bench", 0, i)))
        ids.append(event["event_id"])
        if len(batch) == 500:
            store.write_batch(batch)
            batch = []
    if batch:
        store.write_batch(batch)
    for event_id in rng.sample(ids, n // 10):
        store.add_label(event_id, "bench", rng.choice(["unsafe", "safe"]), ["S1"])
    return ids


def timed(fn: Callable[[], Any], runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(store: Store, ids: list[str]) -> dict[str, float]:
    def read(fn: Callable[[Any], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with store.read() as conn:
                return fn(conn)
        return run

    with store.read() as conn:
        head = queries.queue(conn, QueueFilter(), "bench", limit=50)[0][0].event_id
        event = queries.get_event(conn, head)
    assert event is not None
    unlabelled = iter(i for i in reversed(ids))
    return {
        "queue page (value)": timed(read(lambda c: queries.queue(c, QueueFilter(), "bench", limit=50))),
        "queue page (newest)": timed(read(lambda c: queries.queue(c, QueueFilter(order="newest"), "bench"))),
        "queue page (category S10)": timed(read(lambda c: queries.queue(c, QueueFilter(category="S10"), "bench"))),
        "neighbours (value)": timed(read(lambda c: queries.neighbours(c, QueueFilter(), event))),
        "look-alikes": timed(read(lambda c: queries.lookalikes(c, event))),
        "one label": timed(lambda: store.add_label(next(unlabelled), "bench2", "safe")),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", default="2000,20000")
    p.add_argument("--postgres", default=None, help="postgresql:// URL (a throwaway schema is used and dropped)")
    args = p.parse_args()
    results: list[tuple[str, int, dict[str, float]]] = []
    for n in (int(x) for x in args.events.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(str(Path(tmp) / "review.db"))
            started = time.perf_counter()
            ids = seed(store, n)
            print(f"sqlite: seeded {n} events in {time.perf_counter() - started:.1f} s", flush=True)
            results.append(("sqlite", n, measure(store, ids)))
            store.dispose()
        if args.postgres:
            from sqlalchemy import create_engine, text

            from consumers.store.db import normalize_url

            schema = f"gs_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(normalize_url(args.postgres))
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            try:
                store = open_store(args.postgres, schema=schema)
                ids = seed(store, n)
                results.append(("postgresql", n, measure(store, ids)))
                store.dispose()
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    names = list(results[0][2])
    print("| store | events | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for kind, n, timings in results:
        print(f"| {kind} | {n} | " + " | ".join(f"{timings[k]:.1f}" for k in names) + " |")


if __name__ == "__main__":
    main()
