"""A kafka-python call that stops answering is released, and a consumer that keeps stalling ends its command.

The stall is real: a rebalance listener that blocks kafka-python 3.0's IO thread (where sync listeners run)
leaves `poll(timeout_ms=300)` waiting with no bound of its own, against the test broker.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from consumers.commands.common import EXIT_RESTART, run_consumer
from consumers.stall import ConsumerStalled, StallGuard
from tests.review_support import produce


def _consumer(bootstrap: str, topic: str, hold_s: float) -> Any:
    from kafka import KafkaConsumer
    from kafka.consumer.subscription_state import ConsumerRebalanceListener

    class Blocking(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        def on_partitions_assigned(self, assigned: Any) -> None:
            time.sleep(hold_s)  # holds the client's IO thread, as a lost wake-up would

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{topic}-stall", auto_offset_reset="earliest",
                             enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500,
                             max_poll_interval_ms=10_000)
    consumer.subscribe([topic], listener=Blocking())
    return consumer


def test_a_stalled_poll_is_released_and_consuming_goes_on(kafka_bootstrap: str, topic: str) -> None:
    produce(kafka_bootstrap, topic, [(b"k", b"one"), (b"k", b"two")])
    consumer = _consumer(kafka_bootstrap, topic, hold_s=3.0)
    guard = StallGuard("test", limit_s=1.0, max_stalls=10)
    try:
        got: list[bytes] = []
        started = time.monotonic()
        longest = 0.0
        while len(got) < 2 and time.monotonic() - started < 30:
            t0 = time.monotonic()
            batch = guard.poll(consumer, timeout_ms=300)
            longest = max(longest, time.monotonic() - t0)
            got += [r.value for records in batch.values() for r in records]
        assert got == [b"one", b"two"]
        assert guard.stalls >= 1 and longest < 2.9  # released after ~1 s, not after the 3 s hold
    finally:
        guard.close()
        consumer.close(autocommit=False)


def test_records_a_released_poll_had_taken_are_read_again(kafka_bootstrap: str, topic: str) -> None:
    """kafka-python takes buffered records (moving its positions past them) and, once its buffer is empty, sends
    the next fetches on its IO thread; a poll released there dropped those records. The guard seeks back."""
    consumer = _consumer(kafka_bootstrap, topic, hold_s=0.0)
    fetcher = consumer._fetcher
    fetched_records, send_fetches = fetcher.fetched_records, fetcher._send_fetches_async
    took = {"records": False, "held": False}

    def taking(*args: Any, **kwargs: Any) -> Any:
        records, partial = fetched_records(*args, **kwargs)
        took["records"] = bool(records)
        return records, partial

    async def held_send_fetches() -> Any:  # on the IO thread: sleeping there is a stall, as in _consumer
        if took["records"] and not took["held"]:  # right after records were taken, before the poll returns
            took["held"] = True
            time.sleep(3.0)
        return await send_fetches()

    fetcher.fetched_records, fetcher._send_fetches_async = taking, held_send_fetches
    guard = StallGuard("test", limit_s=1.0, max_stalls=10)
    try:
        # records come in rounds until one poll took some and then stalled (it depends on how the fetches
        # were queued whether a poll that took records sends the next fetches)
        got: list[int] = []
        sent = 0
        deadline = time.monotonic() + 40
        while not took["held"] and sent < 60 and time.monotonic() < deadline:
            produce(kafka_bootstrap, topic, [(b"k", str(i).encode()) for i in range(sent, sent + 6)])  # 1 partition
            sent += 6
            while len(got) < sent and time.monotonic() < deadline:
                batch = guard.poll(consumer, timeout_ms=300, max_records=3)
                got += [int(r.value) for records in batch.values() for r in records]
        assert took["held"] and guard.stalls >= 1
        assert got == list(range(sent))  # without the seek back, the records of the released poll never come
    finally:
        guard.close()
        time.sleep(3.0)  # let a held IO thread go before the client closes
        consumer.close(autocommit=False)


def test_stalls_in_a_row_give_up(kafka_bootstrap: str, topic: str) -> None:
    produce(kafka_bootstrap, topic, [(b"k", b"one")])
    consumer = _consumer(kafka_bootstrap, topic, hold_s=4.0)
    guard = StallGuard("test", limit_s=0.5, max_stalls=2)
    try:
        with pytest.raises(ConsumerStalled, match="2 Kafka polls in a row stalled"):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                guard.poll(consumer, timeout_ms=300)
    finally:
        guard.close()
        time.sleep(4.0)  # let the listener return before the client closes
        consumer.close(autocommit=False)


def test_a_consumer_that_gave_up_ends_its_command_for_a_restart(capsys: pytest.CaptureFixture[str]) -> None:
    class GaveUp:
        def run(self, stop: threading.Event) -> None:
            raise ConsumerStalled("review: 3 Kafka polls in a row stalled for 60s; exiting for a restart")

    assert run_consumer(GaveUp(), threading.Event(), "review") == EXIT_RESTART
    assert "exiting for a restart" in capsys.readouterr().err
