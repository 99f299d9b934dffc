"""End to end on the real services: events → real worker → scores → real alerter → alerts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from kafka import KafkaProducer

from alerts.policy import PolicyParams
from streams.contracts import CustomerEvent
from streams.redis.model_registry import RedisModelRegistry
from tests.integration.alerter_proc import (
    committed,
    complaint_model,
    expected_alert_ids,
    start_alerter,
)
from tests.integration.worker_proc import Pipeline, wait_until

CUSTOMERS = 30
RISKY = 15  # c-00 .. c-14 complain; the others only have sessions


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, redis_url, tmp_path)
    yield p
    p.close()


async def _publish_model(redis_url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    await RedisModelRegistry(client, prefix).publish(complaint_model())
    await client.aclose()


def test_worker_scores_become_alerts_once(pipeline: Pipeline, redis_url: str) -> None:
    asyncio.run(_publish_model(redis_url, pipeline.prefix))
    pipeline.start_worker()
    start_alerter(pipeline)
    producer = KafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all")
    t0 = time.time() - 6 * 3600
    rounds = [["session"] * CUSTOMERS, ["session"] * CUSTOMERS,
              ["complaint"] * RISKY, ["complaint"] * RISKY, ["complaint"] * RISKY]
    sent = 0
    for r, kinds in enumerate(rounds):  # one round per batch: one score per customer each
        for c, kind in enumerate(kinds):
            cid = f"c-{c:02d}"
            event = CustomerEvent(f"{cid}-e{r}", cid, kind, t0 + r * 3600 + c)
            producer.send(pipeline.events, orjson.dumps(event.to_wire()), key=cid.encode())
        producer.flush()
        sent += len(kinds)
        wait_until(lambda n=sent: len(committed(pipeline, pipeline.scores)) >= n,  # type: ignore[misc]
                   60, f"scores of round {r}")
    producer.close()
    scores = committed(pipeline, pipeline.scores)
    raw = [(str(s["customer_id"]), orjson.dumps(s)) for s in scores]
    expected = expected_alert_ids(raw, PolicyParams())
    assert {i.split(":")[0] for i in expected} == {f"c-{c:02d}" for c in range(RISKY)}
    wait_until(lambda: len(committed(pipeline, f"alerts-{pipeline.tag}")) >= len(expected),
               60, "alerts")
    alerts = committed(pipeline, f"alerts-{pipeline.tag}")
    assert sorted(str(a["alert_id"]) for a in alerts) == sorted(expected)
    score_ids = {s["score_id"] for s in scores}
    for a in alerts:
        assert a["score_id"] in score_ids and a["model_version"] == "1-complaints"
        assert a["source_timestamp_ms"] > 0  # latency is measurable from the event's arrival
    for a in alerts:  # the worker's drivers (the model's contributions) come out in words
        drivers = a["drivers"]
        assert isinstance(drivers, list) and drivers
        assert all(d["text"] and d["feature"] for d in drivers)
        assert str(a["summary"]).startswith("Churn risk ")
        assert a["segment"] != "unknown"  # the customer's features were read from Redis
    actions = committed(pipeline, f"actions-{pipeline.tag}")
    assert sorted(a["alert_id"] for a in actions) == sorted(expected)
