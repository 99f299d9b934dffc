"""The worker's warm-up (streams.worker.warmup) on the real broker and redis-server: a real
``churnpulse worker`` says Ready only after its events path was warmed, every step of it ran,
and it wrote nothing: no Redis key under its prefix, no record on the scores or dead-letter
topic. The first events after it are scored from an empty state, as without a warm-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.contracts import CustomerEvent
from streams.dev.pipeline import where_it_waits
from streams.kafka.producer import ChurnProducer
from streams.redis.client import make_sync_redis
from streams.settings import RedisSettings, TopicSettings
from streams.worker.warmup import CUSTOMER
from tests.integration.worker_proc import Pipeline, collect, pipeline_with_topics

pytestmark = pytest.mark.integration
T0 = 1_767_225_600.0
STEPS = ("redis connections", "score path", "feature scripts", "snapshot script",
         "kafka metadata")


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = pipeline_with_topics(kafka_bootstrap, redis_url, tmp_path)
    yield p
    p.close()


def records_on(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert parts, f"{topic} has no partitions"
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def test_ready_after_a_warm_up_that_wrote_nothing(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    log = pipeline.worker_log(0)
    warmed_at = log.find("events path warmed in")
    assert 0 <= warmed_at < log.find("[^Worker]: Ready"), log[-3000:]
    line = log[warmed_at:].splitlines()[0]
    assert all(step in line for step in STEPS), line
    assert "not warmed" not in line, line

    redis = make_sync_redis(RedisSettings(url=pipeline.redis_url))
    try:
        assert list(redis.scan_iter(match=f"{pipeline.prefix}:*", count=1000)) == []
        assert records_on(pipeline.bootstrap, pipeline.scores) == 0
        assert records_on(pipeline.bootstrap, pipeline.dead_letter) == 0

        events = [CustomerEvent(f"w{i}", f"c{i % 2}", "session", T0 + i) for i in range(6)]
        with ChurnProducer(pipeline.bootstrap, TopicSettings(events=pipeline.events)) as producer:
            for event in events:
                producer.send_event(event)
        scores = collect(pipeline.bootstrap, pipeline.scores,
                         lambda rs: {r["value"]["last_event_id"] for r in rs  # type: ignore[index]
                                     } >= {"w4", "w5"}, timeout_s=60)
        last = {r["value"]["customer_id"]: r["value"] for r in scores}  # type: ignore[index]
        assert {cid: v["events_total"] for cid, v in last.items()} == {"c0": 3, "c1": 3}
        assert not any(CUSTOMER in key.decode() for key in
                       redis.scan_iter(match=f"{pipeline.prefix}:*", count=1000))
    finally:
        redis.close()


def test_a_running_worker_says_where_it_waits(pipeline: Pipeline) -> None:
    """What a timed-out fault test prints (``where_it_waits``): SIGUSR1 makes the Faust worker
    dump its stacks, and the events loop is found waiting in the runner; the worker lives on."""
    worker = pipeline.start_worker()
    frames = where_it_waits(worker, pipeline.workdir / "worker-0.log")
    assert any("streams/kafka/runner.py" in f and "in _run_once" in f for f in frames), frames
    assert any("in sweep_loop" in f for f in frames), frames
    assert worker.poll() is None, "the stack dump stopped the worker"
