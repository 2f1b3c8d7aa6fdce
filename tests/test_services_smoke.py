"""The test servers themselves work: a real Redis answers, a real Kafka-protocol broker round-trips a message."""

from __future__ import annotations

import json

import redis
from kafka import KafkaConsumer, KafkaProducer


def test_redis_answers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = "gs-test:smoke"
    client.set(key, "1", ex=5)
    assert client.get(key) == b"1"
    client.delete(key)


def test_kafka_round_trip(kafka_bootstrap: str, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                             value_serializer=lambda v: json.dumps(v).encode())
    producer.send(topic, {"n": 1}, key=b"k").get(timeout=15)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10000, enable_auto_commit=False)
    values = [json.loads(m.value) for m in consumer]
    consumer.close()
    assert values == [{"n": 1}]
