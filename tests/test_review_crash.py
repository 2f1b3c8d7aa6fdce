"""A review consumer SIGKILLed after its DB commit but before its offset commit loses and doubles nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka.structs import TopicPartition

from consumers.kafka import KafkaSettings
from consumers.review import ReviewConsumer
from consumers.store import queries
from tests.review_support import FAST_GROUP, event_message, make_event, produce

ROOT = Path(__file__).resolve().parents[1]

# The worker: a real ReviewConsumer whose after-write hook kills the process (SIGKILL: no cleanup, no
# offset commit, no group leave) right after the DB transaction of its second batch committed. It prints the
# events written in all and the size of the batch it died in.
WORKER = """
import json, os, signal, sys
from consumers.kafka import KafkaSettings
from consumers.review import ReviewConsumer
from consumers.store import open_store
cfg = json.loads(sys.argv[1])
store = open_store(cfg["db"], schema=cfg["schema"])
written = []
def after_write(result):
    written.append(result.inserted)
    if len(written) == cfg["crash_after"]:
        print("written", sum(written), result.inserted + result.duplicates, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
consumer = ReviewConsumer(store, KafkaSettings(**cfg["kafka"]), after_write=after_write)
consumer.start()
while True:
    consumer.poll_once()
"""


def read_to_the_end(consumer: ReviewConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether `consumer` has been handed (and so has written) every record up to `ends` on every partition."""
    kafka = consumer._consumer
    assigned = kafka.assignment()
    return all(tp in assigned and (kafka.position(tp, timeout_ms=2000) or 0) >= end for tp, end in ends.items())


def test_sigkill_between_db_commit_and_offset_commit(store_info, kafka_bootstrap, topic) -> None:
    store, db, schema = store_info
    events = [make_event(tenant=f"t{i % 4}") for i in range(30)]
    sent = produce(kafka_bootstrap, topic, [event_message(e) for e in events])
    ends: dict[TopicPartition, int] = {}
    for meta in sent:
        tp = TopicPartition(topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    kafka = dict(bootstrap=kafka_bootstrap, topic=topic, group_id=f"{topic}-review", max_poll_records=6,
                 **FAST_GROUP)
    cfg = {"db": db, "schema": schema, "crash_after": 2, "kafka": kafka}
    worker = subprocess.run([sys.executable, "-c", WORKER, json.dumps(cfg)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert worker.returncode == -signal.SIGKILL, worker.stderr[-2000:]
    written_before_crash, killed_batch = map(int, worker.stdout.split("written")[-1].split())
    with store.read() as conn:
        assert queries.counts(conn)["events"] == written_before_crash > 0

    # Read every partition to its end, not just until the missing events are in: the killed batch can be
    # the last records of its partitions, and kafka-python hands partitions back in the order their fetches
    # complete, so the restart may get every missing event before the killed batch comes round again.
    restarted = ReviewConsumer(store, KafkaSettings(**kafka))
    restarted.start()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not read_to_the_end(restarted, ends):
            restarted.poll_once()
    finally:
        restarted.close()

    with store.read() as conn:
        rows, total = queries.queue(conn, queries.QueueFilter(status="all"), None, limit=100)
    assert total == len(events)  # nothing lost, nothing doubled (event_id is unique; count rows anyway)
    assert sorted(r.event_id for r in rows) == sorted(e["event_id"] for e in events)
    # the second batch really was delivered again (its offsets were never committed) and was ignored: each of
    # its records came back as a duplicate (more may come back: a commit lost to a rebalance is retried too)
    assert restarted.stats.duplicates >= killed_batch > 0
    assert restarted.stats.inserted == len(events) - written_before_crash
