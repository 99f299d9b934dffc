"""The first end-to-end slice on the real broker and redis-server.

A real ``churnpulse worker`` subprocess consumes events produced with the SDK, and the test
checks what arrives on the scores and dead-letter topics and what Redis holds.
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.contracts import CustomerEvent
from streams.kafka.producer import ChurnProducer
from streams.redis.client import make_sync_redis
from streams.settings import RedisSettings, TopicSettings
from tests.integration.worker_proc import Pipeline, collect, pipeline_with_topics, wait_until

pytestmark = pytest.mark.integration
T0 = 1_767_225_600.0


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path,
             request: pytest.FixtureRequest) -> Iterator[Pipeline]:
    """On the standalone Redis, or (indirect parameter "cluster") on the Redis Cluster."""
    if getattr(request, "param", "standalone") == "cluster":
        redis_url = request.getfixturevalue("redis_cluster_url")
    p = pipeline_with_topics(kafka_bootstrap, redis_url, tmp_path)
    yield p
    p.close()


def make_events(n: int, customers: int, seed: int, start: float = T0) -> list[CustomerEvent]:
    """Events in time order (30 s apart from ``start``), spread over the customers."""
    rng = random.Random(seed)
    kinds = ["session", "purchase", "support_ticket"]
    out = []
    for i in range(n):
        kind = rng.choice(kinds)
        out.append(CustomerEvent(f"e{seed}-{i}", f"c{rng.randrange(customers)}", kind,
                                 start + i * 30.0, 10.0 if kind == "purchase" else None))
    return out


def redis_counts(p: Pipeline, customers: set[str]) -> dict[str, int]:
    client = make_sync_redis(RedisSettings(url=p.redis_url))
    out = {}
    for cid in customers:
        raw = client.hget(f"{p.prefix}:{{c:{cid}}}:f", "n")
        out[cid] = int(raw or 0)
    return out


def latest_scores(records: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    latest: dict[str, dict[str, object]] = {}
    for r in records:
        value = r["value"]
        assert isinstance(value, dict)
        latest[str(value["customer_id"])] = value
    return latest


@pytest.mark.parametrize("pipeline", ["standalone", "cluster"], indirect=True)
def test_events_in_scores_out_counts_in_redis(pipeline: Pipeline) -> None:
    events = make_events(3000, customers=150, seed=1)
    expected = Counter(e.customer_id for e in events)
    pipeline.start_worker()
    with ChurnProducer(pipeline.bootstrap, TopicSettings(events=pipeline.events)) as producer:
        for e in events:
            producer.send_event(e)
        for e in events[:200]:  # a producer retry storm: duplicates must count once
            producer.send_event(e)
        producer.send_raw(pipeline.events, b"c1", b'{"event_id": "broken"')

    def complete(records: list[dict[str, object]]) -> bool:
        latest = latest_scores(records)
        return len(latest) == len(expected) and all(
            latest[c]["events_total"] == n for c, n in expected.items())

    scores = collect(pipeline.bootstrap, pipeline.scores, complete, timeout_s=90)
    assert redis_counts(pipeline, set(expected)) == dict(expected)
    latest = latest_scores(scores)
    assert {v["model_version"] for v in latest.values()} == {"0-untrained"}
    assert all(0.0 <= float(v["score"]) <= 1.0 for v in latest.values())  # type: ignore[arg-type]
    assert all(r["key"] == str(r["value"]["customer_id"]).encode()  # type: ignore[index]
               for r in scores)

    dead = collect(pipeline.bootstrap, pipeline.dead_letter, lambda rs: len(rs) >= 1, 30)
    assert dead[0]["raw"] == b'{"event_id": "broken"'
    assert dead[0]["headers"]["churn.dlq.code"] == b"bad_json"  # type: ignore[index]


def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(pipeline: Pipeline) -> None:
    events = make_events(30000, customers=500, seed=2)
    expected = Counter(e.customer_id for e in events)
    with ChurnProducer(pipeline.bootstrap, TopicSettings(events=pipeline.events)) as producer:
        for e in events:
            producer.send_event(e)
    first = pipeline.start_worker()
    client = redis.Redis.from_url(pipeline.redis_url)

    def applied() -> int:
        keys = list(client.scan_iter(match=f"{pipeline.prefix}:*:f", count=1000))
        return sum(int(client.hget(k, "n") or 0) for k in keys)

    # kill while the worker is part-way through the stream
    wait_until(lambda: applied() > 2000, 60, "the worker to apply some events", 0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    at_kill = applied()
    assert at_kill < len(events), "the worker finished before it was killed; use more events"

    pipeline.start_worker()
    wait_until(lambda: redis_counts(pipeline, set(expected)) == dict(expected), 120,
               "every event counted exactly once after the restart")

    def complete(records: list[dict[str, object]]) -> bool:
        latest = latest_scores(records)
        return len(latest) == len(expected) and all(
            latest[c]["events_total"] == n for c, n in expected.items())

    collect(pipeline.bootstrap, pipeline.scores, complete, timeout_s=60)
