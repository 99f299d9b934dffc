"""Hostile input on the real worker, learner and alerter (issue 12), on the real Kafka and Redis.

Two pipelines run side by side on the same normal replay (60 customers, 30 rounds of one event
each, churn labels, the worker's scores): a *clean* one, and a *hostile* one that also gets
about 1 % of bad records: 20 kinds of bad events, 5 of labels and 6 of scores (see ``BAD_*``).
Then, for the hostile pipeline:

- every bad record is dead-lettered with its reason code (``churn.dlq.code``) and nothing else
  is (the clean pipeline's dead-letter topic stays empty);
- every good event was applied exactly once: each customer's Redis feature state, dedup ring
  included, is byte for byte the clean pipeline's;
- the watermarks the worker published are the clean pipeline's (no bad record moved them);
- the learner's model has exactly the clean learner's weights;
- the alerter raised exactly the clean alerter's alerts.

Each round is produced once the workers applied the previous one, so every batch holds at most
one event per customer and both pipelines score (and snapshot) the same states.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from streams.kafka.publish import java_partition
from streams.kafka.topics import ensure_topics
from streams.settings import KafkaSettings, TopicSettings
from streams.timefmt import format_ts
from tests.integration.alerter_proc import alert_env, start_alerter
from tests.integration.test_learner_restart import Learner
from tests.integration.worker_proc import Pipeline, collect, stop_procs, wait_until

pytestmark = pytest.mark.integration
DAY = 86400.0
CUSTOMERS = 60
ROUNDS = 30
STEP = 4 * 3600.0  # one event per customer every 4 h of event time
PARTITIONS = 4
LATENESS = 300.0
START = (math.floor(time.time() / DAY) - 10) * DAY  # midnight ten days ago: history is past
CHURNED = [f"c{i:02d}" for i in range(0, CUSTOMERS, 6)]  # 10 customers churn
CHURN_AT = START + 20 * STEP + 1800.0
SIGNING_KEY = "hostile-test-signing-key-0123456789"


class HostilePipeline(Pipeline):
    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({
            "CHURN_TOPICS__MODEL_EVENTS": f"model-events-{self.tag}",
            "CHURN_TOPICS__RETENTION_ACTIONS": f"actions-{self.tag}",
            "CHURN_TOPICS__ALERT_OUTCOMES": f"outcomes-{self.tag}",
            "CHURN_KAFKA__PARTITIONS": str(PARTITIONS),
            "CHURN_MODEL__HORIZON_DAYS": "1",
            "CHURN_MODEL__OBSERVATION_INTERVAL_HOURS": "2",
            "CHURN_MODEL__POLL_S": "1",
            "CHURN_SWEEP__ENABLED": "false",  # sweeps run on wall time: not replayable
            "CHURN_SWEEP__CLOCK": "event",
            "CHURN_SWEEP__ALLOWED_LATENESS_S": str(LATENESS),
            # the untrained model scores 0.5: every customer opens one medium episode
            "CHURN_ALERTS__ENTER": "0.4", "CHURN_ALERTS__EXIT": "0.3",
            "CHURN_ALERTS__HIGH": "0.6", "CHURN_ALERTS__CRITICAL": "0.9",
            "CHURN_ALERTS__SEGMENT_SHARE": "0",
            "CHURN_SECURITY__SIGNING_KEY": SIGNING_KEY,
        })
        return env

    @property
    def labels(self) -> str:
        return f"labels-{self.tag}"

    @property
    def alerts(self) -> str:
        return f"alerts-{self.tag}"


def customer(i: int) -> str:
    return f"c{i:02d}"


def event(r: int, i: int, **over: object) -> dict[str, object]:
    kind = ("session", "purchase", "support_ticket")[(r + i) % 3]
    body: dict[str, object] = {"schema_version": 1, "event_id": f"e-{r}-{i}",
                               "customer_id": customer(i), "event_type": kind,
                               "ts": format_ts(START + r * STEP + i * 60.0)}
    if kind == "purchase":
        body["value"] = 10.0 + i
    body.update(over)
    return body


def js(obj: object) -> bytes:
    return orjson.dumps(obj)


def nest(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


FUTURE = format_ts(time.time() + 2 * 3600)
# (round, key, value, reason): 20 kinds of bad events, each once (~1 % of the 1,800 events)
BAD_EVENTS: list[tuple[int, bytes, bytes | None, str]] = [
    (1, b"c01", js(event(1, 1, event_id="x1", ts="9000-01-01T00:00:00Z")), "ts_in_future"),
    (2, b"c02", js(event(2, 2, event_id="x2", ts=FUTURE)), "ts_in_future"),
    (3, b"c03", js(event(3, 3, event_id="x3", ts="1970-01-01T00:00:00Z")), "ts_too_old"),
    (4, b"c04", js(event(4, 4, event_id="x4", ts="2026-01-01T00:00:00")), "bad_timestamp"),
    (5, b"c05", js(event(5, 5, event_id="x5", ts="2026-01-01 00:00")), "bad_timestamp"),
    (6, b"c07", js(event(6, 7, event_id="x6", value=1e308)), "value_out_of_range"),
    (7, b"c08", js(event(7, 8, event_id="x7"))[:-1] + b',"value":NaN}', "bad_json"),
    (8, b"c09", js(event(8, 9, event_id="x8", value="12")), "bad_field"),
    (9, b"c10", js(event(9, 10, event_id="x9", properties={"note": "x" * 10_000})),
     "properties_too_large"),
    (10, b"c11", js(event(10, 11, event_id="x10"))[:-1] + b',"properties":' + nest(20) + b"}",
     "properties_too_large"),
    (11, b"c13", js(event(11, 13, event_id="x11"))[:-1] + b',"deep":' + nest(5000) + b"}",
     "bad_json"),
    (12, b"c14", js(event(12, 15, event_id="x12")), "key_mismatch"),
    (13, b"c16", js(event(13, 16, event_id="x13", schema_version=2)), "unsupported_schema"),
    (14, b"c17", b'{"event_id":"x14","customer_id":"c17\xff","event_type":"session"}',
     "bad_json"),
    (15, b"c19", b"[1, 2, 3]", "not_an_object"),
    (16, b"c20", js({k: v for k, v in event(16, 20).items() if k != "event_id"}),
     "missing_field"),
    (17, b"c21", js(event(17, 21, event_id="x" * 300)), "bad_field"),
    (18, b"c22", None, "empty"),
    (19, b"c23", js(event(19, 23, event_id="x19", padding="p" * 70_000)), "record_too_large"),
    (20, b"", js(event(20, 25, event_id="x20", customer_id="")), "bad_field"),
]


def label(i: int, churned: bool = True, **over: object) -> dict[str, object]:
    body: dict[str, object] = {"schema_version": 1, "label_id": f"l-{i}",
                               "customer_id": customer(i), "churned": churned,
                               "ts": format_ts(CHURN_AT + i)}
    body.update(over)
    return body


GOOD_LABELS = [(customer(int(c[1:])), js(label(int(c[1:])))) for c in CHURNED] + [
    (customer(i), js(label(i, churned=False))) for i in (1, 2)]
BAD_LABELS: list[tuple[bytes, bytes, str]] = [
    (b"c03", js(label(3, label_id="y1", ts="9000-01-01T00:00:00Z")), "ts_in_future"),
    (b"c04", js(label(5, label_id="y2")), "key_mismatch"),
    (b"c07", js(label(7, label_id="y3", churned="yes")), "bad_field"),
    (b"c08", b'{"label_id": "y4", "customer_id"', "bad_json"),
    (b"c09", js(label(9, label_id="y5", ts="1999-12-31T00:00:00Z")), "ts_too_old"),
]


def score(i: int, **over: object) -> dict[str, object]:
    body: dict[str, object] = {"schema_version": 1, "score_id": f"{customer(i)}:bad:1",
                               "customer_id": customer(i), "score": 0.97,
                               "model_version": "0-untrained", "reason": "event",
                               "ts": format_ts(START + ROUNDS * STEP)}
    body.update(over)
    return body


BAD_SCORES: list[tuple[bytes, bytes, str]] = [
    (b"c01", js(score(1, score=1.5)), "bad_field"),
    (b"c02", js(score(2, ts="9000-01-01T00:00:00Z")), "ts_in_future"),
    (b"c03", js(score(3))[:-1] + b',"score":NaN}', "bad_json"),
    (b"c04", js({k: v for k, v in score(4).items() if k != "score_id"}), "missing_field"),
    (b"c05", js(score(5, schema_version=7)), "unsupported_schema"),
    (b"c06", js(score(6, drivers=[{"feature": "f", "value": 1.0}] * 1000)), "bad_field"),
]


@pytest.fixture
def pipelines(kafka_bootstrap: str, redis_url: str,
              tmp_path: Path) -> Iterator[tuple[HostilePipeline, HostilePipeline]]:
    pair = []
    for name in ("clean", "hostile"):
        (tmp_path / name).mkdir()
        p = HostilePipeline(kafka_bootstrap, redis_url, tmp_path / name)
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:  # one labels partition: both learners read the labels in the same order
            admin.create_topics([NewTopic(p.labels, 1, 1)])
        finally:
            admin.close()
        ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap, partitions=PARTITIONS),
                      TopicSettings(events=p.events, scores=p.scores, labels=p.labels,
                                    dead_letter=p.dead_letter, alerts=p.alerts,
                                    model_events=f"model-events-{p.tag}",
                                    retention_actions=f"actions-{p.tag}",
                                    alert_outcomes=f"outcomes-{p.tag}"))
        pair.append(p)
    yield pair[0], pair[1]
    for p in pair:
        p.close()


def states(p: Pipeline, client: redis.Redis) -> list[bytes | None]:
    pipe = client.pipeline(transaction=False)
    for i in range(CUSTOMERS):
        pipe.hget(f"{p.prefix}:{{c:{customer(i)}}}:f", "s")
    return list(pipe.execute())


def counts(p: Pipeline, client: redis.Redis) -> list[int]:
    pipe = client.pipeline(transaction=False)
    for i in range(CUSTOMERS):
        pipe.hget(f"{p.prefix}:{{c:{customer(i)}}}:f", "n")
    return [int(v or 0) for v in pipe.execute()]


def model_parts(p: Pipeline) -> dict[str, Any]:
    """The champion's weights, intercept and scaler statistics (or its pickle)."""
    import pickle

    import redis.asyncio as aioredis

    from online_models.explain import linear_parts
    from streams.redis.model_registry import RedisModelRegistry
    from streams.settings import load_settings
    from streams.signing import signer_from_settings

    async def load() -> Any:
        client = aioredis.Redis.from_url(p.redis_url)
        try:
            settings = load_settings(security={"signing_key": SIGNING_KEY})
            registry = RedisModelRegistry(client, p.prefix, signer_from_settings(settings))
            version = await registry.current_version()
            assert version is not None, "no model published"
            return await registry.load(version)
        finally:
            await client.aclose()

    handle = asyncio.run(load())
    parts = linear_parts(getattr(handle.model, "raw", handle.model))
    if parts is None:
        return {"pickle": pickle.dumps(handle.model)}
    scaler, linear = parts
    return {"weights": dict(linear.weights), "intercept": linear.intercept,
            "means": dict(scaler.means), "vars": dict(getattr(scaler, "vars", {}))}


def dlq_codes(records: list[dict[str, object]]) -> dict[tuple[str, int, int], str]:
    out = {}
    for r in records:
        h = r["headers"]
        assert isinstance(h, dict)
        where = (h["churn.dlq.topic"].decode(), int(h["churn.dlq.partition"]),
                 int(h["churn.dlq.offset"]))
        out[where] = h["churn.dlq.code"].decode()
    return out


def topic_size(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, n) for n in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def in_parallel(*jobs: Callable[[], object]) -> None:
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        for f in [pool.submit(j) for j in jobs]:
            f.result()


def publish_warmup_model(p: HostilePipeline) -> None:
    """An untrained model published under a version of its own: it scores 0.5 like the
    untrained start, but its scores count as calibrated (a hand-made model), so the alerters
    act on them as they did before issue 10 flagged the untrained start's scores."""
    import redis.asyncio as aioredis

    from online_models.model import ModelHandle, make_model
    from streams.redis.model_registry import RedisModelRegistry
    from streams.signing import StateSigner

    async def publish() -> None:
        client = aioredis.Redis.from_url(p.redis_url)
        try:
            await RedisModelRegistry(client, p.prefix, StateSigner(SIGNING_KEY.encode())
                                     ).publish(ModelHandle("0-warmup", make_model()))
        finally:
            await client.aclose()

    asyncio.run(publish())


def test_bad_records_are_dead_lettered_and_change_nothing(
        pipelines: tuple[HostilePipeline, HostilePipeline]) -> None:
    started = time.monotonic()
    clean, hostile = pipelines
    both = (clean, hostile)
    for p in both:  # scores the alerters act on (the untrained start's are flagged uncalibrated)
        publish_warmup_model(p)
    in_parallel(*(p.start_worker for p in both), *(lambda p=p: start_alerter(p) for p in both))
    assert alert_env(clean)["CHURN_SECURITY__SIGNING_KEY"] == SIGNING_KEY
    client = redis.Redis.from_url(clean.redis_url)
    producer = KafkaProducer(bootstrap_servers=clean.bootstrap, acks="all", linger_ms=2,
                             max_request_size=2_000_000)
    expected: dict[tuple[str, int, int], str] = {}

    def bad(topic: str, key: bytes, value: bytes | None, code: str) -> None:
        meta = producer.send(topic, key=key, value=value).get(timeout=30)
        expected[(topic, meta.partition, meta.offset)] = code

    newest = [-math.inf] * PARTITIONS
    for r in range(ROUNDS):
        for p in both:
            for i in range(CUSTOMERS):
                producer.send(p.events, key=customer(i).encode(), value=js(event(r, i)))
        for when, key, value, code in BAD_EVENTS:
            if when == r:
                bad(hostile.events, key, value, code)
        producer.flush()
        for i in range(CUSTOMERS):
            part = java_partition(customer(i).encode(), PARTITIONS)
            newest[part] = max(newest[part], START + r * STEP + i * 60.0)
        wait_until(lambda r=r: all(counts(p, client) == [r + 1] * CUSTOMERS for p in both),
                   30, f"round {r} applied")
    for p in both:
        for key, value in [(k.encode(), v) for k, v in GOOD_LABELS[:6]]:
            producer.send(p.labels, key=key, value=value)
        if p is hostile:
            producer.flush()
            for key, value, code in BAD_LABELS:
                bad(p.labels, key, value, code)
        for key, value in [(k.encode(), v) for k, v in GOOD_LABELS[6:]]:
            producer.send(p.labels, key=key, value=value)
    for key, value, code in BAD_SCORES:
        bad(hostile.scores, key, value, code)
    producer.flush()

    # every good event applied exactly once: the same state, dedup ring included
    assert states(hostile, client) == states(clean, client)
    assert counts(hostile, client) == [ROUNDS] * CUSTOMERS
    # watermarks published by the workers: the good events' only
    marks = {str(p): repr(n - LATENESS) for p, n in enumerate(newest)}
    for p in both:
        wait_until(lambda p=p: {k.decode(): v.decode() for k, v in
                                client.hgetall(f"{p.prefix}:watermarks").items()} == marks,
                   20, f"{p.tag} watermarks")
    # the learners, once the watermarks are final: the same model
    learners = [Learner(p) for p in both]
    try:
        for learner in learners:
            learner.start()
        seen: dict[int, object] = {}

        def settled() -> bool:
            ok = True
            for n, learner in enumerate(learners):
                s = learner.status()
                key = (s.get("labels", {}).get("labels"), s.get("learn_calls"),
                       s.get("pending"), s.get("version"))
                ok = ok and key[0] == len(GOOD_LABELS) and (key[1] or 0) > 0 and seen.get(n) == key
                seen[n] = key
            return ok

        wait_until(settled, 45, "learners settled", interval_s=1.0)
        statuses = [learner.status() for learner in learners]
        assert statuses[0]["learn_calls"] == statuses[1]["learn_calls"]
        assert statuses[0]["pending"] == statuses[1]["pending"]
        assert model_parts(hostile) == model_parts(clean)

        # every bad record dead-lettered with its reason, by the worker, learner and alerter
        got = dlq_codes(collect(hostile.bootstrap, hostile.dead_letter,
                                lambda rs: len(dlq_codes(rs)) >= len(expected), 30))
        assert got == expected
        assert topic_size(clean.bootstrap, clean.dead_letter) == 0

        # the alerters (bad scores processed: dead-lettered above): the same alerts
        def alert_ids(p: HostilePipeline) -> list[str]:
            records = collect(p.bootstrap, p.alerts, lambda rs: len(rs) >= CUSTOMERS, 30)
            return sorted(str(r["value"]["alert_id"]) for r in records  # type: ignore[index]
                          if isinstance(r["value"], dict))

        clean_alerts = alert_ids(clean)
        assert len(clean_alerts) == CUSTOMERS  # one medium alert per customer
        assert alert_ids(hostile) == clean_alerts
    finally:
        stop_procs([*clean.procs, *hostile.procs, *(q for lr in learners for q in lr.procs)])
        producer.close()
        client.close()
    kinds = len(BAD_EVENTS) + len(BAD_LABELS) + len(BAD_SCORES)
    print(f"hostile suite: {kinds} bad records, {len(set(expected.values()))} reason codes, "
          f"{time.monotonic() - started:.0f} s")
